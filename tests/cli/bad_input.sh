#!/usr/bin/env bash
# Bad input to `moetron run` ends every rank with a clear message naming the option, file,
# field or line, and a non-zero exit — never a crash, a hang or a results file.
source "$(dirname "$0")/common.bash"
good=$FIXTURES/olmoe
echo '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 2}' >"$WORK/p.jsonl"
printf '%s\n' '{"prompt_tokens": [1, 2], "max_new_tokens": 2}' '{"prompt_tokens": [1, 99999]}' >"$WORK/bad-token.jsonl"
mkdir -p "$WORK/no-config" "$WORK/corrupt"
cp "$good/config.json" "$WORK/corrupt/"
printf 'not a safetensors file' >"$WORK/corrupt/model.safetensors"
base=(run --prompts "$WORK/p.jsonl" --backend cpu --log-level warn)

# expect NAME PATTERN COMMAND...: fails (not by a signal) within 60 s, says PATTERN, writes no results.
expect() {
  local name=$1 pattern=$2 rc=0
  shift 2
  rm -f "$WORK/out.h5"
  timeout 60 "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "$name: succeeded"
  [ "$rc" -ne 124 ] || fail "$name: hung"
  [ "$rc" -lt 128 ] || { cat "$WORK/$name.log"; fail "$name: killed by signal $((rc - 128))"; }
  grep -q -- "$pattern" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: no '$pattern' in the output"; }
  [ ! -e "$WORK/out.h5" ] || fail "$name: left a results file"
  echo "$name: $(grep -m1 -- "$pattern" "$WORK/$name.log")"
}

expect unknown-option "unrecognised option\|unrecognized option" "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --bogus 1
expect missing-model "model" "$MOETRON" "${base[@]}" --out "$WORK/out.h5"
expect bad-plan-text "\-\-plan" "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --plan pp=0
expect bad-backend "\-\-backend: unknown backend" "$MOETRON" run --prompts "$WORK/p.jsonl" --model "$good" \
  --out "$WORK/out.h5" --backend tpu
expect no-config "no-config/config.json" "$MOETRON" "${base[@]}" --model "$WORK/no-config" --out "$WORK/out.h5"
expect corrupt-weights "corrupt/model.safetensors" "$MOETRON" "${base[@]}" --model "$WORK/corrupt" --out "$WORK/out.h5"
expect token-out-of-vocab "bad-token.jsonl:2" "$MOETRON" run --prompts "$WORK/bad-token.jsonl" --backend cpu \
  --model "$good" --out "$WORK/out.h5"
expect profile-window-on-cpu "\-\-profile-decode-steps needs the cuda backend" "$MOETRON" "${base[@]}" \
  --model "$good" --out "$WORK/out.h5" --profile-decode-steps 2:4
expect negative-prefill-chunk "\-\-prefill-chunk must be auto or an integer >= 0 (0: whole prompts), got '-3'" \
  "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --prefill-chunk -3
expect word-prefill-chunk "\-\-prefill-chunk must be auto or an integer >= 0 (0: whole prompts), got 'fast'" \
  "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --prefill-chunk fast
expect bad-admission "\-\-admission must be continuous or static, got 'gang'" \
  "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --admission gang
expect low-itl-ratio "\-\-itl-target-ratio must be a number > 1, got 1" "$MOETRON" "${base[@]}" --model "$good" \
  --out "$WORK/out.h5" --prefill-chunk auto --itl-target-ratio 1
expect itl-ratio-without-auto "\-\-itl-target-ratio sizes adaptive chunks: it needs \-\-prefill-chunk auto" \
  "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --prefill-chunk 64 --itl-target-ratio 3
expect unwritable-out "/nonexistent-dir" "$MOETRON" "${base[@]}" --model "$good" --out /nonexistent-dir/out.h5
# Plans: every rank refuses the same way before loading anything.
expect impossible-plan "the 4 attention heads do not split evenly over tp=3" "${MPI_RUN[@]}" 3 "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --plan tp=3
[ "$(grep -c "rank [0-9]: error: --plan" "$WORK/impossible-plan.log")" -ge 1 ] || fail "impossible-plan: no rank said why"
expect plan-too-big "needs" "${MPI_RUN[@]}" 2 "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --plan dp=2 \
  --memory-per-rank 100000
# Non-finite logits end the run naming the request and step, on every sampling path: the
# backend's argmax and sampler, the host's with saved logits, and tp=2. Non-finite weights are
# refused at load (naming the tensor), so the logits must overflow from finite weights: a final
# norm of 3e38 (finite in f32) makes the normed hidden state overflow to +-Inf, and the LM head
# sums them into NaN at the first step.
"$MOETRON" model make --family olmoe --set tie_word_embeddings=false --dtype f32 --seed 5 \
  --out "$WORK/overflow" >/dev/null
cp -r "$WORK/overflow" "$WORK/nan"
poke_rows() {  # poke_rows FILE TENSOR ROW VALUE: sets one row of an F32 tensor to VALUE
  python3 - "$@" <<'PY'
import json, struct, sys
path, name, row, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))[name]
    assert t["dtype"] == "F32", t
    cols = t["shape"][-1]
    f.seek(8 + n + t["data_offsets"][0] + row * cols * 4)
    f.write(struct.pack("<f", value) * cols)
PY
}
poke_rows "$WORK/overflow/model.safetensors" model.norm.weight 0 3e38
poke_rows "$WORK/nan/model.safetensors" model.embed_tokens.weight 9 nan
printf '%s\n' '{"id": "fine", "prompt_tokens": [1, 2, 3], "max_new_tokens": 3}' \
  '{"id": "other", "prompt_tokens": [4, 9, 5], "max_new_tokens": 2}' >"$WORK/nan.jsonl"
nan_run=("$MOETRON" run --prompts "$WORK/nan.jsonl" --backend cpu --log-level warn --ignore-eos
         --max-batch 1 --out "$WORK/out.h5")
broken="request 'fine' (prompts line 1): its logits hold NaN or +Inf at step 0 (its output token 0)"
expect overflow-greedy "$broken" "${nan_run[@]}" --model "$WORK/overflow"
expect overflow-sampled "$broken" "${nan_run[@]}" --model "$WORK/overflow" --temperature 0.8 --top-k 5
expect overflow-saved-logits "$broken" "${nan_run[@]}" --model "$WORK/overflow" --save-logits
expect overflow-tp2 "$broken" "${MPI_RUN[@]}" 2 "${nan_run[@]}" --model "$WORK/overflow" --plan tp=2
expect nan-weight "tensor 'model.embed_tokens.weight' holds a non-finite value" \
  "${nan_run[@]}" --model "$WORK/nan"
echo "bad input is refused clearly"
