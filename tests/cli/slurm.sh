#!/usr/bin/env bash
# jobs/moetron-1node.sbatch under a real Slurm: starts munged, slurmctld and slurmd for this
# one host (private sockets, ports and state under a temp dir), submits the job with 2 tasks,
# no GPUs (--gpus-per-node=0), the CPU backend and the fixture tests/fixtures/olmoe, and checks
# its HDF5 output, named after the job id; then checks that a cuda job without GPUs is refused,
# and runs the tiny factorial study (perf/study.py, jobs/study.sbatch as an array job). Needs
# root (it installs slurm-wlm and munge when missing and runs the daemons); else skips (77).
set -euo pipefail

say() { echo "slurm.sh: $*"; }
if [ "$(id -u)" != 0 ]; then
  say "needs root to install and run the Slurm daemons; skipping"; exit 77
fi
if [ -z "${MOETRON:-}" ] || [ ! -x "$MOETRON" ]; then
  say "no moetron binary (MOETRON='${MOETRON:-}'); skipping"; exit 77
fi
src=${MOETRON_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

work=$(mktemp -d /tmp/moetron-slurm.XXXXXX)
started=()  # pid files of the daemons this script started
stop_daemons() {
  local rc=$?
  local pids=() pid
  for pidfile in "${started[@]}"; do
    [ -f "$pidfile" ] && pids+=("$(cat "$pidfile")")
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # They are daemons, not children: poll until they have gone, so their ports and files are
  # free when this returns; force the ones that do not stop within 20 s.
  for _ in $(seq 20); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    for log in "$work"/*.log "$work"/job-*.out "$work"/study-*.out; do
      [ -f "$log" ] && { echo "---- $log"; tail -n 30 "$log"; }
    done
  fi
  rm -rf "$work"
}
trap stop_daemons EXIT

# munge: a private key and socket, so nothing of the host's own munge is touched.
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge.key"
mkdir -m 700 "$work/munge"
munged --force --key-file="$work/munge.key" --socket="$work/munge/socket" \
  --pid-file="$work/munged.pid" --log-file="$work/munged.log" --seed-file="$work/munge.seed"
started+=("$work/munged.pid")

# slurm.conf for this host as slurmd sees it (its real CPUs and memory), no cgroup plugins.
node_line=$(slurmd -C | head -n 1)
host=$(sed -E 's/^NodeName=([^ ]+).*/\1/' <<<"$node_line")
port=$((20000 + $$ % 20000))
mkdir -p "$work/state" "$work/spool"
cat > "$work/slurm.conf" <<CONF
ClusterName=moetron-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
$node_line State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$work/slurm.conf

slurmctld -f "$SLURM_CONF"
started+=("$work/slurmctld.pid")
slurmd -f "$SLURM_CONF"
started+=("$work/slurmd.pid")
for _ in $(seq 60); do
  sinfo -h -o %t 2>/dev/null | grep -qE '^idle' && break
  sleep 1
done
sinfo -h -o %t | grep -qE '^idle' || { say "the node never became idle"; sinfo; exit 1; }

# The job script starts ranks with srun --mpi=pmix; if this Slurm lacks PMIx, fall back to
# PMI2 here (Open MPI speaks both), so the test still checks the rest of the plumbing.
srun_mpi=pmix
if ! srun --mpi=list 2>&1 | grep -q pmix; then
  say "srun has no pmix plugin here ($(srun --mpi=list 2>&1 | tr '\n' ' ')); using pmi2"
  srun_mpi=pmi2
fi

printf '%s\n' '{"prompt_tokens": [1, 5, 9, 3], "max_new_tokens": 4}' \
              '{"prompt_tokens": [7, 2], "max_new_tokens": 3}' > "$work/prompts.jsonl"
cd "$src"
# The same script the GPU clusters run; --gpus-per-node=0 on the command line overrides its
# #SBATCH GPU request (this node has none). MODEL, PROMPTS and PLAN go as the script's arguments;
# the results file must be named after the job id. sbatch --wait exits with the job's status;
# any failure is this test's failure (never 77).
if ! jobid=$(MOETRON_BIN=$MOETRON RESULTS_DIR=$work/results BACKEND=cpu SRUN_MPI=$srun_mpi \
     MOETRON_JOBS_DIR=$src/jobs \
     sbatch --parsable --wait --gpus-per-node=0 --ntasks=2 --ntasks-per-node=2 \
     --output="$work/job-%j.out" --chdir="$work" jobs/moetron-1node.sbatch \
     "$src/tests/fixtures/olmoe" "$work/prompts.jsonl" auto); then
  say "the job failed"
  exit 1
fi
jobid=${jobid%%;*}

cat "$work"/job-*.out
out=$work/results/moetron-$jobid.h5
[ -f "$out" ] || { say "job $jobid wrote no $out"; ls -R "$work/results" || true; exit 1; }
h5dump -H -d /requests/output_tokens "$out" >/dev/null ||
  { say "$out has no /requests/output_tokens"; exit 1; }
say "ok: 2-task job $jobid on the CPU backend wrote $out with /requests/output_tokens"

# The CUDA backend (the default) in a job that holds no GPUs is refused before any rank starts.
if MOETRON_BIN=$MOETRON MOETRON_JOBS_DIR=$src/jobs sbatch --wait --gpus-per-node=0 --ntasks=1 \
     --ntasks-per-node=1 --output="$work/nogpu-%j.out" --chdir="$work" jobs/moetron-1node.sbatch \
     "$src/tests/fixtures/olmoe" "$work/prompts.jsonl" >/dev/null; then
  say "a cuda job without GPUs was not refused"; exit 1
fi
grep -q "BACKEND=cuda but the job holds no GPUs" "$work"/nogpu-*.out ||
  { say "the cuda job without GPUs failed without saying why:"; cat "$work"/nogpu-*.out; exit 1; }
say "ok: a cuda job without GPUs is refused with its reason"

# The factorial study's skeleton (issue 14): perf/study.py expands the tiny CPU grid, an array
# job (jobs/study.sbatch, one grid point per task) runs it, and the ANOVA tables and figures are
# written from its results.
python=$(command -v /usr/bin/python3 || command -v python3)
study=$work/study
"$python" perf/study.py prepare perf/study_grids/ci-cpu.json --dir "$study" --moetron "$MOETRON" --source "$src"
tasks=$("$python" -c "import json, sys; print(len(json.load(open(sys.argv[1]))['tasks']))" "$study/tasks.json")
# Polled here rather than with sbatch --wait, whose back-off waits up to ~40 s past an array's
# end; every task's results file is checked below (analyze counts them).
study_job=$(MOETRON_SOURCE_DIR=$src PYTHON=$python sbatch --parsable --array=0-$((tasks - 1)) --gpus-per-node=0 \
  --ntasks=1 --output="$work/study-%A_%a.out" --chdir="$work" jobs/study.sbatch "$study")
study_job=${study_job%%;*}
for _ in $(seq 240); do
  [ -z "$(squeue -h -j "$study_job" -o %i 2>/dev/null)" ] && break
  sleep 0.5
done
[ -z "$(squeue -h -j "$study_job" -o %i 2>/dev/null)" ] || { say "the study's array job did not finish in 120 s"; exit 1; }
"$python" perf/study.py analyze "$study" --out "$study/STUDY.md" --plots
for want in "## output_tokens_per_s" "| model |" "| concurrency |" "| model:concurrency |" "| Residual |" \
            "## Throughput knee" "plots/throughput.png"; do
  grep -qF -- "$want" "$study/STUDY.md" || { say "STUDY.md lacks '$want'"; cat "$study/STUDY.md"; exit 1; }
done
grep -q "^$tasks runs of $tasks tasks" "$study/STUDY.md" || { say "not every task left results"; head -3 "$study/STUDY.md"; exit 1; }
say "ok: the tiny study ran as a $tasks-task array job and its ANOVA tables were written"
