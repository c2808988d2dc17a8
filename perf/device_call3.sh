# How the 2026-11-24 measurements were taken on the lent GPU machines: binaries built on a
# machine with the build dependencies, copied into build-carry/ (moetron, tests/...), this
# script run from the repository root there, with $OUT the folder whose files come back.
# H100: the Qwen1.5-MoE-A2.7B benchmark.
timeout 420 python3 perf/bench.py --moetron build-carry/moetron --models qwen1.5-moe-a2.7b --idle-batches 64 --no-eager --out /tmp/bench 2>&1 | grep -v Deprecation | tail -14
cp /tmp/bench/bench.json $OUT/bench-qwen.json; cp /tmp/bench/RESULTS.md $OUT/RESULTS-qwen.md; cp /tmp/bench/bench.h5 $OUT/bench-qwen.h5 2>/dev/null; true
