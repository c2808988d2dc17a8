#!/usr/bin/env bash
# perf/gpu_check.sh without a GPU: with a stand-in build folder whose moetron_gpu_tests records
# its arguments, the `kernels` section must pass the checkout's fixtures (--fixtures), pack its
# log into $OUT/gpu_check.tar.gz with a summary, and report a failing section by its exit status;
# bad arguments must be refused naming what is wrong.
set -euo pipefail
src=${MOETRON_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
work=$(mktemp -d /tmp/moetron-gpu-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "perf_gpu_check.sh: $*" >&2; exit 1; }

mkdir -p "$work/build/tests" "$work/out"
printf '#!/bin/sh\nexit 0\n' > "$work/build/moetron"
cat > "$work/build/tests/moetron_gpu_tests" <<'FAKE'
#!/bin/sh
echo "args: $*" >> "$(dirname "$0")/calls.txt"
echo "[  PASSED  ] 1 test."
exit "${FAKE_STATUS:-0}"
FAKE
chmod +x "$work/build/moetron" "$work/build/tests/moetron_gpu_tests"

OUT=$work/out bash "$src/perf/gpu_check.sh" "$work/build" kernels > "$work/log" 2>&1 ||
  { cat "$work/log"; fail "the kernels section failed with a passing test binary"; }
grep -q -- "--fixtures $src/tests/fixtures --gtest_filter=CudaSampling\*:\*PackDispatch\*" \
  "$work/build/tests/calls.txt" || { cat "$work/build/tests/calls.txt"; fail "no --fixtures passed"; }
grep -qx "kernels: exit 0, [0-9]* s" "$work/out/summary.txt" ||
  { cat "$work/log" "$work/out/summary.txt"; fail "no summary line"; }
# The listing first, then grep: no pipe for an early-exiting grep to break under pipefail.
listing=$(tar -tzf "$work/out/gpu_check.tar.gz")
grep -qx "gpu_check/kernels.log" <<<"$listing" || { echo "$listing"; fail "log not packed"; }
[ ! -e "$work/out/gpu_check" ] || fail "the log folder was left beside the tarball"

if FAKE_STATUS=1 OUT=$work/out bash "$src/perf/gpu_check.sh" "$work/build" kernels > "$work/log" 2>&1; then
  fail "a failing section did not fail the script"
fi
grep -q "kernels: exit 1" "$work/out/summary.txt" || fail "the failure is not in the summary"

msg=$(bash "$src/perf/gpu_check.sh" "$work/build" nosuch 2>&1) && fail "an unknown section was accepted"
grep -q "unknown section 'nosuch'" <<<"$msg" || fail "unclear message: $msg"
msg=$(bash "$src/perf/gpu_check.sh" "$work/missing" 2>&1) && fail "a missing build folder was accepted"
grep -q "BUILD_DIR '$work/missing' is not a folder" <<<"$msg" || fail "unclear message: $msg"
echo "perf_gpu_check.sh: ok"
