#!/usr/bin/env bash
# perf/study.py with chunked prefill as a factor, without Slurm: prepare maps the grid's
# prefill_chunk to `moetron run --prefill-chunk`, each task runs directly, and analyze's knee
# table has a row per chunk setting (with each setting's ITL ratio by rate), the adaptive chunk
# ("auto", a level of text among numbers) included, and its load figures draw a line per setting.
source "$(dirname "$0")/common.bash"
cat >"$WORK/grid.json" <<'JSON'
{"models": {"olmoe": "tests/fixtures/olmoe"},
 "factors": {"model": ["olmoe"], "kind": ["short"], "rate": [50, 400], "prefill_chunk": [0, 7, "auto"]},
 "repeats": 1, "requests": 6, "run_args": ["--backend", "cpu", "--log-level", "warn"]}
JSON
study=$WORK/study
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/study.py" prepare "$WORK/grid.json" --dir "$study" --moetron "$MOETRON" \
  --source "$MOETRON_SOURCE_DIR" >/dev/null
"$PYTHON" - "$study/tasks.json" <<'PY' || fail "prepare did not map prefill_chunk to --prefill-chunk"
import json, sys
tasks = json.load(open(sys.argv[1]))["tasks"]
assert len(tasks) == 6, len(tasks)
for t in tasks:
    run = t["run"]
    assert run[run.index("--prefill-chunk") + 1] == str(t["factors"]["prefill_chunk"]), run
PY
for i in 0 1 2 3 4 5; do "$PYTHON" "$MOETRON_SOURCE_DIR/perf/study.py" task "$study" "$i" >/dev/null; done
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/study.py" analyze "$study" --out "$study/STUDY.md" --plots >/dev/null
# The load figures draw a line per configuration (prefill_chunk 0, 7 and auto), not one line
# through every run.
"$PYTHON" - "$study/plots/plots.json" <<'PY' || fail "the study's load figures do not draw one line per configuration"
import json, sys
manifest = json.load(open(sys.argv[1]))
for png in ("throughput.png", "latency_vs_load.png"):
    assert manifest[png]["configurations"] == 3, (png, manifest[png])
PY
for want in "## Throughput knee" "| model=olmoe, kind=short, prefill_chunk=0 | rate |" \
            "| model=olmoe, kind=short, prefill_chunk=7 | rate |" "### model=olmoe, kind=short, prefill_chunk=7: by rate" \
            "| model=olmoe, kind=short, prefill_chunk=auto | rate |"; do
  grep -qF -- "$want" "$study/STUDY.md" || { cat "$study/STUDY.md"; fail "STUDY.md lacks '$want'"; }
done

# admission and max_batch map to --admission and --max-batch too (as in
# perf/study_grids/h200-latency-capped.json): prepared only.
cat >"$WORK/capped.json" <<'JSON'
{"models": {"olmoe": "tests/fixtures/olmoe"},
 "factors": {"model": ["olmoe"], "kind": ["short"], "admission": ["static"], "max_batch": [1, 4], "rate": [5]},
 "repeats": 1, "requests": 6, "run_args": ["--backend", "cpu"]}
JSON
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/study.py" prepare "$WORK/capped.json" --dir "$WORK/capped" --moetron "$MOETRON" \
  --source "$MOETRON_SOURCE_DIR" >/dev/null || fail "prepare refused admission or max_batch"
"$PYTHON" - "$WORK/capped/tasks.json" <<'PY' || fail "prepare did not map admission and max_batch"
import json, sys
tasks = json.load(open(sys.argv[1]))["tasks"]
assert [t["factors"]["max_batch"] for t in tasks] == [1, 4], tasks
for t in tasks:
    run = t["run"]
    assert run[run.index("--admission") + 1] == "static", run
    assert run[run.index("--max-batch") + 1] == str(t["factors"]["max_batch"]), run
PY

# emulate_rank runs one rank of a larger plan in one process (--emulate-world from the plan's
# ranks, no launcher), and the task runs and writes its results.
cat >"$WORK/emulated.json" <<'JSON'
{"models": {"olmoe": "tests/fixtures/olmoe"},
 "factors": {"model": ["olmoe"], "kind": ["short"], "plan": ["pp=1,tp=1,dp=4,ep=4"], "emulate_rank": [0, 3], "concurrency": [4]},
 "repeats": 1, "requests": 8, "run_args": ["--backend", "cpu", "--log-level", "warn"]}
JSON
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/study.py" prepare "$WORK/emulated.json" --dir "$WORK/emulated" --moetron "$MOETRON" \
  --source "$MOETRON_SOURCE_DIR" >/dev/null || fail "prepare refused emulate_rank"
"$PYTHON" - "$WORK/emulated/tasks.json" <<'PY' || fail "prepare did not map emulate_rank"
import json, sys
tasks = json.load(open(sys.argv[1]))["tasks"]
for t in tasks:
    run = t["run"]
    assert run[0].endswith("moetron"), run  # no launcher: one process
    assert run[run.index("--emulate-world") + 1] == "4", run
    assert run[run.index("--emulate-rank") + 1] == str(t["factors"]["emulate_rank"]), run
PY
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/study.py" task "$WORK/emulated" 1 >/dev/null || fail "an emulated task failed"
"$PYTHON" - "$WORK/emulated/results/task-1.h5" <<'PY' || fail "the emulated task's results do not name its rank"
import h5py, sys
with h5py.File(sys.argv[1], "r") as f:
    assert str(f.attrs["emulated_rank"]) == "3" and str(f.attrs["emulated_world"]) == "4", dict(f.attrs)
    assert f["/summary"].attrs["requests"] == 2, dict(f["/summary"].attrs)  # its replica's share: one of the 4 clients' chains of 2
PY
echo "the study runs prefill_chunk as a factor and tables the knee per setting; admission, max_batch and emulate_rank map to their options"
