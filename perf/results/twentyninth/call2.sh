#!/usr/bin/env bash
# Twenty-ninth session, second call: (1) does the collective watchdog's wait slow large transfers
# on the lent machine (wait_modes.cpp: MPI_Wait against the old and the new wait loop, with and
# without CMA), (2) the 2-rank bench on one GPU with the new wait (collectives were ~45 ms a MiB
# through host buffers in the first call), (3) sections (b) and (c) again with 32 output tokens a
# run (11 decode steps let a transient carry the median of four emulated pipeline plans) and the
# new wait in (c). Stage the build first (../twentyfirst/README.md); carry ["build-xz"].
# Run: bash perf/results/twentyninth/call2.sh [TOTAL_S] 2>&1 | tee $OUT/call2.txt
set -uo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd); out=${OUT:?}
total=${1:-400}
start=$SECONDS
tar -C "$src/build-xz" -xJf "$src/build-xz/bins.tar.xz" || exit 2
b=$src/build-xz/b
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
hw=h200; [[ "$gpu" == *H100* ]] && hw=h100
echo "== $gpu (roofline figures: $hw)"
mpi=(mpirun --allow-run-as-root --oversubscribe)

echo "== (1) wait modes: 0 MPI_Wait, 1 the watchdog's loop at SPIN_US, 2 yield only"
ompi_info --param btl vader --level 9 2>/dev/null | grep -i single_copy_mechanism | head -2
w=$(mktemp -d)
mpicxx -O2 -std=c++17 "$src/perf/results/twentyninth/wait_modes.cpp" -o "$w/wait_modes" && {
  for spin in 1000 50000; do
    echo "-- SPIN_US=$spin, default transport"; timeout 60 "${mpi[@]}" -np 2 "$w/wait_modes" $spin
  done
  echo "-- SPIN_US=1000, no CMA"
  timeout 60 "${mpi[@]}" --mca btl_vader_single_copy_mechanism none -np 2 "$w/wait_modes" 1000
}
echo "(1) done at $((SECONDS - start)) s"

echo "== (2) 2 ranks sharing the GPU: moetron bench (OLMoE-1B-7B shape), collectives to 16 MiB"
"$b/moetron" model make --family olmoe --preset olmoe-1b-7b --config-only --out "$w/olmoe" >/dev/null
timeout 120 "${mpi[@]}" -np 2 "$b/moetron" bench --model "$w/olmoe" --out "$out/bench-2r.h5" \
  --max-bytes 16MiB 2>&1 | grep -E "collectives|measured in" | tail -12
echo "(2) done at $((SECONDS - start)) s"

cap=$((total - (SECONDS - start) - 20)); [ "$cap" -gt 300 ] && cap=300
if [ "$cap" -ge 90 ]; then
  echo "== (3) validation, sections (b) and (c), cap $cap s"
  timeout "$cap" python3 "$src/perf/validate_predictor.py" --moetron "$b/moetron" --out-dir "$out/val" \
    --hardware "$hw" --sections emulated end_to_end --budget-s $((cap - 30)) \
    --title "$gpu, full mode, sections (b) and (c), 32 output tokens a run" 2>&1 | tee "$out/validate2.txt"
  echo "validate: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s"
  tar -czf "$out/val2.tgz" -C "$out" val && rm -rf "$out/val"
fi
echo "call2: $((SECONDS - start)) s"
