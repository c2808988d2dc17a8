#!/usr/bin/env bash
# perf/predicted_vs_measured.py on two CPU runs (1 rank, and 2 ranks with dp=2,ep=2): one CSV row
# per run with the chosen plan's predicted and measured decode step and TTFT, and two non-empty
# PNGs. Skips (77) without python3's h5py and matplotlib.
source "$(dirname "$0")/common.bash"
py=""
for candidate in python3 /usr/bin/python3; do
  if "$candidate" -c "import h5py, matplotlib" 2>/dev/null; then py=$candidate; break; fi
done
[[ -n "$py" ]] || { echo "skip: no python3 with h5py and matplotlib"; exit 77; }

printf '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 4}\n{"prompt_tokens": [4], "max_new_tokens": 4}\n' >"$WORK/p.jsonl"
run=(run --model "$FIXTURES/olmoe" --prompts "$WORK/p.jsonl" --backend cpu)
"$MOETRON" "${run[@]}" --out "$WORK/one.h5" >"$WORK/log" 2>&1 || { cat "$WORK/log"; fail "1-rank run failed"; }
mpi 2 "$MOETRON" "${run[@]}" --plan dp=2,ep=2 --out "$WORK/two.h5" >"$WORK/log" 2>&1 ||
  { cat "$WORK/log"; fail "2-rank run failed"; }
"$py" "$MOETRON_SOURCE_DIR/perf/predicted_vs_measured.py" "$WORK/one.h5" "$WORK/two.h5" --out "$WORK/plots" \
  >"$WORK/out" 2>&1 || { cat "$WORK/out"; fail "predicted_vs_measured.py failed"; }
[[ $(wc -l <"$WORK/plots/predicted_vs_measured.csv") -eq 3 ]] || fail "expected a header and 2 rows"
grep -q "two.h5,\"pp=1,tp=1,dp=2,ep=2\"," "$WORK/plots/predicted_vs_measured.csv" || fail "the 2-rank row is missing"
for png in decode_step ttft; do
  [[ $(stat -c %s "$WORK/plots/$png.png") -gt 10000 ]] || fail "$png.png is empty or tiny"
done
echo "ok: $(head -1 "$WORK/out")"
