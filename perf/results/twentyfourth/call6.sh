#!/usr/bin/env bash
# Twenty-fourth session, fourth call: the 2-rank `--plan auto` run again, with the bootstrap
# bench's progress lines and its collectives capped at 16 MiB where ranks share the GPU.
set -uo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd); out=${OUT:?}
tar -C "$src/build-xz" -xJf "$src/build-xz/bins.tar.xz" || exit 2
b=$src/build-xz/b; w=$(mktemp -d)
"$b/moetron" model make --family olmoe --preset olmoe-1b-7b --config-only --out "$w/olmoe" >/dev/null
python3 "$src/perf/make_prompts.py" "$w/p.jsonl" 64 256 32 50000
/usr/bin/time -f "wall %e s" timeout 140 mpirun --allow-run-as-root --oversubscribe -np 2 "$b/moetron" run \
  --model "$w/olmoe" --load-format dummy --plan auto --prompts "$w/p.jsonl" --out "$out/auto.h5" \
  --ignore-eos --log-level debug 2>&1 | grep -v "^\[moetron progress" | tee "$out/plan_auto.txt" | tail -60
