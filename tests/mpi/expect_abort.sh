#!/usr/bin/env bash
# abort_job ends the whole job: expect_abort.sh MPIEXEC NUMPROC_FLAG N BINARY. Rank N-1 fails
# while the others wait in a barrier; the job must exit non-zero within the timeout and print
# the rank's message exactly once.
set -uo pipefail
ranks=$3 binary=$4
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
timeout 60 bash "$(dirname "$0")/run_mpi.sh" "$1" "$2" "$ranks" "$binary" \
  --abort-from-rank=$((ranks - 1)) >"$log" 2>&1
rc=$?
elapsed=$(($(date +%s) - start))
cat "$log"
fail() { echo "expect_abort.sh: $*"; exit 1; }
[ "$rc" != 0 ] || fail "the job exited 0"
[ "$rc" != 124 ] || fail "the job was still running after 60 s: abort_job did not end it"
message="moetron: rank $((ranks - 1)): error: deliberate failure on one rank"
count=$(grep -cF "$message" "$log")
[ "$count" = 1 ] || fail "expected '$message' once, found it $count times"
echo "expect_abort.sh: ok: exit $rc after ${elapsed}s, message printed once"
