#!/usr/bin/env bash
# Chunked prefill (--prefill-chunk N) changes when prompt tokens are computed, not what comes out:
# prompts of 20-39 tokens cut into chunks of 7 (dividing neither the prompts nor the 16-token
# blocks), each chunk attending to the earlier ones through the KV cache, give the same greedy
# tokens and logits as whole prompts: on one rank, in a cache tight enough to preempt requests
# part-way through their prefill, and under dp=2 and pp=2 on two ranks. Also: whole prompts'
# recompute longer than a step holds goes in pieces. Static admission (--admission static: groups
# prefilled, then decoded together) changes the schedule, not the tokens either, preempting too.
source "$(dirname "$0")/common.bash"
random_prompts "$WORK/prompts.jsonl" 6 11 "3 + i % 4" 256 20
args=(run --model "$FIXTURES/qwen2_moe" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos
      --save-logits)
"$MOETRON" "${args[@]}" --log-level warn --out "$WORK/whole.h5"
"$MOETRON" "${args[@]}" --log-level warn --prefill-chunk 7 --out "$WORK/chunked.h5"
"$COMPARE_RESULTS" "$WORK/chunked.h5" "$WORK/whole.h5" --rtol 1e-5 || fail "chunked prefill changed the results"

# Static admission (groups of 2, whole prompts): the same tokens and logits (the schedule itself
# is checked in tests/unit/test_static_admission.cpp).
"$MOETRON" "${args[@]}" --log-level warn --admission static --max-batch 2 --out "$WORK/static.h5"
"$COMPARE_RESULTS" "$WORK/static.h5" "$WORK/whole.h5" --rtol 1e-5 || fail "static admission changed the results"

# The chunks were real: no step took more than 7 prompt tokens (its tokens beyond one per
# sequence are at most 7 - 1), while whole prompts did; each run records its settings.
"$PYTHON" - "$WORK/chunked.h5" "$WORK/whole.h5" "$WORK/static.h5" <<'PY' || fail "no 7-token chunks, or a setting not recorded"
import sys, h5py
def most_beyond_one_each(path):
    steps = h5py.File(path)["/steps"]
    return max(int(t) - int(b) for t, b in zip(steps["num_tokens"][:], steps["batch_size"][:]))
chunked, whole = most_beyond_one_each(sys.argv[1]), most_beyond_one_each(sys.argv[2])
print(f"most tokens beyond one per sequence in a step: chunked {chunked}, whole prompts {whole}")
assert chunked <= 6 < whole, (chunked, whole)
for path, chunk, admission in ((sys.argv[1], "7", "continuous"), (sys.argv[2], "0", "continuous"),
                               (sys.argv[3], "0", "static")):
    for name, want in (("prefill_chunk", chunk), ("admission", admission)):
        got = h5py.File(path).attrs[name]
        got = got.decode() if isinstance(got, bytes) else got
        assert got == want, f"{path}: /@{name} is {got!r}, expected {want}"
PY

# Room for the longest request alone: the request under prefill fills the free blocks with its
# chunks, a decode then finds none and preempts it (admitted last), and it is prefilled again
# from its first token.
"$MOETRON" "${args[@]}" --prefill-chunk 7 --kv-cache-tokens 48 --block-size 4 --max-batch 4 \
  --log-level info --out "$WORK/preempted.h5" >"$WORK/preempted.log" 2>&1 ||
  fail "the preempting chunked run failed: $(tail -3 "$WORK/preempted.log")"
grep -q "KV cache ran short: [1-9][0-9]* preemption" "$WORK/preempted.log" ||
  fail "no request was preempted: $(tail -3 "$WORK/preempted.log")"
"$COMPARE_RESULTS" "$WORK/preempted.h5" "$WORK/whole.h5" --rtol 1e-5 || fail "preemption with chunks changed the results"

# Whole prompts, a recompute longer than any step holds: 10-token prompts and up to 30 new
# tokens, steps of at most 12 tokens; a request preempted late is recomputed from more than 12
# tokens, in pieces (it used to stop the run on the routing record's size). Static admission,
# steps unbounded: the three requests run as one group until the cache runs short, and the
# request preempted is recomputed with the next group.
"$PYTHON" -c 'import json
for i in range(3): print(json.dumps({"prompt_tokens": list(range(5 + i, 15 + i)), "max_new_tokens": 30}))' \
  >"$WORK/long_recompute.jsonl"
recompute=(run --model "$FIXTURES/qwen2_moe" --prompts "$WORK/long_recompute.jsonl" --backend cpu --ignore-eos
           --block-size 4 --log-level info)
"$MOETRON" "${recompute[@]}" --max-batch-tokens 12 --out "$WORK/roomy.h5" >/dev/null 2>&1 || fail "the roomy run failed"
for tight in "--max-batch-tokens 12" "--admission static"; do
  # shellcheck disable=SC2086 # two words: the option and its value
  "$MOETRON" "${recompute[@]}" $tight --kv-cache-tokens 48 --out "$WORK/pieces.h5" >"$WORK/pieces.log" 2>&1 ||
    fail "the tight run ($tight) failed: $(tail -3 "$WORK/pieces.log")"
  grep -q "KV cache ran short: [1-9][0-9]* preemption" "$WORK/pieces.log" || fail "nothing was preempted ($tight)"
  "$COMPARE_RESULTS" "$WORK/pieces.h5" "$WORK/roomy.h5" --no-logits || fail "the tight run ($tight) changed the tokens"
done

for plan in dp=2 pp=2; do
  echo "== --prefill-chunk 7 with $plan on 2 ranks"
  mpi 2 "$MOETRON" "${args[@]}" --log-level warn --prefill-chunk 7 --plan "$plan" --out "$WORK/$plan.h5" || fail "$plan failed"
  "$COMPARE_RESULTS" "$WORK/$plan.h5" "$WORK/whole.h5" --rtol 1e-5 || fail "chunked prefill under $plan differs"
done
echo "chunked prefill gives the tokens and logits of whole prompts"
