#!/usr/bin/env bash
# Section (c) of the predictor's validation for CPU ranks alone, with the time each rank waits
# in communication: the check perf/PREDICTOR.md's eighth session left for a host with room for
# the ranks (do the multi-rank CPU plans miss because ranks reach their collectives at
# different times?).
#
#   perf/cpu_ranks_check.sh BUILD_DIR OUTDIR
#
# BUILD_DIR holds `moetron`. Two runs of perf/validate_predictor.py --sections end_to_end
# --backend cpu on the tiny OLMoE, each with a `moetron bench` profile of its own world:
#   one-rank/   pp=1 on one rank, the baseline;
#   four-ranks/ tp=4, tp=2,dp=2,ep=4 and pp=2,tp=2 on 4 MPI ranks,
#   four-ranks-again/ the same once more (a new profile too), for the spread between runs.
# Each run's requests generate 64 tokens (63 decode steps a run). Every part runs under
# `timeout`, 140 s in all; OUTDIR gets each part's report.md, validation.h5, work/ (results
# files, profiles, logs) and log, and table.md: per plan the predicted and measured decode
# step and each rank's mean time blocked in communication per decode step
# (/ranks/decode_comm_wait_seconds over the decode steps). Ranks oversubscribe only on a host
# with fewer cores than ranks, where their waits time each other and mean little.
set -uo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 BUILD_DIR OUTDIR" >&2; exit 2; }
build=$1 out=$2
here=$(cd "$(dirname "$0")" && pwd)
moetron=$build/moetron
[[ -x $moetron ]] || { echo "$0: $moetron is not an executable" >&2; exit 2; }
mkdir -p "$out"
# A python3 with h5py and numpy (validate_predictor.py reads and writes HDF5).
python=""
for py in ${PYTHON:-} python3 /usr/bin/python3; do
  if "$py" -c "import h5py, numpy" 2>/dev/null; then python=$py && break; fi
done
[[ -n $python ]] || { echo "$0: no python3 with h5py and numpy" >&2; exit 2; }

# Where the numbers came from: the build, the host's cores, MPI.
{
  echo "moetron: $("$moetron" --version 2>&1 | head -1)"
  echo "commit: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "host: $(hostname), $(nproc) cores"
  echo "mpirun: $(mpirun --version 2>&1 | head -1)"
} >"$out/env.txt"
cat "$out/env.txt"

# part NAME SECONDS ARGS...: one validation run under its own time limit.
part() {
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most $limit s)"
  timeout --kill-after=5 "$limit" "$python" "$here/validate_predictor.py" --moetron "$moetron" --backend cpu \
    --sections end_to_end --e2e-output-tokens 64 --budget-s "$limit" --out-dir "$out/$name" \
    --title "CPU ranks check: $name" "$@" 2>&1 | tee "$out/$name.log"
  local rc=${PIPESTATUS[0]}
  ((rc == 0)) || echo "$name: exited $rc$( ((rc == 124)) && echo " (past its $limit s)")"
}

four_rank_plans=(tp=4 tp=2,dp=2,ep=4 pp=2,tp=2)
part one-rank 30 --cpu-ranks 1 --cpu-plans pp=1
# Twice, each with its own profile: the spread between them is what one run can say.
part four-ranks 55 --cpu-ranks 4 --cpu-plans "${four_rank_plans[@]}"
part four-ranks-again 55 --cpu-ranks 4 --cpu-plans "${four_rank_plans[@]}"

# table_rows NAME: the end-to-end rows of the part's report (the part's name first), or, where
# the part did not finish, the lines it printed as it went.
table_rows() {
  local report=$out/$1/report.md
  if [[ -f $report ]]; then
    awk '/^#### \(c\)/ { on = 1 } on && /^\| shape \| ranks \| plans/ { exit } on && /^\| tiny/' "$report" |
      sed "s/^|/| $1 |/"
  else
    grep 'end_to_end' "$out/$1.log" | sed "s/^/| $1 (unfinished) | /"
  fi
}

{
  echo "| run | shape | ranks | point | predicted ms | measured ms | error | upper bound | comm wait ms / decode step, by rank, of the mean step |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  table_rows one-rank | sed 's/ |$/ | n\/a |/'
  table_rows four-ranks
  table_rows four-ranks-again
} >"$out/table.md"
echo
echo "Decode step, predicted against measured ($out/table.md):"
cat "$out/table.md"
