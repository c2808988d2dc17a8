#!/usr/bin/env bash
# One rank failing ends the whole job within seconds, with that rank's message, never a hang:
# (1) a corrupt checkpoint on one rank only, (2) an error thrown in the middle of a step.
source "$(dirname "$0")/common.bash"
root=()
[ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
good=$FIXTURES/olmoe
bad=$WORK/bad-model
mkdir -p "$bad"
cp "$good/config.json" "$bad/"
head -c 1000 "$good/model.safetensors" >"$bad/model.safetensors"  # header cut short
echo '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 8}' >"$WORK/p.jsonl"
args=(run --prompts "$WORK/p.jsonl" --backend cpu --ignore-eos --log-level warn)

# expect_failure NAME PATTERN COMMAND...: the command must fail within 60 s, printing PATTERN.
expect_failure() {
  local name=$1 pattern=$2
  shift 2
  local start=$SECONDS rc=0
  timeout 60 "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "$name: the job succeeded"
  [ "$rc" -ne 124 ] || fail "$name: the job hung (killed after 60 s)"
  grep -q -- "$pattern" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: no '$pattern' in the output"; }
  echo "$name: ended in $((SECONDS - start)) s with: $(grep -m1 -- "$pattern" "$WORK/$name.log")"
}

# Ranks 0-2 load the good checkpoint, rank 3 a truncated one (MPMD launch).
expect_failure bad-file "rank 3: error:.*model.safetensors" \
  "$MPIEXEC" "${root[@]}" --oversubscribe \
  -n 3 "$MOETRON" "${args[@]}" --model "$good" --plan dp=4 --out "$WORK/a.h5" : \
  -n 1 "$MOETRON" "${args[@]}" --model "$bad" --plan dp=4 --out "$WORK/a.h5"
[ ! -e "$WORK/a.h5" ] || fail "a failed run left a results file"

# Rank 2 throws at step 3 while the others are inside the step's collectives.
expect_failure mid-step "rank 2: error: injected fault at step 3" \
  env MOETRON_INJECT_FAULT=2:3 bash "$MOETRON_SOURCE_DIR/tests/mpi/run_mpi.sh" "$MPIEXEC" -n 4 \
  "$MOETRON" "${args[@]}" --model "$good" --plan tp=2,dp=2,ep=2 --out "$WORK/b.h5"
[ ! -e "$WORK/b.h5" ] || fail "a failed run left a results file"
echo "faults end every rank with the failing rank's message"
