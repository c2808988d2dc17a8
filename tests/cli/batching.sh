#!/usr/bin/env bash
# Continuous batching changes when requests run, not what they produce: many requests through
# a KV cache that holds only a few at a time (so most wait), at most two sequences a step and
# small step token budgets, give the same tokens and logits as one roomy step schedule.
source "$(dirname "$0")/common.bash"
random_prompts "$WORK/prompts.jsonl" 9 4 "2 + i % 5" 256
args=(run --model "$FIXTURES/qwen2_moe" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos
      --save-logits --log-level warn)
"$MOETRON" "${args[@]}" --out "$WORK/roomy.h5"
"$MOETRON" "${args[@]}" --out "$WORK/tight.h5" --kv-cache-tokens 96 --block-size 4 --max-batch 2 \
  --max-batch-tokens 24
"$COMPARE_RESULTS" "$WORK/tight.h5" "$WORK/roomy.h5" --rtol 1e-5 || fail "batching changed the results"
echo "batching does not change results"
