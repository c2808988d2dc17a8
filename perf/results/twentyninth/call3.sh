#!/usr/bin/env bash
# Twenty-ninth session, third call: the build with the warm-up forward (engine/warm_up.hpp, on by
# default on the cuda backend) and the collective watchdog's longer yielding wait. (1) The gpu
# suite and sanitizers again (every GPU run now warms up first); (2) what the warm-up moves: the
# first requests' TTFT with --warmup off and on (OLMoE-1B-7B and Mixtral-8x7B shapes cut to 4
# layers, dummy weights, 8 prompts of 512 tokens, one a prefill step, 16 new tokens); (3) section (c) again (its
# throughput had counted the cold first prefill). Stage the build first
# (../twentyfirst/README.md); carry ["build-xz"].
# Run: bash perf/results/twentyninth/call3.sh [TOTAL_S] 2>&1 | tee $OUT/call3.txt
set -uo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd); out=${OUT:?}
total=${1:-480}
start=$SECONDS
"$src/perf/results/device_call.sh" $((total < 270 ? total : 270)) tests sanitize; echo "tests+sanitize: exit $?, $((SECONDS - start)) s"
b=$src/build-xz/b
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
hw=h200; [[ "$gpu" == *H100* ]] && hw=h100

echo "== (2) first requests' TTFT, --warmup off and on ($gpu)"
w=$(mktemp -d)
python3 "$src/perf/make_prompts.py" "$w/p.jsonl" 8 512 16 30000
for fam in "olmoe olmoe-1b-7b" "mixtral mixtral-8x7b"; do
  read -r family preset <<<"$fam"
  "$b/moetron" model make --family "$family" --preset "$preset" --set num_hidden_layers=4 --config-only \
    --out "$w/$preset" >/dev/null
  for mode in off on; do
    "$b/moetron" run --model "$w/$preset" --load-format dummy --prompts "$w/p.jsonl" --ignore-eos \
      --max-batch-tokens 512 --warmup "$mode" --out "$w/$preset-$mode.h5" --log-level info 2>&1 | grep -E "startup:|latency|prefill:" |
      sed "s/^/$preset --warmup $mode: /"
    python3 - "$w/$preset-$mode.h5" <<'EOF'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
s, st = f["steps"], f["startup"].attrs
pre = s["is_prefill"][:].astype(bool)
print(f"  first prefill step {s['seconds'][:][pre][0] * 1e3:.2f} ms, later prefill steps "
      f"{', '.join(f'{x * 1e3:.2f}' for x in s['seconds'][:][pre][1:4])} ms; ttft_p50 "
      f"{f['summary'].attrs['ttft_p50_s'] * 1e3:.1f} ms; warmup_seconds {st['warmup_seconds']:.3f}, "
      f"startup total {st['total_seconds']:.3f} s")
EOF
  done
done
echo "(2) done at $((SECONDS - start)) s"

cap=$((total - (SECONDS - start) - 15)); [ "$cap" -gt 120 ] && cap=120
if [ "$cap" -ge 60 ]; then
  echo "== (3) validation, section (c), cap $cap s"
  timeout "$cap" python3 "$src/perf/validate_predictor.py" --moetron "$b/moetron" --out-dir "$out/val" \
    --hardware "$hw" --sections end_to_end --budget-s $((cap - 15)) \
    --title "$gpu, full mode, section (c), with the warm-up forward" 2>&1 | tee "$out/validate3.txt"
  echo "validate: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s"
  tar -czf "$out/val3.tgz" -C "$out" val && rm -rf "$out/val"
fi
echo "call3: $((SECONDS - start)) s"
