#!/usr/bin/env bash
# Adaptive chunks (--prefill-chunk auto) change when prompt tokens are computed, not what comes out:
# prompts of 60-139 tokens arriving over time, while earlier requests decode, give the same greedy
# tokens and logits as whole prompts, on one rank and under dp=2 and pp=2 on two ranks (where every
# rank of a replica must cut the same chunks from the step times the sampling rank measured, or
# the pipeline's sends and receives would not match). Every step keeps its prefill within the
# budget it recorded, and a step with no decodes may take the whole step. No timing is asserted:
# the budgets follow this machine's step times.
source "$(dirname "$0")/common.bash"
"$PYTHON" - "$WORK/prompts.jsonl" <<'PY'
import json, random, sys
rng = random.Random(5)
with open(sys.argv[1], "w") as f:
    for i in range(8):
        f.write(json.dumps({"prompt_tokens": [rng.randrange(3, 256) for _ in range(rng.randrange(60, 140))],
                            "max_new_tokens": 12 + i % 5, "arrival_s": round(0.004 * i, 3)}) + "\n")
PY
args=(run --model "$FIXTURES/qwen2_moe" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos
      --save-logits --log-level warn)
"$MOETRON" "${args[@]}" --out "$WORK/whole.h5"
# check_steps FILE.h5 REPLICAS: budgets recorded (replica 0's) and, with one replica (whose tokens
# /steps counts alone), kept; the run's setting recorded.
check_steps() {
  "$PYTHON" - "$1" "$2" <<'PY' || fail "$1: the steps do not keep the adaptive budgets"
import sys, h5py
f = h5py.File(sys.argv[1])
steps = f["/steps"]
batch, tokens, budget = steps["batch_size"][:], steps["num_tokens"][:], steps["prefill_budget"][:]
attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
assert attrs["prefill_chunk"] == "auto" and attrs["itl_target_ratio"] == "2", attrs
assert (budget >= 1).all(), budget
# Beyond one token per sequence, a step took at most its budget (its decodes and the sequence
# whose chunk it ran are counted once each).
if sys.argv[2] == "1":
    assert ((tokens - batch) <= budget).all(), list(zip(tokens - batch, budget))
print(f"{len(budget)} steps, prefill budgets {sorted(set(int(b) for b in budget))}")
PY
}
"$MOETRON" "${args[@]}" --prefill-chunk auto --out "$WORK/auto.h5"
"$COMPARE_RESULTS" "$WORK/auto.h5" "$WORK/whole.h5" --rtol 1e-5 || fail "adaptive chunks changed the results"
check_steps "$WORK/auto.h5" 1
"$PYTHON" - "$WORK/whole.h5" <<'PY' || fail "whole prompts should record no budget"
import sys, h5py
assert (h5py.File(sys.argv[1])["/steps/prefill_budget"][:] == 0).all()
PY

for plan in dp=2 pp=2; do
  echo "== --prefill-chunk auto with $plan on 2 ranks"
  timeout 300 "${MPI_RUN[@]}" 2 "$MOETRON" "${args[@]}" --prefill-chunk auto --plan "$plan" --out "$WORK/$plan.h5" ||
    fail "$plan failed (or hung)"
  "$COMPARE_RESULTS" "$WORK/$plan.h5" "$WORK/whole.h5" --rtol 1e-5 || fail "adaptive chunks under $plan differ"
  replicas=1; [[ $plan == dp=* ]] && replicas=${plan#dp=}
  check_steps "$WORK/$plan.h5" "$replicas"
done
echo "adaptive chunks give the tokens and logits of whole prompts"
