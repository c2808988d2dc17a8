#!/usr/bin/env bash
# perf/expert_load_study.py in its minimal mode (--quick: zipf 0 and 1.5, dp=2,ep=2 on 2 CPU
# ranks, with and without redundant experts; the busiest emulated rank of dp=4,ep=4): the
# Markdown tables have their 4 rows each with numbers, the plots exist and are not one flat
# colour, and replicas lowered the ranks' imbalance under zipf 1.5, the emulated busiest rank's
# predicted and measured token-slots too.
source "$(dirname "$0")/common.bash"
"$PYTHON" -c "import h5py, matplotlib, numpy" 2>/dev/null ||
  fail "$PYTHON lacks h5py, matplotlib or numpy (make deps installs python3-h5py python3-matplotlib python3-numpy)"
MPIRUN=$(command -v mpirun || echo "$MPIEXEC")
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/expert_load_study.py" --quick --moetron "$MOETRON" --mpirun "$MPIRUN" \
  --work "$WORK/runs" --out "$WORK/EL.md" >"$WORK/study.log" 2>&1 || { cat "$WORK/study.log"; fail "the study failed"; }
rows=$(grep -c '^| dp=2,ep=2 | ' "$WORK/EL.md" || true)
[ "$rows" -eq 4 ] || { cat "$WORK/EL.md"; fail "$rows table rows, expected 4"; }
rows=$(grep -c '^| 4 | ' "$WORK/EL.md" || true)
[ "$rows" -eq 4 ] || { cat "$WORK/EL.md"; fail "$rows emulated table rows, expected 4"; }
"$PYTHON" - "$WORK/EL_plots" <<'PY' || fail "the study's outputs are empty or wrong"
import json, math, os, sys
import matplotlib.image as mpimg
import numpy as np
plots = sys.argv[1]
rows = json.load(open(os.path.join(plots, "rows.json")))
assert len(rows) == 4, rows
for r in rows:
    for key in ("rank_imbalance", "expert_imbalance", "output_tokens_per_s"):
        assert math.isfinite(r[key]) and r[key] > 0, (key, r)
for name in ("rank_imbalance.png", "throughput.png", "emulated_imbalance.png", "emulated_decode_step.png"):
    image = mpimg.imread(os.path.join(plots, name))
    colours = np.unique(image.reshape(-1, image.shape[-1]), axis=0)
    assert len(colours) > 10, f"{name} is nearly one colour"
skewed = {r["redundant"]: r["rank_imbalance"] for r in rows if r["skew"] == 1.5}
assert skewed[max(skewed)] < skewed[0], f"replicas did not lower the ranks' imbalance: {skewed}"
emulated = json.load(open(os.path.join(plots, "emulated_rows.json")))
assert len(emulated) == 4, emulated
for r in emulated:
    for key in ("predicted_tokens", "measured_tokens", "decode_step_s"):
        assert math.isfinite(r[key]) and r[key] > 0, (key, r)
busiest = {r["redundant"]: r for r in emulated if r["skew"] == 1.5}
for key in ("predicted_tokens", "measured_tokens"):
    assert busiest[max(busiest)][key] < busiest[0][key], f"replicas did not lower the busiest emulated rank's {key}: {busiest}"
print("study rows:", [(r["skew"], r["redundant"], round(r["rank_imbalance"], 3)) for r in rows])
PY
