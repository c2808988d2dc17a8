#!/usr/bin/env bash
# `moetron run --plan auto` on several ranks without --profile: the bootstrap rank measures the
# job's machine first (compute on rank 0, collectives over the ranks), predicts from that profile,
# and the results file keeps it (/profile), so that `moetron plan --profile` and a later run's
# --profile reuse it. --bootstrap-bench off predicts from the roofline figures, a single rank has
# nothing to choose and measures nothing, and misplaced or bad values are refused naming the option.
source "$(dirname "$0")/common.bash"

"$MOETRON" model make --family olmoe --config-only --out "$WORK/tiny" >/dev/null
printf '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 2}\n{"prompt_tokens": [4], "max_new_tokens": 2}\n' >"$WORK/prompts.jsonl"
run=(run --model "$WORK/tiny" --prompts "$WORK/prompts.jsonl" --backend cpu --load-format dummy)
# (h5dump's output goes to a file first: grep -q leaving early would fail the pipe under pipefail.)
has_profile() { h5dump -A -g /profile "$1" >"$WORK/dump.txt" 2>&1; grep -qF '"moetron hardware profile"' "$WORK/dump.txt"; }
dump() { h5dump "$@" >"$WORK/dump.txt" 2>&1 || true; cat "$WORK/dump.txt"; }

# Measured, then predicted from, and kept.
mpi 2 "$MOETRON" "${run[@]}" --bootstrap-bench quick --out "$WORK/auto.h5" >"$WORK/auto.txt" 2>&1 ||
  fail "run --plan auto failed: $(cat "$WORK/auto.txt")"
grep -q "info rank 0\] bootstrap bench (quick): .* collectives over 2 ranks measured in" "$WORK/auto.txt" ||
  fail "no bootstrap bench line: $(cat "$WORK/auto.txt")"
grep -qF "on the profile this run measured (/profile) (profile of" "$WORK/auto.txt" ||
  fail "the plan was not predicted from the measured profile: $(cat "$WORK/auto.txt")"
grep -q "info rank 0\] --plan auto: .* wins: " "$WORK/auto.txt" || fail "run does not say why its plan wins"
has_profile "$WORK/auto.h5" || fail "auto.h5 keeps no /profile"
dump -a /profile/world_size "$WORK/auto.h5" | grep -F "(0): 2" >/dev/null || fail "/profile is not of the 2-rank job"
dump -d /profile/tables/allreduce/keys "$WORK/auto.h5" | grep -F "(0,0): 2, 0" >/dev/null || fail "/profile lacks the 2-rank all-reduce"

# Reused: moetron plan reads it from the results file, and so does a later run (which keeps it too).
"$MOETRON" plan --model "$WORK/tiny" --ranks 2 --ranks-per-node 2 --profile "$WORK/auto.h5" --requests 4 \
  --prompt-tokens 8 --output-tokens 4 >"$WORK/plan.txt" 2>&1 || fail "plan --profile RESULTS.h5 failed: $(cat "$WORK/plan.txt")"
grep -qF "hardware  profile of" "$WORK/plan.txt" || fail "plan did not use the kept profile: $(cat "$WORK/plan.txt")"
mpi 2 "$MOETRON" "${run[@]}" --profile "$WORK/auto.h5" --out "$WORK/again.h5" >"$WORK/again.txt" 2>&1 ||
  fail "run --profile RESULTS.h5 failed: $(cat "$WORK/again.txt")"
grep -q "bootstrap bench" "$WORK/again.txt" && fail "a run with --profile measured again"
grep -qF "on the profile $WORK/auto.h5 (" "$WORK/again.txt" || fail "the run did not predict from --profile"
has_profile "$WORK/again.h5" || fail "again.h5 keeps no /profile (the one --profile gave)"

# Off: the roofline figures, nothing kept. One rank: one plan, nothing measured.
mpi 2 "$MOETRON" "${run[@]}" --bootstrap-bench off --out "$WORK/off.h5" >"$WORK/off.txt" 2>&1 ||
  fail "run --bootstrap-bench off failed: $(cat "$WORK/off.txt")"
grep -q "bootstrap bench" "$WORK/off.txt" && fail "--bootstrap-bench off measured"
grep -qF "on cpu figures" "$WORK/off.txt" || fail "off did not predict from the roofline: $(cat "$WORK/off.txt")"
has_profile "$WORK/off.h5" && fail "off.h5 keeps a /profile"
"$MOETRON" "${run[@]}" --out "$WORK/one.h5" >"$WORK/one.txt" 2>&1 || fail "one-rank run failed: $(cat "$WORK/one.txt")"
grep -q "bootstrap bench" "$WORK/one.txt" && fail "a one-rank run measured"
has_profile "$WORK/one.h5" && fail "one.h5 keeps a /profile"

expect_failure "--bootstrap-bench quick is only read with --plan auto and no --profile" "${run[@]}" --plan pp=1 \
  --bootstrap-bench quick --out "$WORK/x.h5"
expect_failure "--bootstrap-bench quick is only read with --plan auto and no --profile" "${run[@]}" \
  --profile "$WORK/auto.h5" --bootstrap-bench quick --out "$WORK/x.h5"
expect_failure "--bootstrap-bench must be full, quick or off, got 'fast'" "${run[@]}" --bootstrap-bench fast --out "$WORK/x.h5"
echo "bootstrap_bench: ok"
