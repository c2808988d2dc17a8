#!/usr/bin/env bash
# run_fuzz.sh FUZZER SEED_DIR SECONDS: runs one libFuzzer target for a bounded time on a copy of
# its seed corpus (new inputs it finds stay out of the source tree). Fails on any finding: a
# crash, a sanitizer report, an exception other than moetron::Error, a leak, a slow input.
set -euo pipefail
fuzzer=$(realpath "$1") seeds=$(realpath "$2") seconds=$3
[ -x "$fuzzer" ] || { echo "skip: $fuzzer not built"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/moetron-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus"
cp "$seeds"/* "$work/corpus/"
cd "$work"  # crash-* files land here; the log names them
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  "$work/corpus" 2>&1 | tail -n 60
