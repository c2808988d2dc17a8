#!/usr/bin/env bash
# perf/bench_to_h5: a bench.py JSON file with decode, prefill and startup records becomes one
# group per model and device: the decode columns by batch (HF's prefill batch not among them),
# GROUP/prefill by prompt length, GROUP/startup's figures as attributes; a broken file fails
# with exit 1 and leaves no output behind.
source "$(dirname "$0")/common.bash"
BENCH_TO_H5=${BENCH_TO_H5:-$(dirname "$MOETRON")/bench_to_h5}
[ -x "$BENCH_TO_H5" ] || { echo "skip: $BENCH_TO_H5 not built"; exit 77; }

cat > "$WORK/bench.json" <<'JSON'
{"meta": {"device": "GPU X", "date": "2026-12-03 10:06 UTC", "hbm_bytes_per_s": 4.2e12,
          "bf16_flops_per_s": 7.9e14, "prompt": 512, "new_tokens": 32, "steps": 8},
 "records": [
  {"engine": "moetron", "model": "m", "batch": 1, "decode_step_s": 0.00134, "decode_tok_s": 744.0},
  {"engine": "moetron", "model": "m", "batch": 64, "decode_step_s": 0.00927, "decode_tok_s": 6907.0},
  {"engine": "hf", "model": "m", "batch": 64, "decode_tok_s": 513.0},
  {"engine": "moetron-sampling", "model": "m", "batch": 64, "greedy_step_s": 0.00927, "sampled_step_s": 0.0102, "sampling_overhead": 0.1},
  {"engine": "moetron-prefill", "model": "m", "prompt": 512, "requests": 64, "prefill_tok_s": 91497.0, "fraction_of_gemm_rate": 0.28},
  {"engine": "hf-prefill", "model": "m", "prompt": 512, "batch": 64, "prefill_tok_s": 90489.0, "fraction_of_gemm_rate": 0.27},
  {"engine": "moetron-prefill", "model": "m", "prompt": 4095, "requests": 8, "prefill_tok_s": 80000.0, "fraction_of_gemm_rate": 0.25},
  {"engine": "hf-prefill", "model": "m", "prompt": 4095, "batch": 8, "prefill_tok_s": 87881.0, "fraction_of_gemm_rate": 0.29},
  {"engine": "moetron-startup", "model": "m", "checkpoint_bytes": 13838721888, "shards": 3, "startup_s": 21.6, "weights_s": 21.5}
 ]}
JSON
"$BENCH_TO_H5" "$WORK/out.h5" "$WORK/bench.json" || fail "bench_to_h5 failed"
[ "$(h5_values "$WORK/out.h5" "/m@GPU X/batch" | tr '\n' ' ')" = "1 64 " ] || fail "decode batches: $(h5_values "$WORK/out.h5" "/m@GPU X/batch")"
[ "$(h5_values "$WORK/out.h5" "/m@GPU X/prefill/prompt" | tr '\n' ' ')" = "512 4095 " ] || fail "prefill prompts"
[ "$(h5_values "$WORK/out.h5" "/m@GPU X/sampling_overhead" | tr '\n' ' ')" = "nan 0.1 " ] || fail "sampling overhead by batch: $(h5_values "$WORK/out.h5" "/m@GPU X/sampling_overhead")"
hf=$(h5_values "$WORK/out.h5" "/m@GPU X/prefill/hf_tok_s" | tr '\n' ' ')
[[ "$hf" == 90489* && "$hf" == *87881* ]] || fail "HF prefill rates: $hf"
"$PYTHON" - "$WORK/out.h5" <<'PY' || fail "startup attributes"
import sys, h5py
a = h5py.File(sys.argv[1], "r")["m@GPU X/startup"].attrs
assert a["startup_s"] == 21.6 and a["shards"] == 3 and a["checkpoint_bytes"] == 13838721888, dict(a)
PY
echo '{"meta": {}, "records": [' > "$WORK/broken.json"
expect_exit_1 broken "bench_to_h5:" "$BENCH_TO_H5" "$WORK/broken.h5" "$WORK/broken.json"
[ ! -e "$WORK/broken.h5" ] && [ ! -e "$WORK/broken.h5.tmp" ] || fail "a failed conversion left a file"
echo "bench_to_h5: ok"
