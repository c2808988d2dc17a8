#!/usr/bin/env bash
# --emulate-rank with --redundant-experts: an emulated rank holds and computes its EP set's
# replicas. Against a real 4-rank MPI run of the same plan and placement (--expert-loads), each
# emulated rank serves exactly the real rank's expert token-slots when every replica gets the
# same requests (emulation's one assumption then holds exactly), and close to them with distinct
# requests; replicas move the emulated ranks' served tokens toward balance under zipf:1.5; and
# the warm-up form places replicas from the emulated rank's own replica (a tp > 0 rank too).
source "$(dirname "$0")/common.bash"
command -v h5dump >/dev/null || { echo "skip: h5dump not found"; exit 77; }
MODEL=$FIXTURES/olmoe  # 4 layers, 8 experts
common=(--model "$MODEL" --backend cpu --load-format dummy --routing-skew zipf:1.5 --ignore-eos --log-level warn)

# values FILE DATASET: the dataset's numbers, one a line.
values() {
  h5dump -y -w 0 -d "$2" "$1" | sed -n '/DATA {/,/}/p' | sed '1d;$d' | tr ',' '\n' | awk 'NF { print $1 + 0 }'
}
# served FILE RANK: rank RANK's expert token-slots (/ranks/expert_tokens).
served() { values "$1" /ranks/expert_tokens | sed -n "$(($2 + 1))p"; }

# Identical requests: every replica routes as the emulated one. Distinct ones: they do not.
for i in 0 1 2 3; do
  echo '{"prompt_tokens": [17, 402, 33, 9, 250, 61, 7, 88, 140, 5], "max_new_tokens": 6}'
done >"$WORK/same.jsonl"
random_prompts "$WORK/distinct.jsonl" 16 5 "4 + i % 5" 256
"$MOETRON" run "${common[@]}" --prompts "$WORK/distinct.jsonl" --out "$WORK/loads.h5" || fail "the loads run failed"
replicas=(--redundant-experts 4 --expert-loads "$WORK/loads.h5")

# compare WORKLOAD PLAN TOLERANCE [REPLICA OPTIONS...]: real and emulated ranks' served tokens;
# sets ratio to the emulated ranks' max/mean.
compare() {
  local workload=$1 plan=$2 tolerance=$3 tag
  shift 3
  tag="$workload-${plan//[=,]/}-$#"
  mpi 4 "$MOETRON" run "${common[@]}" --prompts "$WORK/$workload.jsonl" --plan "$plan" "$@" \
    --out "$WORK/real-$tag.h5" >/dev/null || fail "$tag: the real 4-rank run failed"
  local emulated=()
  for rank in 0 1 2 3; do
    "$MOETRON" run "${common[@]}" --prompts "$WORK/$workload.jsonl" --plan "$plan" "$@" --emulate-rank $rank \
      --emulate-world 4 --out "$WORK/emu-$tag-$rank.h5" 2>"$WORK/emu.err" || fail "$tag rank $rank: $(cat "$WORK/emu.err")"
    local real emu
    real=$(served "$WORK/real-$tag.h5" $rank) emu=$(served "$WORK/emu-$tag-$rank.h5" $rank)
    [[ -n "$emu" && "$emu" -gt 0 ]] || fail "$tag rank $rank: the emulated rank served no expert tokens"
    awk -v e="$emu" -v r="$real" -v t="$tolerance" 'BEGIN { d = e - r; if (d < 0) d = -d; exit !(d <= t * r) }' ||
      fail "$tag rank $rank: emulated served $emu expert token-slots, the real rank $real (tolerance $tolerance)"
    if [[ $# -gt 0 ]]; then  # the emulated rank places what the real run placed
      [[ "$(values "$WORK/emu-$tag-$rank.h5" /experts/replicas)" == "$(values "$WORK/real-$tag.h5" /experts/replicas)" ]] ||
        fail "$tag rank $rank: /experts/replicas differs from the real run's"
    fi
    emulated+=("$emu")
  done
  ratio=$(printf '%s\n' "${emulated[@]}" | awk '{ s += $1; if ($1 > m) m = $1 } END { printf "%.4f", m / (s / NR) }')
}

compare same dp=4,ep=4 0
plain=$ratio
compare same dp=4,ep=4 0 "${replicas[@]}"
with=$ratio
echo "identical requests, dp=4,ep=4: emulated = real on every rank; emulated ranks' max/mean $plain without replicas, $with with 4"
awk -v a="$with" -v b="$plain" 'BEGIN { exit !(a < b) }' || fail "replicas did not balance the emulated ranks ($with vs $plain)"
# Distinct requests per replica: the peers' routing is only alike in distribution.
compare distinct dp=4,ep=4 0.35 "${replicas[@]}"
distinct=$ratio
echo "distinct requests, dp=4,ep=4 with 4 replicas: emulated within 35% of real; max/mean $distinct"

# The warm-up form: rank 1 of tp=2,dp=2,ep=4 (tp coordinate 1) places replicas in every layer.
"$MOETRON" run "${common[@]}" --prompts "$WORK/distinct.jsonl" --plan tp=2,dp=2,ep=4 --redundant-experts 4 \
  --emulate-rank 1 --emulate-world 4 --log-level info --out "$WORK/warm.h5" >"$WORK/warm.log" 2>&1 ||
  { cat "$WORK/warm.log"; fail "emulated rank with a warm-up failed"; }
grep -q "warm-up of 16 requests.*(the emulated rank's replica and layers)" "$WORK/warm.log" ||
  fail "no emulated warm-up in the log: $(tail -5 "$WORK/warm.log")"
for layer in 0 1 2 3; do
  h5dump -d /experts/replicas "$WORK/warm.h5" | grep -q "($layer,0,0): [0-9]" ||
    fail "the emulated warm-up placed no replica in layer $layer"
done
echo "emulated replicas: served tokens match the real ranks, replicas balance them, warm-up places them"
