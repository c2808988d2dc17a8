#!/usr/bin/env bash
# On GPUs: parallel plans give the single-GPU answer. With one GPU, 4 ranks share it and the
# device tensors travel over MPI through host memory (NCCL refuses two ranks on one GPU; the
# log must say so). With two or more GPUs, the NCCL transport: TP2, EP2, PP2, DP2.
# bf16 on every path, but reductions run in a different order per plan, so a near-tie may
# flip a greedy token and change the rest of that request: most tokens must agree.
source "$(dirname "$0")/common.bash"
gpu_test_setup 12 2 "6"
args=(run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cuda --ignore-eos --kv-cache-tokens 4096)
"$MOETRON" "${args[@]}" --log-level warn --out "$WORK/single.h5"
check() {  # check RANKS PLAN [EXPECTED LOG TEXT]
  local ranks=$1 plan=$2 expect=${3:-}
  local out="$WORK/${plan//[=,]/_}-$ranks.h5"
  echo "== $plan on $ranks ranks"
  mpi "$ranks" "$MOETRON" "${args[@]}" --plan "$plan" --out "$out" >"$WORK/log" 2>&1 || { cat "$WORK/log"; fail "$plan failed"; }
  [ -z "$expect" ] || grep -q "$expect" "$WORK/log" || { cat "$WORK/log"; fail "$plan: no '$expect' in the log"; }
  "$COMPARE_RESULTS" "$out" "$WORK/single.h5" --min-agreement 0.8 || fail "$plan differs from one GPU"
}
for plan in tp=2,dp=2,ep=2 tp=4 pp=2,tp=2 dp=4,ep=4 pp=4; do
  check 4 "$plan" "ranks share GPUs: device transport mpi through host memory"
done
if [ "$gpus" -ge 2 ]; then
  for plan in tp=2 tp=2,ep=2 pp=2; do check 2 "$plan" "one GPU per rank: device transport nccl"; done
  # Replicas over NCCL record their decode steps too (fixed-capacity expert dispatch).
  for plan in dp=2 dp=2,ep=2; do check 2 "$plan" "recorded the decode step"; done
else
  echo "one GPU: the NCCL plans (TP2, EP2, PP2, DP2 on two GPUs) were not run"
fi
echo "plans on GPUs agree with one GPU"
