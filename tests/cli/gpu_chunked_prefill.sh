#!/usr/bin/env bash
# On a GPU: chunked prefill (--prefill-chunk 7 against prompts of 20-39 tokens and 16-token
# blocks) with decode graphs: steps that hold a chunk run eagerly and decode-only steps replay
# graphs, giving the tokens of the same schedule run all eagerly; and most greedy tokens agree
# with whole prompts (bf16: a chunk's GEMM and attention shapes differ from the whole prompt's,
# so a near tie may flip and change the rest of that request).
source "$(dirname "$0")/common.bash"
gpu_test_setup 12 5 "4 + 3 * i" 1024 20
args=(run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cuda --ignore-eos)
"$MOETRON" "${args[@]}" --prefill-chunk 7 --log-level info --out "$WORK/chunked.h5" 2>&1 | tee "$WORK/chunked.log"
grep -q "recorded the decode step" "$WORK/chunked.log" || fail "no decode graphs were recorded"
"$MOETRON" "${args[@]}" --prefill-chunk 7 --no-graphs --log-level warn --out "$WORK/chunked-eager.h5"
"$COMPARE_RESULTS" "$WORK/chunked.h5" "$WORK/chunked-eager.h5" --no-logits ||
  fail "chunked prefill with decode graphs differs from the same schedule run eagerly"
"$MOETRON" "${args[@]}" --log-level warn --out "$WORK/whole.h5"
"$COMPARE_RESULTS" "$WORK/chunked.h5" "$WORK/whole.h5" --min-agreement 0.8 ||
  fail "chunked prefill disagrees with whole prompts"
echo "chunked prefill on the GPU: graphs equal eager, tokens agree with whole prompts"
