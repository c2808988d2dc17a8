#!/usr/bin/env bash
# Every listed parallel plan, on 1, 2, 4 and 8 MPI ranks (CPU backend, MPI transport), gives the
# same greedy tokens as one rank and logits within 1e-5 relative; every plan with ep > 1 also
# with redundant experts (--redundant-experts 3).
source "$(dirname "$0")/common.bash"
MODELS=(qwen2_moe olmoe)  # shared expert + qkv bias + a dense layer; whole-projection QK-norm
PLANS=(
  "2 tp=2" "2 pp=2" "2 dp=2" "2 tp=2,ep=2" "2 dp=2,ep=2"
  "4 tp=4" "4 pp=4" "4 pp=2,tp=2" "4 pp=2,tp=2,ep=2" "4 dp=2,tp=2" "4 dp=4,ep=4"
  "4 tp=2,dp=2,ep=4" "4 pp=2,dp=2,ep=2" "4 dp=4"
  "8 pp=2,tp=2,dp=2,ep=4" "8 dp=8,ep=8" "8 pp=2,tp=4" "8 pp=4,tp=2" "8 pp=2,dp=4,ep=4"
  # Micro-batch counts other than pp: one (no overlap), more than the step has sequences, uneven.
  "2 pp=2,mb=1" "4 pp=2,tp=2,mb=8" "4 pp=2,dp=2,ep=2,mb=3"
)
# Uneven prompt lengths, more requests than replicas, some with sampling (seeded per request).
cat >"$WORK/prompts.jsonl" <<'JSONL'
{"prompt_tokens": [7], "max_new_tokens": 6}
{"prompt_tokens": [3, 17, 42, 99, 5], "max_new_tokens": 5}
{"prompt_tokens": [11, 200, 13, 77, 31, 9, 150, 64, 3, 250, 128, 45, 8, 19, 230, 101, 66], "max_new_tokens": 4}
{"prompt_tokens": [5, 6, 7, 8], "max_new_tokens": 7, "temperature": 0.8, "top_k": 20, "seed": 5}
{"prompt_tokens": [90, 91], "max_new_tokens": 3, "temperature": 1.0, "top_p": 0.9}
JSONL
replica_plans=0
for model in "${MODELS[@]}"; do
  run_args=(run --model "$FIXTURES/$model" --prompts "$WORK/prompts.jsonl" --backend cpu
            --ignore-eos --save-logits --log-level warn --kv-cache-tokens 512 --block-size 4)
  "$MOETRON" "${run_args[@]}" --out "$WORK/$model-single.h5"
  for entry in "${PLANS[@]}"; do
    read -r ranks plan <<<"$entry"
    out="$WORK/$model-${plan//[=,]/_}.h5"
    echo "== $model: $plan on $ranks ranks"
    mpi "$ranks" "$MOETRON" "${run_args[@]}" --plan "$plan" --out "$out" || fail "$model $plan failed"
    "$COMPARE_RESULTS" "$out" "$WORK/$model-single.h5" --rtol 1e-5 || fail "$model $plan differs from one rank"
    [[ $plan == *ep=* ]] || continue
    # Redundant experts only move where a hot expert's rows are computed: the same tokens, with
    # up to 3 copies per MoE layer (loads from the one-rank run) placed and recorded.
    echo "== $model: $plan on $ranks ranks with --redundant-experts 3"
    mpi "$ranks" "$MOETRON" "${run_args[@]}" --plan "$plan" --redundant-experts 3 \
      --expert-loads "$WORK/$model-single.h5" --out "$out.replicas.h5" || fail "$model $plan with replicas failed"
    "$COMPARE_RESULTS" "$out.replicas.h5" "$WORK/$model-single.h5" --rtol 1e-5 ||
      fail "$model $plan with redundant experts differs from one rank"
    h5dump -d /experts/replicas "$out.replicas.h5" | grep "(1,0,0): [0-9]" >/dev/null ||
      fail "$model $plan: no replica recorded in layer 1: $(h5dump -d /experts/replicas "$out.replicas.h5")"
    replica_plans=$((replica_plans + 1))
  done
done
# Vocabularies that tp does not divide are padded for the vocab-parallel LM head: the padding
# never reaches a logit row, a sampled token or the results file (exactly V columns saved).
# Untied odd vocabulary, and a tied one (the head reads the embedding's rows); with saved
# logits (host sampling) and without (the backend's argmax_rows / sample_rows).
"$MOETRON" model make --family qwen2_moe --set vocab_size=1001 --dtype f32 --seed 3 \
  --out "$WORK/vocab1001" >/dev/null
"$MOETRON" model make --family olmoe --set vocab_size=997 --set tie_word_embeddings=true --dtype f32 \
  --seed 4 --out "$WORK/vocab997" >/dev/null
ODD_PLANS=("2 tp=2" "4 tp=4" "4 pp=2,tp=2")
for model in vocab1001 vocab997; do
  for logits in saved none; do
    run_args=(run --model "$WORK/$model" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos
              --log-level warn --kv-cache-tokens 512 --block-size 4)
    compare_args=(--rtol 1e-5)
    if [[ $logits == saved ]]; then run_args+=(--save-logits); else compare_args=(--no-logits); fi
    "$MOETRON" "${run_args[@]}" --out "$WORK/$model-single.h5"
    for entry in "${ODD_PLANS[@]}"; do
      read -r ranks plan <<<"$entry"
      out="$WORK/$model-${plan//[=,]/_}.h5"
      echo "== $model (logits $logits): $plan on $ranks ranks"
      mpi "$ranks" "$MOETRON" "${run_args[@]}" --plan "$plan" --out "$out" || fail "$model $plan failed"
      "$COMPARE_RESULTS" "$out" "$WORK/$model-single.h5" "${compare_args[@]}" ||
        fail "$model $plan (logits $logits) differs from one rank"
      if [[ $logits == saved ]]; then
        vocab=${model#vocab}
        h5dump -H -d /requests/logits "$out" | grep -Eq "\( [0-9]+, $vocab \) /" ||
          fail "$model $plan: /requests/logits is not $vocab wide: $(h5dump -H -d /requests/logits "$out")"
      fi
    done
  done
done
# Replicas' decode steps dispatch to the experts through fixed-capacity buffers (prefill
# exchanges counts): the plans above ran both; check the fixed path is the one decode took.
mpi 2 "$MOETRON" run --model "$FIXTURES/olmoe" --prompts "$WORK/prompts.jsonl" --backend cpu \
  --ignore-eos --kv-cache-tokens 512 --block-size 4 --plan dp=2,ep=2 --log-level debug \
  --out "$WORK/fixed.h5" >"$WORK/fixed.log" 2>&1 || fail "dp=2,ep=2 with debug logging failed"
grep -q "expert dispatch between replicas in fixed-capacity buffers" "$WORK/fixed.log" ||
  fail "decode steps of dp=2,ep=2 did not use the fixed-capacity dispatch: $(tail -5 "$WORK/fixed.log")"
echo "${#PLANS[@]} plans x ${#MODELS[@]} models match one rank, $replica_plans of them also with redundant experts"
[ "$replica_plans" -gt 0 ] || fail "no plan ran with redundant experts"
