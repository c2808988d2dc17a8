#!/usr/bin/env bash
# Twenty-fourth session, third call: the predictor's validation (single device, emulated ranks)
# and one 2-rank `--plan auto` run that measures its own profile (the bootstrap bench's time).
set -uo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd); out=${OUT:?}
tar -C "$src/build-xz" -xJf "$src/build-xz/bins.tar.xz" || exit 2
b=$src/build-xz/b; w=$(mktemp -d)
timeout 400 python3 "$src/perf/validate_predictor.py" --moetron "$b/moetron" --out-dir "$out/val" \
  --sections single emulated --budget-s 240 2>&1 | tee "$out/validate.txt"
"$b/moetron" model make --family olmoe --preset olmoe-1b-7b --config-only --out "$w/olmoe" >/dev/null
python3 "$src/perf/make_prompts.py" "$w/p.jsonl" 64 256 32 50000
/usr/bin/time -v timeout 150 mpirun --allow-run-as-root --oversubscribe -np 2 "$b/moetron" run \
  --model "$w/olmoe" --load-format dummy --plan auto --prompts "$w/p.jsonl" --out "$out/auto.h5" \
  --ignore-eos 2>&1 | tee "$out/plan_auto.txt"
tar -czf "$out/val.tgz" -C "$out" val && rm -rf "$out/val"
