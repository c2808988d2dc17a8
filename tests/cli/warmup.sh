#!/usr/bin/env bash
# --warmup on (one forward of the largest step before the first request) changes nothing a run
# reports but its startup: the same tokens and logits, expert counts, expert work and traffic as
# --warmup off, on one rank and on plans whose warm-up takes each path (a later pipeline stage's
# made-up residual stream, the expert dispatch between replicas, tp all-reduces, the eager decode
# batch); /startup@warmup_seconds says it ran. A bad value is refused naming the option.
source "$(dirname "$0")/common.bash"
cat >"$WORK/prompts.jsonl" <<'JSONL'
{"prompt_tokens": [3, 17, 42, 99, 5], "max_new_tokens": 5}
{"prompt_tokens": [11, 200, 13, 77, 31, 9, 150, 64, 3, 250, 128, 45, 8], "max_new_tokens": 4}
{"prompt_tokens": [5, 6, 7, 8], "max_new_tokens": 6, "temperature": 0.8, "top_k": 20, "seed": 5}
JSONL
attr() {  # attr FILE NAME: a scalar attribute of /startup
  h5dump -a "/startup/$2" "$1" | awk '/\(0\)/ { print $2 }'
}
same_dataset() {  # same_dataset A B DATASET: equal values
  diff <(h5dump -d "$3" "$1" | sed 1d) <(h5dump -d "$3" "$2" | sed 1d) >/dev/null ||
    fail "$3 differs between $1 and $2"
}
for model in qwen2_moe olmoe; do
  args=(run --model "$FIXTURES/$model" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos
        --save-logits --log-level warn --kv-cache-tokens 512 --block-size 4)
  "$MOETRON" "${args[@]}" --warmup off --out "$WORK/$model-off.h5"
  "$MOETRON" "${args[@]}" --warmup on --out "$WORK/$model-on.h5"
  [ "$(attr "$WORK/$model-off.h5" warmup_seconds)" = 0 ] || fail "--warmup off recorded a warm-up"
  awk -v s="$(attr "$WORK/$model-on.h5" warmup_seconds)" 'BEGIN { exit !(s > 0) }' ||
    fail "--warmup on recorded no warm-up time"
  "$COMPARE_RESULTS" "$WORK/$model-on.h5" "$WORK/$model-off.h5" --rtol 0 || fail "$model: the warm-up changed the run"
  same_dataset "$WORK/$model-on.h5" "$WORK/$model-off.h5" /experts/tokens
  [ "$model" = qwen2_moe ] || continue  # the plans on one model: a 2-core machine runs them
  for entry in "2 pp=2" "2 dp=2,ep=2" "4 pp=2,tp=2,ep=2"; do
    read -r ranks plan <<<"$entry"
    name=$model-${plan//[=,]/_}
    echo "== $model: $plan on $ranks ranks, --warmup on against off"
    mpi "$ranks" "$MOETRON" "${args[@]}" --plan "$plan" --warmup off --out "$WORK/$name-off.h5"
    mpi "$ranks" "$MOETRON" "${args[@]}" --plan "$plan" --warmup on --out "$WORK/$name-on.h5"
    "$COMPARE_RESULTS" "$WORK/$name-on.h5" "$WORK/$model-off.h5" --rtol 1e-5 || fail "$name: differs from one rank"
    for d in /experts/tokens /ranks/expert_tokens /ranks/bytes_sent /ranks/bytes_received; do
      same_dataset "$WORK/$name-on.h5" "$WORK/$name-off.h5" "$d"
    done
  done
done
expect_exit_1 bad_warmup "--warmup must be auto, on or off" \
  "$MOETRON" run --model "$FIXTURES/olmoe" --prompts "$WORK/prompts.jsonl" --backend cpu --warmup yes \
  --out "$WORK/bad.h5"
echo "warmup: ok"
