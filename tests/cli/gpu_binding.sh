#!/usr/bin/env bash
# On GPUs: the binding is decided from the devices' UUIDs, not from how many devices one rank
# sees. (1) Two ranks on one GPU (both see only GPU 0): the log says they share it and use the
# MPI transport, and both ranks' /ranks/device name the same UUID. (2) With two or more GPUs,
# each rank sees only its own device (CUDA_VISIBLE_DEVICES per rank, as srun --gpus-per-task=1
# sets it): one GPU per rank, NCCL, two different UUIDs. (3) Every rank sees two GPUs: each takes
# the one of its node-local rank.
source "$(dirname "$0")/common.bash"
gpu_test_setup 4 5 "4"
args=(run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cuda --ignore-eos --kv-cache-tokens 4096 --plan tp=2)
host=$(hostname)
uuid() { nvidia-smi --query-gpu=uuid --format=csv,noheader -i "$1" | tr -d ' '; }
rank_devices() { h5_values "$1" /ranks/device | grep -o 'GPU-[0-9a-f-]*'; }

# The command each rank runs; PER_RANK_GPU=1 gives rank r only GPU r, as Slurm would (the
# node-local rank from Open MPI, or MPICH's MPI_LOCALRANKID).
LAUNCH='if [ "${PER_RANK_GPU:-0}" = 1 ]; then export CUDA_VISIBLE_DEVICES=${OMPI_COMM_WORLD_LOCAL_RANK:-$MPI_LOCALRANKID}; fi; exec "$0" "$@"'
launch() {  # launch NAME EXPECT ENV-ASSIGNMENTS...: 2 ranks of moetron, each through the wrapper
  local name=$1 expect=$2
  shift 2
  echo "== $name"
  env "$@" bash "$MOETRON_SOURCE_DIR/tests/mpi/run_mpi.sh" "$MPIEXEC" -n 2 -x PER_RANK_GPU -x CUDA_VISIBLE_DEVICES \
    bash -c "$LAUNCH" "$MOETRON" "${args[@]}" --out "$WORK/$name.h5" >"$WORK/$name.log" 2>&1 ||
    { cat "$WORK/$name.log"; fail "$name: the run failed"; }
  grep -qF "$expect" "$WORK/$name.log" || { cat "$WORK/$name.log"; fail "$name: no '$expect' in the log"; }
}

u0=$(uuid 0)
launch shared "node $host: ranks 0,1, 1 GPU ($u0: ranks 0,1), ranks share GPUs: device transport mpi through host memory (NCCL refuses two ranks on one GPU)" \
  CUDA_VISIBLE_DEVICES=0 PER_RANK_GPU=0
mapfile -t devices < <(rank_devices "$WORK/shared.h5")
[[ "${devices[*]}" == "$u0 $u0" ]] || fail "shared: /ranks/device holds '${devices[*]}', want $u0 twice"
grep -q "decode steps run eagerly" "$WORK/shared.log" || fail "shared: tp over the MPI transport cannot be recorded"

if [ "$gpus" -ge 2 ]; then
  u1=$(uuid 1)
  launch own "node $host: ranks 0,1, 2 GPUs ($u0: rank 0; $u1: rank 1), one GPU per rank: device transport nccl" \
    CUDA_VISIBLE_DEVICES=0,1 PER_RANK_GPU=1
  mapfile -t devices < <(rank_devices "$WORK/own.h5")
  [[ "${devices[*]}" == "$u0 $u1" ]] || fail "own: /ranks/device holds '${devices[*]}', want $u0 $u1"
  launch both "node $host: ranks 0,1, 2 GPUs ($u0: rank 0; $u1: rank 1), one GPU per rank: device transport nccl" \
    CUDA_VISIBLE_DEVICES=0,1 PER_RANK_GPU=0
  "$COMPARE_RESULTS" "$WORK/own.h5" "$WORK/shared.h5" --min-agreement 0.8 || fail "own GPUs differ from a shared one"
  # Traffic over NCCL is counted in recorded decode steps too: each replay adds what its
  # recording moved. 4 requests decode 31 steps at batch 4 (124 rows); recording adds 3 eager
  # warm-up steps of 1 + 2 + 4 rows (under 6% more). Without the replays counted the graphs run
  # would count far less than the eager one; with the recording itself counted, about 11% more.
  random_prompts "$WORK/long.jsonl" 4 7 "32"
  sum_sent() { h5_values "$1" /ranks/bytes_sent | awk '{s += $1} END {print s}'; }
  for mode in graphs eager; do
    extra=(); [ "$mode" = eager ] && extra=(--no-graphs)
    env CUDA_VISIBLE_DEVICES=0,1 PER_RANK_GPU=1 bash "$MOETRON_SOURCE_DIR/tests/mpi/run_mpi.sh" "$MPIEXEC" -n 2 \
      -x PER_RANK_GPU -x CUDA_VISIBLE_DEVICES bash -c "$LAUNCH" "$MOETRON" run --model "$model" \
      --prompts "$WORK/long.jsonl" --backend cuda --ignore-eos --kv-cache-tokens 4096 --plan tp=2 "${extra[@]}" \
      --out "$WORK/traffic-$mode.h5" >"$WORK/traffic-$mode.log" 2>&1 || { cat "$WORK/traffic-$mode.log"; fail "traffic $mode run failed"; }
  done
  grep -q "recorded the decode step" "$WORK/traffic-graphs.log" || fail "the NCCL tp=2 run recorded no decode step"
  graphs=$(sum_sent "$WORK/traffic-graphs.h5"); eager=$(sum_sent "$WORK/traffic-eager.h5")
  echo "bytes sent: $graphs with CUDA graphs, $eager eager"
  (( graphs >= eager && graphs * 100 <= eager * 108 )) || fail "NCCL traffic with graphs ($graphs) is not eager's ($eager) plus the warm-up"
else
  echo "one GPU: the one-GPU-per-rank cases (Slurm's CUDA_VISIBLE_DEVICES per task, NCCL) were not run"
fi
echo "GPU binding follows the devices' UUIDs"
