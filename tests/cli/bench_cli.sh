#!/usr/bin/env bash
# `moetron bench`: on the CPU backend, a tiny model, 2 ranks under mpirun, it writes a profile
# that `moetron plan --profile` then predicts from; a profile of another model is refused naming
# the field; bad options are refused naming the option.
source "$(dirname "$0")/common.bash"

"$MOETRON" model make --family olmoe --config-only --out "$WORK/tiny" >/dev/null

start=$SECONDS
mpi 2 "$MOETRON" bench --model "$WORK/tiny" --out "$WORK/p.h5" --backend cpu --quick >"$WORK/bench.txt" 2>&1 \
  || fail "moetron bench failed: $(cat "$WORK/bench.txt")"
(( SECONDS - start < 60 )) || fail "moetron bench --quick took $((SECONDS - start)) s"
for needle in "bench gemm:" "bench moe_experts:" "bench attention_decode:" "2 rank(s) on 1 node(s)" "profile in $WORK/p.h5"; do
  grep -qF -- "$needle" "$WORK/bench.txt" || fail "bench output lacks '$needle': $(cat "$WORK/bench.txt")"
done
ls "$WORK" | grep -q '\.tmp\.' && fail "temporary files left behind"

# The file holds every table, the collectives of the 2-rank world among them, and its origin.
if command -v h5dump >/dev/null; then
  h5dump -d /tables/names "$WORK/p.h5" >"$WORK/names.txt" || fail "h5dump cannot read p.h5"
  for table in gemm moe_experts attention_decode attention_prefill memory_bound hbm_copy kernel_gap \
               allreduce alltoall send_recv broadcast; do
    grep -qF "\"$table\"" "$WORK/names.txt" || fail "p.h5 lacks /tables/$table: $(cat "$WORK/names.txt")"
  done
  h5dump -d /tables/allreduce/keys "$WORK/p.h5" | grep -F "(0,0): 2, 0" >/dev/null || fail "all-reduce not keyed by 2 ranks on one node"
  h5dump -a /backend -a /world_size "$WORK/p.h5" | grep -F '"cpu"' >/dev/null || fail "p.h5 does not record the backend"
fi

# plan predicts from it: kernels and the measured group from the profile, the rest from the roofline.
"$MOETRON" plan --model "$WORK/tiny" --ranks 4 --ranks-per-node 2 --hardware cpu --profile "$WORK/p.h5" \
  --requests 8 --prompt-tokens 16 --output-tokens 4 --out "$WORK/plans.h5" >"$WORK/plan.txt" \
  || fail "plan --profile failed: $(cat "$WORK/plan.txt")"
grep -qF "hardware  profile of" "$WORK/plan.txt" || fail "plan did not use the profile: $(cat "$WORK/plan.txt")"
grep -qF "other groups from the roofline figures" "$WORK/plan.txt" || fail "plan does not say where other groups come from"
if command -v h5dump >/dev/null; then
  h5dump -a /profile "$WORK/plans.h5" | grep -F "$WORK/p.h5" >/dev/null || fail "plans.h5 does not name the profile"
fi

# A profile measured for another model is refused, naming the file and the field.
"$MOETRON" model make --family olmoe --config-only --set intermediate_size=48 --out "$WORK/other" >/dev/null
expect_failure "$WORK/p.h5: measured for a model with intermediate_size 32 (/model), this model has 48" \
  plan --model "$WORK/other" --ranks 2 --ranks-per-node 2 --profile "$WORK/p.h5"
# moetron run --plan auto --profile: rank 0 predicts from the profile (measured on the same 2 CPU
# ranks) and every rank runs its pick; a profile of another model is refused by every rank.
printf '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 2}\n{"prompt_tokens": [4], "max_new_tokens": 2}\n' >"$WORK/prompts.jsonl"
mpi 2 "$MOETRON" run --model "$WORK/tiny" --prompts "$WORK/prompts.jsonl" --backend cpu --plan auto \
  --load-format dummy --profile "$WORK/p.h5" --out "$WORK/run.h5" >"$WORK/run.txt" 2>&1 || fail "run --profile failed: $(cat "$WORK/run.txt")"
grep -qF "on the profile $WORK/p.h5 (" "$WORK/run.txt" || fail "run did not predict from the profile: $(cat "$WORK/run.txt")"
grep -q "info rank 0\] --plan auto: .* wins: " "$WORK/run.txt" || fail "run does not say why its plan wins"
if mpi 2 "$MOETRON" run --model "$WORK/other" --prompts "$WORK/prompts.jsonl" --backend cpu --plan auto \
    --load-format dummy --profile "$WORK/p.h5" --out "$WORK/run2.h5" >"$WORK/run2.txt" 2>&1; then
  fail "run accepted a profile of another model"
fi
grep -qF "$WORK/p.h5: measured for a model with intermediate_size 32 (/model), this model has 48" "$WORK/run2.txt" ||
  fail "run's refusal does not name the profile and field: $(cat "$WORK/run2.txt")"
[[ ! -e "$WORK/run2.h5" ]] || fail "a results file was written with a refused profile"
expect_failure "$WORK/missing.h5" plan --model "$WORK/tiny" --ranks 2 --ranks-per-node 2 --profile "$WORK/missing.h5"
expect_failure "not a moetron hardware profile" plan --model "$WORK/tiny" --ranks 2 --ranks-per-node 2 --profile "$WORK/plans.h5"

# Bad options name the option.
tiny=(--model "$WORK/tiny")
expect_failure "--out" bench "${tiny[@]}"
expect_failure "--reps must be in [1, 1000]" bench "${tiny[@]}" --out "$WORK/x.h5" --reps 0
expect_failure "--warmup must be in [0, 100]" bench "${tiny[@]}" --out "$WORK/x.h5" --warmup -1
expect_failure "--backend must be cpu, cuda or auto" bench "${tiny[@]}" --out "$WORK/x.h5" --backend tpu
expect_failure "--max-tokens must be" bench "${tiny[@]}" --out "$WORK/x.h5" --max-tokens -3
expect_failure "--max-bytes: '12XB' has an unknown unit" bench "${tiny[@]}" --out "$WORK/x.h5" --backend cpu --max-bytes 12XB
expect_failure "--bogus" bench "${tiny[@]}" --out "$WORK/x.h5" --bogus
expect_failure "$WORK/nowhere/config.json" bench --model "$WORK/nowhere" --out "$WORK/x.h5" --backend cpu
expect_failure "$WORK/no-dir" bench "${tiny[@]}" --out "$WORK/no-dir/x.h5" --backend cpu
"$MOETRON" bench --help | grep -F -- "--quick" >/dev/null || fail "bench --help lacks --quick"
echo "bench_cli: ok"
