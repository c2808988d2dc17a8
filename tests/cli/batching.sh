#!/usr/bin/env bash
# Continuous batching changes when requests run, not what they produce: many requests through
# a KV cache that holds only a few at a time (so most wait), at most two sequences a step and
# small step token budgets, give the same tokens and logits as one roomy step schedule.
source "$(dirname "$0")/common.bash"
random_prompts "$WORK/prompts.jsonl" 9 4 "2 + i % 5" 256
args=(run --model "$FIXTURES/qwen2_moe" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos
      --save-logits)
"$MOETRON" "${args[@]}" --log-level warn --out "$WORK/roomy.h5"
"$MOETRON" "${args[@]}" --log-level warn --out "$WORK/tight.h5" --kv-cache-tokens 96 --block-size 4 --max-batch 2 \
  --max-batch-tokens 24
"$COMPARE_RESULTS" "$WORK/tight.h5" "$WORK/roomy.h5" --rtol 1e-5 || fail "batching changed the results"
# A cache that holds the longest request alone, with four running at once: running requests
# outgrow it, the latest admitted is preempted and later recomputed, and nothing changes.
"$MOETRON" "${args[@]}" --out "$WORK/preempted.h5" --kv-cache-tokens 48 --block-size 4 --max-batch 4 \
  --log-level info >"$WORK/preempted.log" 2>&1 || fail "the preempting run failed: $(tail -3 "$WORK/preempted.log")"
grep -q "KV cache ran short: [1-9][0-9]* preemption" "$WORK/preempted.log" ||
  fail "no request was preempted: $(tail -3 "$WORK/preempted.log")"
"$COMPARE_RESULTS" "$WORK/preempted.h5" "$WORK/roomy.h5" --rtol 1e-5 || fail "preemption changed the results"
echo "batching and preemption do not change results"
