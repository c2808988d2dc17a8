#!/usr/bin/env bash
# The GPU tests and benchmarks, in one command, on a GPU machine that has only binaries built
# elsewhere (a "carried" build folder: moetron, tests/moetron_gpu_tests, tests/compare_results):
#
#   perf/gpu_check.sh BUILD_DIR [SECTION...]      (run from anywhere; default: every section
#                                                  but `plans`, which needs two GPUs)
#
# Sections:
#   tests     every gpu-labelled test: tests/gpu/run_gpu_tests.sh (kernels against the CPU
#             reference, the model against the HF fixtures, CUDA graphs, tests/cli/gpu_*.sh)
#   kernels   the kernel tests last written without a GPU (device sampler, dispatch packing,
#             redundant-expert routing),
#             alone, and the model test against the HF fixtures (its per-step diagnostics)
#   mma       the tensor-core decode GEMVs (MOETRON_DECODE_EXPERTS=mma, the default since this passed):
#             the MoE op tests (both kernel families), the CUDA-graph test and the model tests
#             against the HF fixtures with it as the default, then the graph-replay CLI test and
#             compute-sanitizer memcheck and racecheck of an eager decode on the small model
#   sanitize  compute-sanitizer on a small OLMoE-shaped model: memcheck of a sampled run,
#             racecheck of an eager run, memcheck and racecheck of 2 ranks sharing the GPU
#             with dp=2, ep=2
#   sampling  what sampling costs on the device: OLMoE-1B-7B shape (dummy weights), batch 64,
#             greedy against temperature 0.8 / top-p 0.9, decode step medians
#   pdl       programmatic dependent launch on and off (MOETRON_PDL=1/0): decode step medians
#             at batch 1, 8 and 64 (OLMoE-1B-7B and Qwen1.5-MoE-A2.7B shapes, dummy weights,
#             512-token prompts), and the GPU idle share within a batch-1 step with it on
#   profile   `moetron bench` on the OLMoE-1B-7B shape (the time it takes; the profile is kept
#             in the logs), then a batch-64 decode run with --plan auto predicted from that
#             profile, its results file kept beside it (predicted against measured: /predictions)
#   ncu       Nsight Compute on an eager batch-1 decode (OLMoE-1B-7B shape, dummy weights): time
#             and DRAM bytes of every kernel of 4 decode steps (moetron run
#             --profile-decode-steps opens ncu's window), tabled by perf/ncu_summary.py
#   buckets   decode steps of part-filled graph buckets against full ones (Mixtral-8x7B and
#             OLMoE-1B-7B shapes, dummy weights, 512-token prompts, phased batches 256, 200,
#             133, 128, 80): each part-filled batch should cost no more than its full bucket
#             (a bucket's padding rows route to no expert); BUCKETS_BASE=BINARY runs a second
#             build on the same prompts for an A/B
#   hopper    the Hopper grouped expert GEMM (MOETRON_EXPERT_GEMM=wgmma, kernels/grouped_gemm_sm90.cu;
#             the default there as wgmma+cublas):
#             its op and graph tests against the CPU reference, memcheck of the op test, the
#             expert GEMMs alone by path (BUILD_DIR/expert_gemm_bench: wgmma, cuBLAS on 8 streams,
#             WMMA tiles; 512-8,192 tokens, the bench's shapes), and whole prefill steps of
#             4,095-token prompts on the OLMoE-1B-7B, Qwen1.5-MoE-A2.7B and Mixtral-8x7B shapes
#             (dummy weights) under cublas, wgmma and wgmma+cublas, and Mixtral decode at
#             256/160/128 sequences (25-64 rows an expert, which wgmma also takes) under cublas
#             and the default
#   bench     the benchmark table, perf/bench.py (models: BENCH_MODELS, default olmoe-1b-7b;
#             further options: BENCH_ARGS, e.g. "--idle-batches 64 --no-eager")
#   plans     two GPUs: tests/cli/gpu_plans.sh (TP2, EP2, PP2, DP2 over NCCL against one GPU)
#   expert_load  perf/expert_load_study.py --backend cuda: 4 ranks sharing the GPU, zipf skews 0
#             to 1.5, EP plans with and without redundant experts (EXPERT_LOAD_GPU.md and its
#             plots beside it)
#
# Everything is written under $OUT/gpu_check/ (OUT defaults to ./gpu-check-out), then packed
# into $OUT/gpu_check.tar.gz, because the lent machines return only a few files; the summary
# (one line per section with its exit status) is also printed and kept as $OUT/summary.txt.
# Exits non-zero when any section fails. On a lent machine, where one command may run 10
# minutes, give `bench` a call of its own (e.g. `perf/gpu_check.sh build-carry tests kernels
# sanitize sampling`, then `perf/gpu_check.sh build-carry bench`; OUT differs per call there).
set -uo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
fail() { echo "gpu_check.sh: $*" >&2; exit 2; }

src=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { usage >&2; fail "missing BUILD_DIR (a folder holding moetron and tests/)"; }
case "$1" in -h|--help) usage; exit 0 ;; esac
build=$(cd "$1" 2>/dev/null && pwd) || fail "BUILD_DIR '$1' is not a folder"
shift
moetron=$build/moetron
gpu_tests=$build/tests/moetron_gpu_tests
[ -x "$moetron" ] || fail "BUILD_DIR '$build' has no executable moetron"
[ -x "$gpu_tests" ] || fail "BUILD_DIR '$build' has no executable tests/moetron_gpu_tests"
fixtures=$src/tests/fixtures

all_sections=(tests kernels mma sanitize sampling pdl profile ncu buckets hopper bench plans expert_load)
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(tests kernels sanitize sampling bench)
for s in "${sections[@]}"; do
  [[ " ${all_sections[*]} " == *" $s "* ]] || fail "unknown section '$s' (known: ${all_sections[*]})"
done

out_root=${OUT:-$PWD/gpu-check-out}
logs=$out_root/gpu_check
mkdir -p "$logs" || fail "cannot create $logs"
work=$(mktemp -d /tmp/gpu_check.XXXXXX)
trap 'rm -rf "$work"' EXIT
export PATH=$build:$PATH

# A small OLMoE-shaped model and prompts for the sanitizer runs (fast under the sanitizers).
small_model() {
  [ -f "$work/small/config.json" ] && return 0
  "$moetron" model make --family olmoe --preset tiny --set hidden_size=512 \
    --set num_attention_heads=8 --set num_key_value_heads=4 --set intermediate_size=256 \
    --set vocab_size=1024 --out "$work/small" --seed 3 >/dev/null &&
  python3 "$src/perf/make_prompts.py" "$work/small.jsonl" 6 20 6 1000
}

section_tests() {
  bash "$src/tests/gpu/run_gpu_tests.sh" "$build"
}

section_kernels() {
  local status=0
  "$gpu_tests" --fixtures "$fixtures" --gtest_filter='CudaSampling*:*PackDispatch*:*PackFromPeers*:*RouteToReplicas*' || status=1
  "$gpu_tests" --fixtures "$fixtures" --gtest_filter='*GpuModel*' || status=1
  return $status
}

section_mma() {
  local status=0
  MOETRON_DECODE_EXPERTS=mma MOETRON_TEST_PROGRESS=1 timeout 300 "$gpu_tests" --fixtures "$fixtures" \
    --gtest_filter='CudaMoe.*:CudaGraph.*:*GpuModel*' || status=1
  MOETRON_DECODE_EXPERTS=mma MOETRON="$moetron" MOETRON_SOURCE_DIR="$src" \
    COMPARE_RESULTS="$build/tests/compare_results" timeout 120 bash "$src/tests/cli/gpu_graphs.sh" || status=1
  small_model || return 1
  # Decode batches of 24, 6 and 2 in turn (requests finish in phases), so both MMA kernels
  # (32-row tiles at 24, tiles of 8 rows at 6) and the CUDA-core GEMV (2) run, eagerly.
  python3 "$src/perf/make_prompts.py" "$work/small24.jsonl" --phases 24,6,2 --steps 2 --prompt 20 \
    --vocab 1000 || return 1
  local run=("$moetron" run --model "$work/small" --prompts "$work/small24.jsonl" --ignore-eos
             --kv-cache-tokens 4096 --log-level warn --no-graphs)
  MOETRON_DECODE_EXPERTS=mma timeout 150 compute-sanitizer --tool memcheck --leak-check no \
    --error-exitcode 1 "${run[@]}" --out "$work/m1.h5" || status=1
  MOETRON_DECODE_EXPERTS=mma timeout 150 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "${run[@]}" --out "$work/m2.h5" || status=1
  return $status
}

section_sanitize() {
  small_model || return 1
  local status=0 run=("$moetron" run --model "$work/small" --prompts "$work/small.jsonl"
                      --ignore-eos --kv-cache-tokens 2048 --log-level warn)
  echo "== memcheck, sampled (the device sampler)"
  timeout 150 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 1 \
    "${run[@]}" --out "$work/s1.h5" --temperature 0.8 --top-k 50 --top-p 0.9 || status=1
  echo "== racecheck, eager"
  timeout 150 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "${run[@]}" --out "$work/s2.h5" --no-graphs || status=1
  echo "== memcheck, 2 ranks on one GPU, dp=2 (the dispatch packing)"
  timeout 150 mpirun --allow-run-as-root --oversubscribe -np 2 \
    compute-sanitizer --tool memcheck --leak-check no --error-exitcode 1 \
    "${run[@]}" --out "$work/s3.h5" --plan dp=2,ep=2 || status=1
  echo "== racecheck, 2 ranks on one GPU, dp=2"
  timeout 150 mpirun --allow-run-as-root --oversubscribe -np 2 \
    compute-sanitizer --tool racecheck --error-exitcode 1 \
    "${run[@]}" --out "$work/s4.h5" --plan dp=2,ep=2 || status=1
  return $status
}

section_sampling() {
  "$moetron" model make --family olmoe --preset olmoe-1b-7b --config-only \
    --out "$work/olmoe" >/dev/null || return 1
  python3 "$src/perf/make_prompts.py" "$work/p.jsonl" 64 512 64 50000 || return 1
  local status=0 mode
  for mode in "" "--temperature 0.8 --top-p 0.9"; do
    echo "== decode, batch 64, ${mode:-greedy}"
    # shellcheck disable=SC2086  # mode is a list of options
    "$moetron" run --model "$work/olmoe" --load-format dummy --prompts "$work/p.jsonl" \
      --out "$work/o.h5" --ignore-eos $mode || status=1
  done
  return $status
}

section_pdl() {
  python3 "$src/perf/make_prompts.py" "$work/phased.jsonl" --phases 64,8,1 --steps 16 \
    --prompt 512 || return 1
  python3 "$src/perf/make_prompts.py" "$work/one.jsonl" 1 512 17 30000 || return 1
  local status=0 preset family pdl
  for preset in ${PDL_PRESETS:-olmoe-1b-7b qwen1.5-moe-a2.7b}; do
    family=olmoe
    [ "$preset" = olmoe-1b-7b ] || family=qwen2_moe
    "$moetron" model make --family "$family" --preset "$preset" --config-only \
      --out "$work/$preset" >/dev/null || return 1
    for pdl in ${PDL_SETTINGS:-0 1 0 1}; do  # twice each, interleaved: the spread shows the run-to-run noise
      echo "== $preset, MOETRON_PDL=$pdl"
      MOETRON_PDL=$pdl "$moetron" run --model "$work/$preset" --load-format dummy \
        --prompts "$work/phased.jsonl" --out "$work/o.h5" --ignore-eos --max-batch 64 || status=1
    done
    echo "== $preset, MOETRON_PDL=1, GPU idle at batch 1"
    "$moetron" run --model "$work/$preset" --load-format dummy --prompts "$work/one.jsonl" \
      --out "$work/o.h5" --ignore-eos --measure-gpu-idle || status=1
  done
  return $status
}

section_profile() {
  "$moetron" model make --family olmoe --preset olmoe-1b-7b --config-only --out "$work/olmoe" \
    >/dev/null || return 1
  local start=$SECONDS
  "$moetron" bench --model "$work/olmoe" --out "$logs/profile-olmoe.h5" || return 1
  echo "ok: moetron bench took $((SECONDS - start)) s"
  python3 "$src/perf/make_prompts.py" "$work/p64.jsonl" 64 512 32 50000 || return 1
  "$moetron" run --model "$work/olmoe" --load-format dummy --prompts "$work/p64.jsonl" --ignore-eos \
    --plan auto --profile "$logs/profile-olmoe.h5" --out "$logs/olmoe-auto.h5"
}

section_ncu() {
  "$moetron" model make --family olmoe --preset olmoe-1b-7b --config-only --out "$work/olmoe" \
    >/dev/null || return 1
  # One 512-token prompt, 8 new tokens; the profiler window (--profile-decode-steps) opens at
  # decode step 2 for 4 steps, so start-up, weight generation and prefill are not profiled.
  python3 "$src/perf/make_prompts.py" "$work/ncu.jsonl" 1 512 8 30000 || return 1
  ncu --clock-control none --profile-from-start off --csv --page raw \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
    "$moetron" run --model "$work/olmoe" --load-format dummy --prompts "$work/ncu.jsonl" \
    --out "$work/o.h5" --ignore-eos --no-graphs --profile-decode-steps 2:4 \
    >"$logs/ncu-batch1.csv" 2>"$logs/ncu-batch1.err" || { tail -5 "$logs/ncu-batch1.err"; return 1; }
  python3 "$src/perf/ncu_summary.py" "$logs/ncu-batch1.csv" --steps 4
}

section_buckets() {
  python3 "$src/perf/make_prompts.py" "$work/buckets.jsonl" --phases 256,200,133,128,80 --steps 8 \
    --prompt 512 || return 1
  local status=0 preset family binary
  for preset in ${BUCKETS_PRESETS:-mixtral-8x7b olmoe-1b-7b}; do
    family=${preset%%-*}
    "$moetron" model make --family "$family" --preset "$preset" --config-only \
      --out "$work/$preset" >/dev/null || return 1
    for binary in "$moetron" ${BUCKETS_BASE:-}; do
      echo "== $preset, $binary"
      "$binary" run --model "$work/$preset" --load-format dummy --prompts "$work/buckets.jsonl" \
        --out "$work/o.h5" --ignore-eos --max-batch 256 --max-batch-tokens 16384 | grep -o "by batch: .*" ||
        status=1
    done
  done
  return $status
}

section_hopper() {
  local status=0 preset family path
  local filter='CudaMoe.ExpertGemmPathsMatchReference:CudaGraph.HopperExpertGemmsReplayLikeEagerRuns'
  MOETRON_TEST_PROGRESS=1 timeout 240 "$gpu_tests" --fixtures "$fixtures" --gtest_filter="$filter" || return 1
  timeout 240 compute-sanitizer --tool memcheck --leak-check no --error-exitcode 1 "$gpu_tests" \
    --fixtures "$fixtures" --gtest_filter=CudaMoe.ExpertGemmPathsMatchReference || status=1
  timeout 200 "$build/expert_gemm_bench" --variants wgmma+cublas,wgmma,8,tiles --tokens 512,2048,4096,8192 || status=1
  # Decode-sized calls (25-64 rows an expert for Mixtral and OLMoE): the decode kernels against wgmma.
  timeout 100 "$build/expert_gemm_bench" --variants mma,wgmma --tokens 100,160,256 \
    --shapes mixtral-8x7b,olmoe-1b-7b || status=1
  # 4,095 prompt tokens: one more to generate fits OLMoE's 4,096-token context.
  python3 "$src/perf/make_prompts.py" "$work/prefill4k.jsonl" 12 4095 1 30000 || return 1
  python3 "$src/perf/make_prompts.py" "$work/decode.jsonl" --phases 256,160,128 --steps 8 --prompt 512 || return 1
  for preset in olmoe-1b-7b qwen1.5-moe-a2.7b mixtral-8x7b; do
    family=${preset%%-*}
    [ "$family" = qwen1.5 ] && family=qwen2_moe
    "$moetron" model make --family "$family" --preset "$preset" --config-only --out "$work/$preset" >/dev/null ||
      return 1
    for path in cublas wgmma wgmma+cublas; do
      echo "== $preset, MOETRON_EXPERT_GEMM=$path"
      MOETRON_EXPERT_GEMM=$path timeout 120 "$moetron" run --model "$work/$preset" --load-format dummy \
        --prompts "$work/prefill4k.jsonl" --out "$work/p.h5" --ignore-eos --max-batch 12 \
        --max-batch-tokens 16384 2>&1 | grep -E "prefill:" || status=1
    done
  done
  # Decode batches the Hopper path takes from 25 rows an expert (Mixtral: 128-256 sequences).
  for path in cublas auto; do
    echo "== mixtral-8x7b decode, MOETRON_EXPERT_GEMM=$path"
    MOETRON_EXPERT_GEMM=$path timeout 150 "$moetron" run --model "$work/mixtral-8x7b" --load-format dummy \
      --prompts "$work/decode.jsonl" --out "$work/d.h5" --ignore-eos --max-batch 256 --max-batch-tokens 16384 2>&1 |
      grep -o "by batch: .*" || status=1
  done
  return $status
}

section_bench() {
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  timeout 540 python3 "$src/perf/bench.py" --moetron "$moetron" \
    --models "${BENCH_MODELS:-olmoe-1b-7b}" ${BENCH_ARGS:-} --out "$logs/bench"
}

section_expert_load() {
  # 4 ranks sharing the GPU (MPI transport), zipf 0 to 1.5, with and without redundant experts.
  timeout 540 python3 "$src/perf/expert_load_study.py" --backend cuda --moetron "$moetron" \
    --work "$work/expert_load" --out "$logs/EXPERT_LOAD_GPU.md"
}

section_plans() {
  # NVLink multicast (NVLS) stays off: the lent multi-GPU machines do not support it.
  NCCL_NVLS_ENABLE=0 MOETRON=$moetron MOETRON_SOURCE_DIR=$src \
    COMPARE_RESULTS=$build/tests/compare_results MPIEXEC=${MPIEXEC:-mpiexec} \
    bash "$src/tests/cli/gpu_plans.sh"
}

status=0
: > "$logs/summary.txt"
for s in "${sections[@]}"; do
  echo "== section $s (log: gpu_check/$s.log)"
  start=$(date +%s)
  "section_$s" > "$logs/$s.log" 2>&1
  rc=$?
  line="$s: exit $rc, $(( $(date +%s) - start )) s"
  echo "$line" | tee -a "$logs/summary.txt"
  # The lines that say how it went, so the console shows the outcome without the log.
  grep -E '^\[  (PASSED|FAILED|SKIPPED)|ERROR SUMMARY|RACECHECK SUMMARY|decode step median|GPU idle within|^== |by batch|done:|FAIL|ok:|^prefill:|"variant"' \
    "$logs/$s.log" | head -n 20
  [ "$rc" = 0 ] || status=1
done

cp "$logs/summary.txt" "$out_root/summary.txt"
tar -czf "$out_root/gpu_check.tar.gz" -C "$out_root" gpu_check && rm -rf "$logs"
echo "gpu_check.sh: logs in $out_root/gpu_check.tar.gz"
exit $status
