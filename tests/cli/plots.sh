#!/usr/bin/env bash
# perf/plots.py renders every figure from small CPU runs (closed loops of 1 and 4 requests):
# each PNG exists, is not one flat colour, and plots.json counts > 0 data points for it with
# labelled axes.
source "$(dirname "$0")/common.bash"
"$PYTHON" -c "import h5py, matplotlib, numpy" 2>/dev/null ||
  fail "$PYTHON lacks h5py, matplotlib or numpy (make deps installs python3-h5py python3-matplotlib python3-numpy)"
for c in 1 4; do
  "$MOETRON" workload --kind short --requests 8 --concurrency "$c" --vocab 256 --seed "$c" \
    --out "$WORK/c$c.jsonl" >/dev/null
  "$MOETRON" run --model "$FIXTURES/olmoe" --prompts "$WORK/c$c.jsonl" --backend cpu --log-level warn \
    --out "$WORK/concurrency-$c.h5" || fail "run at concurrency $c"
done
"$PYTHON" "$MOETRON_SOURCE_DIR/perf/plots.py" "$WORK"/concurrency-*.h5 --out "$WORK/plots" || fail "plots.py failed"
"$PYTHON" - "$WORK/plots" <<'PY' || fail "a figure is empty"
import json, os, sys
import matplotlib.image as mpimg
import numpy as np
out = sys.argv[1]
manifest = json.load(open(os.path.join(out, "plots.json")))
assert {"throughput.png", "latency_cdf.png", "latency_vs_load.png"} <= set(manifest), manifest
for name, entry in manifest.items():
    path = os.path.join(out, name)
    assert os.path.getsize(path) > 0, name
    image = mpimg.imread(path)
    colours = np.unique(image.reshape(-1, image.shape[-1]), axis=0)
    assert len(colours) > 10, f"{name} is nearly one colour ({len(colours)} colours)"
    assert entry["points"] > 0, f"{name} plots no data"
    assert all(entry["xlabel"]) and all(entry["ylabel"]), f"{name} has an unlabelled axis"
    print(f"{name}: {image.shape[1]}x{image.shape[0]}, {len(colours)} colours, {entry['points']} points")
PY
echo "plots rendered with data"
