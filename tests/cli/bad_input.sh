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
expect unwritable-out "/nonexistent-dir" "$MOETRON" "${base[@]}" --model "$good" --out /nonexistent-dir/out.h5
# Plans: every rank refuses the same way before loading anything.
expect impossible-plan "the 4 attention heads do not split evenly over tp=3" "${MPI_RUN[@]}" 3 "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --plan tp=3
[ "$(grep -c "rank [0-9]: error: --plan" "$WORK/impossible-plan.log")" -ge 1 ] || fail "impossible-plan: no rank said why"
expect plan-too-big "needs" "${MPI_RUN[@]}" 2 "$MOETRON" "${base[@]}" --model "$good" --out "$WORK/out.h5" --plan dp=2 \
  --memory-per-rank 100000
echo "bad input is refused clearly"
