#!/usr/bin/env bash
# Redundant experts (--redundant-experts R, --expert-loads FILE.h5): values that cannot work are
# refused naming the option or the file and dataset, on every rank of an MPI job (exit 1, no
# hang); a run with replicas balances the EP ranks' measured expert tokens better than one
# without under a skewed router, with the loads from a file or from a warm-up (same tokens; on
# every EP plan: plan_equivalence.sh).
source "$(dirname "$0")/common.bash"
command -v h5dump >/dev/null || { echo "skip: h5dump not found"; exit 77; }
MODEL=$FIXTURES/olmoe  # 4 layers, 8 experts
random_prompts "$WORK/prompts.jsonl" 16 3 8 256
skewed=(--model "$MODEL" --prompts "$WORK/prompts.jsonl" --backend cpu --load-format dummy --routing-skew zipf:1.5
        --ignore-eos)
common=("${skewed[@]}" --log-level warn)
"$MOETRON" run "${common[@]}" --out "$WORK/loads.h5" >/dev/null || fail "the run that measures loads failed"

# ---- bad values, on one rank (options) and on two (the plan, the file) -------------------------
expect_failure "--redundant-experts must be >= 0" run "${common[@]}" --redundant-experts -1 \
  --expert-loads "$WORK/loads.h5" --out "$WORK/x.h5"
expect_failure "--expert-loads $WORK/loads.h5 is only read with --redundant-experts > 0" run "${common[@]}" \
  --expert-loads "$WORK/loads.h5" --out "$WORK/x.h5"
expect_exit_1 ep1 "--redundant-experts 2: the plan pp=1,tp=1,dp=2,ep=1 has ep=1" \
  "${MPI_RUN[@]}" 2 "$MOETRON" run "${common[@]}" --plan dp=2 --redundant-experts 2 \
  --expert-loads "$WORK/loads.h5" --out "$WORK/x.h5"
expect_exit_1 too_many "--redundant-experts 9: must be between 0 and the model's 8 experts" \
  "${MPI_RUN[@]}" 2 "$MOETRON" run "${common[@]}" --plan dp=2,ep=2 --redundant-experts 9 \
  --expert-loads "$WORK/loads.h5" --out "$WORK/x.h5"
# A loads file of another model (more layers): refused naming the file and the dataset.
"$MOETRON" model make --family olmoe --preset tiny --set num_hidden_layers=6 --out "$WORK/six" --seed 1 >/dev/null
"$MOETRON" run --model "$WORK/six" --prompts "$WORK/prompts.jsonl" --backend cpu --log-level warn \
  --load-format dummy --out "$WORK/six.h5" >/dev/null || fail "run of the 6-layer model failed"
expect_exit_1 shape "--expert-loads $WORK/six.h5: /experts/tokens has shape \[6, 8\], the model has 4 layers x 8 experts" \
  "${MPI_RUN[@]}" 2 "$MOETRON" run "${common[@]}" --plan dp=2,ep=2 --redundant-experts 2 \
  --expert-loads "$WORK/six.h5" --out "$WORK/x.h5"
expect_exit_1 not_results "--expert-loads $WORK/prompts.jsonl: cannot read /experts/tokens" \
  "${MPI_RUN[@]}" 2 "$MOETRON" run "${common[@]}" --plan dp=2,ep=2 --redundant-experts 2 \
  --expert-loads "$WORK/prompts.jsonl" --out "$WORK/x.h5"
[ ! -e "$WORK/x.h5" ] || fail "a refused run wrote its results file"

# ---- replicas rebalance the ranks ---------------------------------------------------------------
spread() {  # max/min of /ranks/expert_tokens
  h5_values "$1" /ranks/expert_tokens |
    awk 'NF { v = $1 + 0; if (n++ == 0 || v > hi) hi = v; if (n == 1 || v < lo) lo = v } END { printf "%.4f", hi / lo }'
}
mpi 2 "$MOETRON" run "${common[@]}" --plan dp=2,ep=2 --out "$WORK/plain.h5" || fail "dp=2,ep=2 failed"
mpi 2 "$MOETRON" run "${common[@]}" --plan dp=2,ep=2 --redundant-experts 4 --expert-loads "$WORK/loads.h5" \
  --out "$WORK/replicas.h5" || fail "dp=2,ep=2 with 4 replicas failed"
"$COMPARE_RESULTS" "$WORK/replicas.h5" "$WORK/plain.h5" --no-logits || fail "replicas changed the tokens"
plain=$(spread "$WORK/plain.h5") replicas=$(spread "$WORK/replicas.h5")
echo "EP ranks' expert tokens max/min: $plain without replicas, $replicas with 4"
awk -v a="$replicas" -v b="$plain" 'BEGIN { exit !(a < b) }' || fail "replicas did not balance the ranks ($replicas vs $plain)"
h5dump -a /experts/replicas/redundant_experts "$WORK/replicas.h5" | grep "(0): 4" >/dev/null ||
  fail "/experts/replicas@redundant_experts is not 4"
# Without --expert-loads, a warm-up run measures the loads: the same tokens, replicas placed.
mpi 2 "$MOETRON" run "${skewed[@]}" --plan dp=2,ep=2 --redundant-experts 4 --log-level info \
  --out "$WORK/warmup.h5" >"$WORK/warmup.log" 2>&1 || { cat "$WORK/warmup.log"; fail "replicas with a warm-up failed"; }
grep -q "measuring the expert loads in a warm-up of 16 requests" "$WORK/warmup.log" ||
  fail "no warm-up in the log: $(tail -5 "$WORK/warmup.log")"
"$COMPARE_RESULTS" "$WORK/warmup.h5" "$WORK/plain.h5" --no-logits || fail "replicas placed by a warm-up changed the tokens"
h5dump -d /experts/replicas "$WORK/warmup.h5" | grep "(3,0,0): [0-9]" >/dev/null || fail "the warm-up placed no replica in layer 3"
spread_warm=$(spread "$WORK/warmup.h5")
awk -v a="$spread_warm" -v b="$plain" 'BEGIN { exit !(a < b) }' || fail "warm-up replicas did not balance the ranks ($spread_warm vs $plain)"
