# When nvidia-h200-x2 is lent (ask `status` first): the NCCL transport on two GPUs, never run
# yet. tests/cli/gpu_plans.sh runs TP2, EP2, PP2 and DP2 against one GPU and checks that the
# dp plans record their decode steps (fixed-capacity dispatch inside a CUDA graph over NCCL).
set -o pipefail
export PATH=$PWD/build-carry:$PATH NCCL_NVLS_ENABLE=0
export MOETRON=$PWD/build-carry/moetron MOETRON_SOURCE_DIR=$PWD COMPARE_RESULTS=$PWD/build-carry/tests/compare_results MPIEXEC=mpiexec
bash tests/cli/gpu_plans.sh > $OUT/gpu_plans.log 2>&1; echo "gpu_plans exit $?"; tail -20 $OUT/gpu_plans.log
build-carry/tests/moetron_gpu_tests > $OUT/gpu_tests.log 2>&1; echo "gpu unit tests exit $?"; grep -E "FAILED|PASSED" $OUT/gpu_tests.log | head
