#!/usr/bin/env bash
# Runs a test binary on N ranks: run_mpi.sh MPIEXEC NUMPROC_FLAG N BINARY [ARGS...].
# Open MPI refuses to start as root unless told so; CI containers run as root.
set -euo pipefail
mpiexec=$1 numproc_flag=$2 ranks=$3
shift 3
extra=()
if [ "$(id -u)" = 0 ]; then extra+=(--allow-run-as-root); fi
exec "$mpiexec" "$numproc_flag" "$ranks" --oversubscribe "${extra[@]}" "$@"
