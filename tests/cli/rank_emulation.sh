#!/usr/bin/env bash
# `moetron run --emulate-rank R --emulate-world N`: one rank's share of an N-rank plan in one
# process. Bad combinations are refused naming the options (on every rank of an mpirun job);
# an emulated run records its step times with the attributes that say it was emulated, and
# takes as many steps of the same kinds as the real rank of a real 4-rank MPI run.
source "$(dirname "$0")/common.bash"

"$MOETRON" model make --family olmoe --preset tiny --out "$WORK/m" --seed 2 >/dev/null
# Four requests of one length: both replicas of dp=2 plans step alike.
for i in 0 1 2 3; do
  echo "{\"id\": \"r$i\", \"prompt_tokens\": [$((3 + i)), 40, 77, $((5 + i)), 9, 11], \"max_new_tokens\": 5}"
done >"$WORK/p.jsonl"
run=(run --model "$WORK/m" --prompts "$WORK/p.jsonl" --load-format dummy --ignore-eos --log-level warn)

expect_failure "--emulate-rank 4 is outside [0, 4) (--emulate-world 4)" "${run[@]}" --out "$WORK/x.h5" \
  --plan tp=2,dp=2,ep=2 --emulate-rank 4 --emulate-world 4
expect_failure "--emulate-rank needs --emulate-world" "${run[@]}" --out "$WORK/x.h5" --plan tp=2 --emulate-rank 0
expect_failure "--emulate-world needs --emulate-rank" "${run[@]}" --out "$WORK/x.h5" --plan tp=2 --emulate-world 2
expect_failure "has 4 ranks (pp x tp x dp) but --emulate-world is 8" "${run[@]}" --out "$WORK/x.h5" \
  --plan tp=2,dp=2 --emulate-rank 0 --emulate-world 8
expect_failure "--emulate-rank needs an explicit --plan" "${run[@]}" --out "$WORK/x.h5" --emulate-rank 0 --emulate-world 2
expect_failure "--plan pp=1,tp=3,dp=1,ep=1: the 4 attention heads" "${run[@]}" --out "$WORK/x.h5" --plan tp=3 --emulate-rank 0 --emulate-world 3
# Replicas under emulation are allowed (emulated_replicas.sh); an ep=1 plan still has none to hold.
expect_failure "--redundant-experts 2: the plan pp=1,tp=1,dp=2,ep=1 has ep=1" "${run[@]}" --out "$WORK/x.h5" \
  --plan dp=2 --emulate-rank 0 --emulate-world 2 --redundant-experts 2
# Under mpirun of 2 ranks every rank refuses and the job exits 1 (no hang).
expect_exit_1 emulate_under_mpirun "this job has 2 MPI ranks" "${MPI_RUN[@]}" 2 "$MOETRON" "${run[@]}" --out "$WORK/x.h5" \
  --plan tp=2 --emulate-rank 0 --emulate-world 2
[[ ! -e "$WORK/x.h5" ]] || fail "a refused run wrote its results file"

# Rank 3 of pp=2,tp=2 (last stage) and rank 1 of tp=2,dp=2,ep=4 (expert dispatch), real and emulated.
for plan in pp=2,tp=2 tp=2,dp=2,ep=4; do
  mpi 4 "$MOETRON" "${run[@]}" --plan "$plan" --out "$WORK/real.h5"
  for rank in 1 3; do
    "$MOETRON" "${run[@]}" --plan "$plan" --emulate-rank $rank --emulate-world 4 --out "$WORK/emu$rank.h5"
    h5dump -A "$WORK/emu$rank.h5" >"$WORK/attrs.txt" || fail "h5dump cannot read emu$rank.h5"
    for attr in emulated_rank emulated_world emulated_plan; do
      grep -q "ATTRIBUTE \"$attr\"" "$WORK/attrs.txt" || fail "$plan rank $rank: no /@$attr"
    done
    grep -A10 'ATTRIBUTE "emulated_rank"' "$WORK/attrs.txt" | grep -q "\"$rank\"" || fail "emulated_rank is not $rank"
    # The same steps, prefill and decode alike, as the real run.
    for d in /steps/is_prefill /steps/num_tokens; do
      real=$(h5dump -d $d -y -w 0 "$WORK/real.h5" | sed -n '/DATA {/,/}/p')
      emu=$(h5dump -d $d -y -w 0 "$WORK/emu$rank.h5" | sed -n '/DATA {/,/}/p')
      [[ "$real" == "$emu" ]] || fail "$plan rank $rank: $d differs from the real run: $emu vs $real"
    done
    steps=$(h5dump -d /steps/seconds -y -w 0 "$WORK/emu$rank.h5" | grep -c '[0-9]e\|[0-9]\.' || true)
    [[ $steps -gt 0 ]] || fail "$plan rank $rank: no step times"
  done
done
# A profile of this one process predicts the emulated plan's ranks (its world is not the plan's).
"$MOETRON" bench --model "$WORK/m" --out "$WORK/prof.h5" --backend cpu --quick --log-level warn
"$MOETRON" "${run[@]}" --plan tp=2,dp=2,ep=4 --emulate-rank 2 --emulate-world 4 --profile "$WORK/prof.h5" \
  --out "$WORK/emu_profiled.h5" 2>"$WORK/profiled.err"
grep -q "no plan predictions" "$WORK/profiled.err" && fail "the profile was refused: $(cat "$WORK/profiled.err")"
h5dump -A -g /predictions "$WORK/emu_profiled.h5" | grep -A10 'ATTRIBUTE "figures"' | grep "prof.h5" >/dev/null ||
  fail "the emulated run's predictions do not rest on the profile"
echo "rank emulation: options checked, emulated steps match the real 4-rank runs"
