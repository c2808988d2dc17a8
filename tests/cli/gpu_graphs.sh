#!/usr/bin/env bash
# On a GPU: decode steps replayed from CUDA graphs give the same tokens as running them eagerly,
# over batches that shrink through every bucket as requests finish, and their experts serve the
# same token-slots (a bucket's padding rows route to no expert); and the CUDA backend's
# greedy tokens on the HF fixtures' real-width twin agree with the CPU backend's.
source "$(dirname "$0")/common.bash"
require_gpu
model=$WORK/olmoe-h512
make_gpu_model "$model"
random_prompts "$WORK/prompts.jsonl" 21 1 "4 + 3 * i"
args=(run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cuda --ignore-eos --log-level info)
"$MOETRON" "${args[@]}" --out "$WORK/graphs.h5" 2>&1 | tee "$WORK/graphs.log"
grep -q "recorded the decode step" "$WORK/graphs.log" || fail "no decode graphs were recorded"
"$MOETRON" "${args[@]}" --no-graphs --out "$WORK/eager.h5"
"$COMPARE_RESULTS" "$WORK/graphs.h5" "$WORK/eager.h5" --no-logits || fail "graph replay differs from eager"
# A CUDA results file names the kernel choices its times are of (Ops::kernel_settings).
kernels=$(h5_root_attr "$WORK/graphs.h5" kernels)
# (the default expert path: wgmma+cublas where the Hopper kernel runs, else cublas)
[[ "$kernels" =~ ^expert_gemm=(cublas|wgmma\+cublas),expert_streams=8,decode_experts=mma, ]] ||
  fail "graphs.h5 does not record its kernels: '$kernels'"
# A replayed bucket's padding rows route to no expert: the routed token-slots counted on the device
# (/experts/tokens; a one-rank run has no /ranks) are what eager steps count (21 requests
# finishing one by one pass through every bucket size between the powers of two).
served_graphs=$(h5_values "$WORK/graphs.h5" /experts/tokens) served_eager=$(h5_values "$WORK/eager.h5" /experts/tokens)
[[ -n "$served_eager" && "$served_graphs" == "$served_eager" ]] ||
  fail "routed token-slots: $served_graphs with graphs, $served_eager eagerly (padding rows routed?)"
"$MOETRON" run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos \
  --log-level warn --out "$WORK/cpu.h5"
# bf16 on the GPU against float32 on the CPU, free-running greedy (one flip changes the rest of
# that request): most tokens must still agree.
"$COMPARE_RESULTS" "$WORK/graphs.h5" "$WORK/cpu.h5" --min-agreement 0.5 || fail "cuda and cpu disagree"
echo "graph replay equals eager"
