# The first GPU call of the next session (nvidia-h200 or H100, one call, ~8 minutes): what was
# written on 2026-12-02 without a GPU and has never run on one. Same layout as device_call*.sh:
# binaries built where the build dependencies are, copied into build-carry/, run from the
# repository root with $OUT the folder that comes back.
set -o pipefail
export PATH=$PWD/build-carry:$PATH
B=build-carry
# 1. The new kernels against the host: the device sampler and the dispatch packing.
$B/tests/moetron_gpu_tests --gtest_filter='CudaSampling*:*PackDispatch*' > $OUT/new_kernels.log 2>&1
echo "new kernel tests exit $?"; grep -E "FAILED|PASSED|mismatch|differ" $OUT/new_kernels.log | head -20
# 2. Everything labelled gpu, including 4 ranks on one GPU with dp plans (the fixed-capacity
#    dispatch eagerly, over MPI through the host).
bash tests/gpu/run_gpu_tests.sh $B > $OUT/gpu_tests.log 2>&1; echo "gpu tests exit $?"
grep -E "^\[  FAILED|PASSED|SKIPPED|equals|agree|FAIL|were not run" $OUT/gpu_tests.log | head -30
# 3. memcheck on a sampled run (the sampler) and on 2 ranks sharing the GPU with dp=2 (packing).
$B/moetron model make --family olmoe --preset tiny --set hidden_size=512 --set num_attention_heads=8 \
  --set num_key_value_heads=4 --set intermediate_size=256 --set vocab_size=1024 --out /tmp/s --seed 3 >/dev/null
python3 perf/make_prompts.py /tmp/s.jsonl 6 20 6 1000
timeout 150 compute-sanitizer --tool memcheck --leak-check no $B/moetron run --model /tmp/s --prompts /tmp/s.jsonl \
  --out /tmp/s.h5 --ignore-eos --temperature 0.8 --top-k 50 --top-p 0.9 --kv-cache-tokens 2048 --log-level warn \
  > $OUT/sanitizer.log 2>&1; echo "memcheck (sampling) exit $?"; tail -2 $OUT/sanitizer.log
timeout 150 mpirun --allow-run-as-root -np 2 compute-sanitizer --tool memcheck --leak-check no $B/moetron run \
  --model /tmp/s --prompts /tmp/s.jsonl --out /tmp/s2.h5 --ignore-eos --plan dp=2,ep=2 --kv-cache-tokens 2048 \
  --log-level warn >> $OUT/sanitizer.log 2>&1; echo "memcheck (dp=2 dispatch) exit $?"; tail -2 $OUT/sanitizer.log
# 4. What sampling costs on the device: OLMoE shape, batch 64, greedy against top-p.
$B/moetron model make --family olmoe --preset olmoe-1b-7b --config-only --out /tmp/olmoe >/dev/null
python3 perf/make_prompts.py /tmp/p.jsonl 64 512 64 50000
for mode in "" "--temperature 0.8 --top-p 0.9"; do
  $B/moetron run --model /tmp/olmoe --load-format dummy --prompts /tmp/p.jsonl --out /tmp/o.h5 --ignore-eos $mode \
    2>&1 | grep -E "decode step median|done:"
done
