#!/usr/bin/env bash
# perf/validate_predictor.py --backend cpu --quick: the whole study on tiny models. Every section
# (one device, emulated ranks, 4 CPU ranks end to end) holds measured and predicted times that
# are finite and positive, a ceiling at every point that no measured time beats, the emulated
# section spans worlds 2, 4 and 8 with group statistics, and the markdown report has each
# section's table.
source "$(dirname "$0")/common.bash"
"$PYTHON" -c "import h5py, numpy" 2>/dev/null ||
  fail "$PYTHON lacks h5py or numpy (make deps installs python3-h5py python3-numpy)"
command -v "$MPIEXEC" >/dev/null || fail "no MPI launcher '$MPIEXEC'"

mpirun_wrapper="$WORK/mpirun"
printf '#!/usr/bin/env bash\nexec bash "%s" "%s" "$@"\n' "$MOETRON_SOURCE_DIR/tests/mpi/run_mpi.sh" "$MPIEXEC" >"$mpirun_wrapper"
chmod +x "$mpirun_wrapper"
# The checks below need every section whole, so the time budget (quick: 150 s, cut at 85%) is
# raised: alone the study takes ~65 s on 2 cores, but beside the suite's other tests it took
# 132 s once and the budget cut emulated plans (nineteenth session). ctest stops it at 600 s.
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/validate_predictor.py" --moetron "$MOETRON" --backend cpu --quick \
  --budget-s 500 --mpirun "$mpirun_wrapper" --out-dir "$WORK/v" >"$WORK/log" 2>&1 ||
  { cat "$WORK/log"; fail "the study failed"; }

"$PYTHON" - "$WORK/v/validation.h5" <<'PY' || fail "validation.h5 lacks data"
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f.attrs["backend"] == "cpu"
for section, least in (("single", 21), ("emulated", 9), ("end_to_end", 2)):
    g = f[section]
    n = g["measured_s"].shape[0]
    assert n >= least, f"{section}: {n} points, expected at least {least}"
    for key in ("measured_s", "predicted_s", "measured_tps", "predicted_tps"):
        v = g[key][()]
        assert np.all(np.isfinite(v)) and np.all(v > 0), f"{section}/{key}: {v}"
    assert 0 <= g.attrs["upper_bound_share"] <= 1 and g.attrs["median_abs_error"] >= 0
    # The ceiling (predictor.hpp, assumption 14) is priced at every point and no run beats it.
    ceiling = g["ceiling_s"][()]
    assert np.all(np.isfinite(ceiling)) and np.all(ceiling > 0), f"{section}/ceiling_s: {ceiling}"
    assert g.attrs["ceiling_holds_share"] == 1, (section, ceiling, g["measured_s"][()])
    assert 0 < g.attrs["ceiling_reached_median"] <= 1, g.attrs["ceiling_reached_median"]
worlds = set(f["emulated/world"][()].tolist())
assert worlds == {2, 4, 8}, worlds
rho = f["emulated/groups/spearman"][()]
assert len(rho) == 9 and np.isfinite(rho).any(), rho
assert np.all((f["emulated/groups/pick_distance"][()] >= 0) & (f["emulated/groups/pick_distance"][()] <= 1))
PY
# An emulated point's prediction is what the emulated rank runs: compute, kernel gaps, the local
# copies standing in for its collectives (emulation_s, > 0 for every plan of 2+ ranks) and its
# host's bookkeeping (host_s): StepCost::emulated_rank_s.
"$PYTHON" - "$WORK/v" <<'PY' || fail "emulated predictions leave out the stand-in copies"
import os, sys, h5py, numpy as np
d = sys.argv[1]
f = h5py.File(os.path.join(d, "validation.h5"), "r")["emulated"]
text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
keys = {"tiny OLMoE": "olmoe-tiny", "tiny Qwen2-MoE": "qwen2_moe-tiny", "tiny Mixtral": "mixtral-tiny"}
for shape, label, world, predicted in zip(f["shape"][()], f["label"][()], f["world"][()], f["predicted_s"][()]):
    plans = h5py.File(os.path.join(d, "work", f"{keys[text(shape)]}-plans-{world}.h5"), "r")["plans"]
    cols = [c.strip() for c in text(plans["decode_parts"].attrs["columns"]).split(",")]
    names = [text(p) for p in plans["plan"][()]]
    row = dict(zip(cols, plans["decode_parts"][()][names.index(text(label))]))
    assert row["emulation_s"] > 0, (text(label), row)
    assert row["host_s"] > 0, (text(label), row)
    assert np.isclose(predicted, row["compute_s"] + row["kernel_overhead_s"] + row["emulation_s"] + row["host_s"],
                      rtol=1e-12), (text(label), predicted, row)
PY
# Section (b) runs its emulated ranks under --emulate-peers spread (the study's default).
"$PYTHON" - "$WORK/v/work" <<'PY' || fail "emulated runs did not record --emulate-peers spread"
import glob, sys, h5py
runs = [p for p in glob.glob(sys.argv[1] + "/*-emu-*.h5")]
assert runs, "no emulated results files"
for p in runs:
    v = h5py.File(p, "r").attrs["emulated_peers"]
    assert (v.decode() if isinstance(v, bytes) else str(v)) == "spread", (p, v)
PY
for needle in "(a) one device" "(b) emulated ranks" "(c) end to end over MPI" "| tiny Mixtral | 8 |" "Spearman" \
  "ceiling holds"; do
  grep -qF -- "$needle" "$WORK/v/report.md" || fail "report.md lacks '$needle'"
done
echo "validate_predictor: $(grep -c '^| tiny' "$WORK/v/report.md") rows in the report"
