#!/usr/bin/env bash
# On a GPU: redundant experts under EP plans of 4 ranks sharing one GPU (MPI transport), and of
# two ranks on two GPUs (NCCL, decode graphs recorded) where there are two: the replicas' run
# against the same plan without them. Only which rank computes a replicated expert's rows
# changes, but a bf16 expert GEMM may pick another row tiling for another row count, so, as in
# gpu_plans.sh, most tokens must agree (compare_results prints how many).
source "$(dirname "$0")/common.bash"
gpu_test_setup 12 2 "6"
args=(run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cuda --ignore-eos --kv-cache-tokens 4096
      --log-level warn)
check() {  # check RANKS PLAN
  local ranks=$1 plan=$2 base="$WORK/${2//[=,]/_}-$1"
  echo "== $plan on $ranks ranks, with and without 4 redundant experts"
  mpi "$ranks" "$MOETRON" "${args[@]}" --plan "$plan" --out "$base.h5" || fail "$plan failed"
  mpi "$ranks" "$MOETRON" "${args[@]}" --plan "$plan" --redundant-experts 4 --expert-loads "$base.h5" \
    --out "$base-replicas.h5" || fail "$plan with replicas failed"
  # h5py, not h5dump: the GPU machines have no HDF5 tools.
  # Any layer: placement follows the loads, and a layer whose busiest set no copy would relieve
  # gets none (layer 0 of tp=2,dp=2,ep=2 on the H200, 2026-12-03).
  "$PYTHON" -c 'import h5py, sys; sys.exit(0 if (h5py.File(sys.argv[1], "r")["/experts/replicas"][..., 0] >= 0).any() else 1)' \
    "$base-replicas.h5" || fail "$plan: no replica placed"
  "$COMPARE_RESULTS" "$base-replicas.h5" "$base.h5" --min-agreement 0.8 || fail "$plan: replicas changed the tokens"
}
for plan in dp=4,ep=4 tp=2,dp=2,ep=2 tp=4,ep=4; do check 4 "$plan"; done
if [ "$gpus" -ge 2 ]; then
  check 2 dp=2,ep=2
else
  echo "one GPU: replicas over NCCL (two GPUs) were not run"
fi
echo "redundant experts on GPUs agree with the runs without them"
