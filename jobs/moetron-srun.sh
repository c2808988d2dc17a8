#!/usr/bin/env bash
# The step both sbatch scripts run: one `moetron run` over every task of the allocation, one MPI
# rank per task, started by srun through PMIx. Settings come from the environment (see
# README.md); each has a default that works from a built checkout.
set -euo pipefail

submit_dir=${SLURM_SUBMIT_DIR:-$PWD}
moetron_bin=${MOETRON_BIN:-$submit_dir/build/moetron}
model=${MODEL:-$submit_dir/build/models/tiny-olmoe}
prompts=${PROMPTS:-$submit_dir/inputs/prompts.jsonl}
out=${OUT:-$submit_dir/results/moetron-${SLURM_JOB_ID:-local}.h5}
plan=${PLAN:-auto}
backend=${BACKEND:-cuda}
# One GPU per rank for the CUDA backend, none for the CPU one.
if [ "$backend" = cpu ]; then default_gpus=0; else default_gpus=1; fi
gpus_per_task=${GPUS_PER_TASK:-$default_gpus}
srun_mpi=${SRUN_MPI:-pmix}

fail() { echo "moetron job: $*" >&2; exit 1; }
[ -x "$moetron_bin" ] || fail "MOETRON_BIN=$moetron_bin is not an executable"
[ -f "$model/config.json" ] || fail "MODEL=$model has no config.json"
[ -f "$prompts" ] || fail "PROMPTS=$prompts does not exist"
mkdir -p "$(dirname "$out")"

gpu_option=()
if [ "$gpus_per_task" != 0 ]; then gpu_option=(--gpus-per-task="$gpus_per_task"); fi

echo "moetron job ${SLURM_JOB_ID:-?}: ${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NUM_NODES:-?}" \
     "node(s), backend $backend, plan $plan, output $out"
# --kill-on-bad-exit: a rank that dies without MPI_Abort still ends the whole step.
exec srun --mpi="$srun_mpi" --kill-on-bad-exit=1 "${gpu_option[@]}" \
  "$moetron_bin" run --model "$model" --prompts "$prompts" --out "$out" --plan "$plan" \
  --backend "$backend" ${MOETRON_ARGS:-}
