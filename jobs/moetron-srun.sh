#!/usr/bin/env bash
# The step both sbatch scripts run: one `moetron run` over every task of the allocation, one MPI
# rank per task (one per GPU), started by srun through PMIx.
#   moetron-srun.sh [MODEL [PROMPTS [PLAN]]]
# Arguments win over the environment variables of the same names; every setting has a default
# that works from a built checkout (README.md).
set -euo pipefail

submit_dir=${SLURM_SUBMIT_DIR:-$PWD}
moetron_bin=${MOETRON_BIN:-$submit_dir/build/moetron}
model=${1:-${MODEL:-$submit_dir/build/models/tiny-olmoe}}
prompts=${2:-${PROMPTS:-$submit_dir/inputs/prompts.jsonl}}
plan=${3:-${PLAN:-auto}}
[ $# -le 3 ] || { echo "moetron job: at most 3 arguments (MODEL PROMPTS PLAN), got $#" >&2; exit 1; }
# Named after the job, so jobs sharing a checkout never overwrite each other's results.
out=${OUT:-${RESULTS_DIR:-$submit_dir/results}/moetron-${SLURM_JOB_ID:-local}.h5}
backend=${BACKEND:-cuda}
srun_mpi=${SRUN_MPI:-pmix}

fail() { echo "moetron job: $*" >&2; exit 1; }
[ -x "$moetron_bin" ] || fail "MOETRON_BIN=$moetron_bin is not an executable"
[ -f "$model/config.json" ] || fail "MODEL=$model has no config.json"
[ -f "$prompts" ] || fail "PROMPTS=$prompts does not exist"
mkdir -p "$(dirname "$out")"

# GPUs the job holds on each node: --gpus-per-node sets SLURM_GPUS_PER_NODE ("8" or "h100:8"),
# --gres=gpu:N sets SLURM_JOB_GPUS (the indices). A job submitted with --gpus-per-node=0 holds
# none (the CPU test), and then nothing is bound.
job_gpus=${SLURM_GPUS_PER_NODE:-}
job_gpus=${job_gpus##*:}
if [ -z "$job_gpus" ] && [ -n "${SLURM_JOB_GPUS:-}" ]; then
  job_gpus=$(tr ',' '\n' <<<"$SLURM_JOB_GPUS" | wc -l)
fi
gpu_option=()
if [ "$backend" = cuda ]; then
  [ -n "$job_gpus" ] && [ "$job_gpus" != 0 ] ||
    fail "BACKEND=cuda but the job holds no GPUs (submit with --gpus-per-node or --gres=gpu:N)"
  # Each rank sees only its own GPU: task i of a node gets the node's i-th GPU.
  gpu_option=(--gpu-bind="${GPU_BIND:-single:1}")
fi

echo "moetron job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NUM_NODES:-?}" \
     "node(s), ${job_gpus:-0} GPU(s) per node, backend $backend, plan $plan, output $out"
# --kill-on-bad-exit: a rank that dies without MPI_Abort still ends the whole step.
exec srun --mpi="$srun_mpi" --kill-on-bad-exit=1 "${gpu_option[@]}" \
  "$moetron_bin" run --model "$model" --prompts "$prompts" --out "$out" --plan "$plan" \
  --backend "$backend" ${MOETRON_ARGS:-}
