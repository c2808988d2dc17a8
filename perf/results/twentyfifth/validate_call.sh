#!/usr/bin/env bash
# For the next GPU session (one call, ~5 min): the predictor's whole validation, sections (a), (b)
# with four plans a workload and micro-batch variants, and (c) with 2 ranks on the one GPU (the
# bootstrap bench capped at 16 MiB there), each point with its ceiling; then the 2-rank
# `--plan auto` run timing its own bootstrap bench (perf/results/twentyfourth/call6.sh).
# Stage the build first (perf/results/twentyfirst/README.md); carry ["build-xz"].
set -uo pipefail
src=$(cd "$(dirname "$0")/../../.." && pwd); out=${OUT:?}
tar -C "$src/build-xz" -xJf "$src/build-xz/bins.tar.xz" || exit 2
b=$src/build-xz/b
timeout 420 python3 "$src/perf/validate_predictor.py" --moetron "$b/moetron" --out-dir "$out/val" \
  --budget-s 330 --title "H200, full mode, all sections" 2>&1 | tee "$out/validate.txt"
tar -czf "$out/val.tgz" -C "$out" val && rm -rf "$out/val"
OUT="$out" bash "$src/perf/results/twentyfourth/call6.sh"
