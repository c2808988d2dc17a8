#!/usr/bin/env bash
# One lent-machine call: unpack the carried binaries (build-xz/bins.tar.xz, see
# perf/results/twentyfirst/README.md), run perf/gpu_check.sh sections under a time cap, and keep
# whatever logs were written even when the cap cuts a section short (the machine returns only a
# few files, so everything goes back as one tarball).
#   perf/results/device_call.sh CAP_SECONDS SECTION...   (environment as for gpu_check.sh)
set -uo pipefail
cap=${1:?usage: device_call.sh CAP_SECONDS SECTION...}; shift
src=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:?OUT must name the folder the machine returns}
tar -C "$src/build-xz" -xJf "$src/build-xz/bins.tar.xz" || exit 2
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,memory.total,driver_version --format=csv
timeout "$cap" env OUT="$out" "$src/perf/gpu_check.sh" "$src/build-xz/b" "$@" 2>&1 | tee "$out/console.txt"
rc=${PIPESTATUS[0]}
# A cut-short run leaves its logs unpacked: pack them.
[ -d "$out/gpu_check" ] && tar -czf "$out/partial.tgz" -C "$out" gpu_check && rm -rf "$out/gpu_check"
exit "$rc"
