#!/usr/bin/env bash
# Twenty-seventh session: everything in one lent-machine call (< 600 s), since machines were
# scarce (five starts refused before it): the whole gpu suite and the sanitizers (issue 11, item 1),
# then the predictor's validation, sections (a), (b) and (c) (two ranks on the one GPU: the first
# GPU test of the sharing term), then the 2-rank `--plan auto` (bench collectives capped at 16 MiB).
# Each part under its own cap, so a slow one leaves the next its time. Stage the build first
# (../twentyfirst/README.md); carry ["build-xz"]. Argument: the seconds the whole call may take
# (default 580; give less when the session's device budget is short: the validation shrinks first).
set -uo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd); out=${OUT:?}
total=${1:-580}
start=$SECONDS
"$src/perf/results/device_call.sh" $((total < 270 ? total : 270)) tests sanitize; echo "tests+sanitize: exit $?, $((SECONDS - start)) s"
b=$src/build-xz/b   # unpacked by device_call.sh
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)   # H100 or H200, whichever came
cap=$((total - (SECONDS - start) - 60)); [ "$cap" -gt 250 ] && cap=250
if [ "$cap" -ge 90 ]; then
  timeout "$cap" python3 "$src/perf/validate_predictor.py" --moetron "$b/moetron" --out-dir "$out/val" \
    --budget-s $((cap - 35)) --title "$gpu, full mode, all sections" 2>&1 | tee "$out/validate.txt"
  echo "validate: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s"
  tar -czf "$out/val.tgz" -C "$out" val && rm -rf "$out/val"
fi
left=$((total - (SECONDS - start)))
if [ "$left" -gt 50 ]; then
  w=$(mktemp -d)
  "$b/moetron" model make --family olmoe --preset olmoe-1b-7b --config-only --out "$w/olmoe" >/dev/null
  python3 "$src/perf/make_prompts.py" "$w/p.jsonl" 64 256 32 50000
  timeout "$left" mpirun --allow-run-as-root --oversubscribe -np 2 "$b/moetron" run \
    --model "$w/olmoe" --load-format dummy --plan auto --prompts "$w/p.jsonl" --out "$out/auto.h5" \
    --ignore-eos --log-level debug 2>&1 | grep -v "^\[moetron progress" > "$out/plan_auto.txt"
  echo "plan auto: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s"
fi
