#!/usr/bin/env bash
# The GPU tests, on a machine with a GPU: run_gpu_tests.sh [BUILD_DIR]
# BUILD_DIR holds moetron, tests/moetron_gpu_tests and tests/compare_results (default: build).
# Equivalent to `make test-gpu` where the project builds; this form needs only the binaries,
# for GPU machines without the build dependencies (binaries built elsewhere and copied over).
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build}
export MOETRON=$build/moetron MOETRON_SOURCE_DIR=$src COMPARE_RESULTS=$build/tests/compare_results
export MPIEXEC=${MPIEXEC:-mpiexec}
status=0
"$build/tests/moetron_gpu_tests" --fixtures "$src/tests/fixtures" || status=1
echo "== the expert tests with prefill-sized loads on the device-side tiles (MOETRON_EXPERT_GEMM=tiles)"
MOETRON_EXPERT_GEMM=tiles "$build/tests/moetron_gpu_tests" --fixtures "$src/tests/fixtures" \
  --gtest_filter='CudaMoe.*' || status=1
for t in "$src"/tests/cli/gpu_*.sh; do
  echo "== $(basename "$t")"
  bash "$t" || status=1
done
exit $status
