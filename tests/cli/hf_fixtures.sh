#!/usr/bin/env bash
# `moetron run` on every family's fixture reproduces Hugging Face's greedy tokens and logits.
source "$(dirname "$0")/common.bash"
for family in mixtral qwen2_moe olmoe qwen3_moe; do
  fixture_prompts "$FIXTURES/$family/reference.json" "$WORK/$family.jsonl"
  "$MOETRON" run --model "$FIXTURES/$family" --prompts "$WORK/$family.jsonl" --out "$WORK/$family.h5" \
    --backend cpu --ignore-eos --save-logits --log-level warn
  "$COMPARE_RESULTS" --hf-reference "$FIXTURES/$family/reference.json" "$WORK/$family.h5" --rtol 1e-4 \
    || fail "$family does not match Hugging Face"
done
echo "all families match Hugging Face"
