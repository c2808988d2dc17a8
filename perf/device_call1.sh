# How the 2026-11-24 measurements were taken on the lent GPU machines: binaries built on a
# machine with the build dependencies, copied into build-carry/ (moetron, tests/...), this
# script run from the repository root there, with $OUT the folder whose files come back.
set -o pipefail
export PATH=$PWD/build-carry:$PATH
bash tests/gpu/run_gpu_tests.sh build-carry > $OUT/gpu_tests.log 2>&1; echo "gpu tests exit $?"
grep -E "^\[  FAILED|PASSED|SKIPPED|\[ model|equals|agree|FAIL|were not run|tokens agree" $OUT/gpu_tests.log | head -30
# sanitizers on a small run
B=build-carry/moetron; $B model make --family olmoe --preset tiny --set hidden_size=512 --set num_attention_heads=8 --set num_key_value_heads=4 --set intermediate_size=256 --set vocab_size=1024 --out /tmp/s --seed 3 >/dev/null
python3 perf/make_prompts.py /tmp/s.jsonl 6 20 6 1000
timeout 150 compute-sanitizer --tool memcheck --leak-check no $B run --model /tmp/s --prompts /tmp/s.jsonl --out /tmp/s.h5 --ignore-eos --kv-cache-tokens 2048 --log-level warn > $OUT/sanitizer.log 2>&1; echo "memcheck exit $?"; tail -2 $OUT/sanitizer.log
timeout 150 compute-sanitizer --tool racecheck $B run --model /tmp/s --prompts /tmp/s.jsonl --out /tmp/s2.h5 --ignore-eos --kv-cache-tokens 2048 --no-graphs --log-level warn >> $OUT/sanitizer.log 2>&1; echo "racecheck exit $?"; tail -2 $OUT/sanitizer.log
timeout 330 python3 perf/bench.py --moetron $B --models olmoe-1b-7b --idle-batches 1,64 --out /tmp/bench 2>&1 | tail -25
cp /tmp/bench/bench.json $OUT/bench-olmoe.json; cp /tmp/bench/RESULTS.md $OUT/RESULTS-olmoe.md; cp /tmp/bench/bench.h5 $OUT/bench-olmoe.h5 2>/dev/null; true
