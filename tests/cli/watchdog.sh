#!/usr/bin/env bash
# The watchdog for stuck ranks (issue 16): a rank stopped with SIGSTOP in the middle of a run
# leaves its peers waiting in a collective; after --collective-timeout the job ends, non-zero,
# naming the stopped rank, with no results file and no stopped process left. Bad values of the
# option are refused naming it.
source "$(dirname "$0")/common.bash"
model=$FIXTURES/olmoe
for i in 1 2 3 4 5 6; do echo '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 8}'; done >"$WORK/p.jsonl"
run=("$MOETRON" run --model "$model" --prompts "$WORK/p.jsonl" --backend cpu --ignore-eos --log-level warn)

for value in -1 nan inf 1e7; do
  expect_exit_1 "timeout-$value" "\-\-collective-timeout must be 0 (off) or seconds" \
    "${run[@]}" --out "$WORK/o.h5" --collective-timeout "$value"
done
expect_exit_1 timeout-word "collective-timeout" "${run[@]}" --out "$WORK/o.h5" --collective-timeout soon
for spec in 1:2:halt 1:2: 1:2:stop:3; do
  expect_exit_1 "fault-spec-$spec" "MOETRON_INJECT_FAULT='$spec': expected RANK:STEP or RANK:STEP:stop" \
    env MOETRON_INJECT_FAULT="$spec" "${run[@]}" --out "$WORK/o.h5"
done
[ ! -e "$WORK/o.h5" ] || fail "a refused run wrote results"

# Rank 2 of 3 (the last pipeline stage) stops itself at step 3; ranks 0 and 1 wait for it in
# the all-reduce that starts every step.
stopped_pid() { sed -n 's/.*rank 2 (pid \([0-9]*\)): stopping itself.*/\1/p' "$WORK/stop.log" | head -1; }
# A zombie has ended; only its parent has not collected it yet.
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${state:0:1}" != Z ]
}
# Whatever happens, no process of this job (found by its unique prompts path) outlives the test.
kill_job() {
  local pid
  for pid in $(pgrep -f -- "--prompts $WORK/p.jsonl" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap kill_job EXIT
start=$SECONDS
rc=0
MOETRON_INJECT_FAULT=2:3:stop timeout -k 5 60 "${MPI_RUN[@]}" 3 "${run[@]}" --plan pp=3 \
  --collective-timeout 3 --out "$WORK/out.h5" >"$WORK/stop.log" 2>&1 || rc=$?
elapsed=$((SECONDS - start))
cat "$WORK/stop.log"
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || fail "stopped rank: the job hung (killed after 60 s)"
[ "$rc" -ne 0 ] || fail "stopped rank: the job exited 0"
[ "$elapsed" -le 30 ] || fail "stopped rank: the job took $elapsed s to end (timeout 3 s)"
pid=$(stopped_pid)
[ -n "$pid" ] || fail "stopped rank: rank 2 never stopped itself (no fault injected)"
pattern="rank 2 did not arrive at allreduce #[0-9]* (world) within 3 s (--collective-timeout): rank 2 did not answer"
grep -q -- "$pattern" "$WORK/stop.log" || fail "stopped rank: no '$pattern' in the output"
grep -q -- "ranks 0,1 were waiting; ending the job" "$WORK/stop.log" ||
  fail "stopped rank: the message does not name the waiting ranks"
[ ! -e "$WORK/out.h5" ] || fail "stopped rank: a results file was written"
leftovers=$(find "$WORK" -name 'out.h5*')
[ -z "$leftovers" ] || fail "stopped rank: left $leftovers"
# mpirun's abort kills the stopped process too; give the kernel a moment to reap it.
for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
! alive "$pid" || fail "stopped rank: process $pid outlived the job"
echo "stopped rank: ended in $elapsed s (exit $rc) with: $(grep -m1 -- "did not arrive" "$WORK/stop.log")"
