# How the 2026-11-24 measurements were taken on the lent GPU machines: binaries built on a
# machine with the build dependencies, copied into build-carry/ (moetron, tests/...), this
# script run from the repository root there, with $OUT the folder whose files come back.
# H200: the GPU model test (diagnostic) and the Mixtral-8x7B benchmark.
export PATH=$PWD/build-carry:$PATH
build-carry/tests/moetron_gpu_tests --gtest_filter='*GpuModel*' > $OUT/gpu_model.log 2>&1
grep -E "model    \]|Failure|prompt [0-9]+ step" $OUT/gpu_model.log | head -40
timeout 520 python3 perf/bench.py --moetron build-carry/moetron --models mixtral-8x7b --idle-batches 64 --no-eager --out /tmp/bench 2>&1 | grep -v Deprecation | tail -20
cp /tmp/bench/bench.json $OUT/bench-mixtral.json; cp /tmp/bench/RESULTS.md $OUT/RESULTS-mixtral.md; cp /tmp/bench/bench.h5 $OUT/bench-mixtral.h5 2>/dev/null; true
