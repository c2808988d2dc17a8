#!/usr/bin/env bash
# --emulate-rank with --redundant-experts: an emulated rank holds and computes its EP set's
# replicas. Against a real 4-rank MPI run of dp=4,ep=4 with the same placement (--expert-loads):
# where emulation's one assumption holds exactly (every replica gets the same requests) and
# nothing rests on its stand-ins (one layer, prefill only: the rows a real peer returns from its
# experts are copies of this rank's under emulation, so from the second layer or the second
# step on the routing is not the real one), each emulated rank serves exactly the real rank's
# expert token-slots, places the same replicas, and replicas move the served tokens toward
# balance. With 4 layers and distinct requests the agreement is statistical: the emulated ranks'
# total within 12% of the real one, each rank within 60% (measured: 3-4% in all, up to 51% a rank). The
# warm-up form places replicas from the emulated rank's own replica (a tp > 0 rank too).
source "$(dirname "$0")/common.bash"
command -v h5dump >/dev/null || { echo "skip: h5dump not found"; exit 77; }
MODEL=$FIXTURES/olmoe  # 4 layers, 8 experts
common=(--backend cpu --load-format dummy --routing-skew zipf:1.5 --ignore-eos --temperature 0)
quiet=("${quiet[@]}" --log-level warn)  # greedy: replicas given the same prompt generate the same tokens

# served FILE RANK: rank RANK's expert token-slots (/ranks/expert_tokens).
served() { h5_values "$1" /ranks/expert_tokens | sed -n "$(($2 + 1))p"; }

# Identical requests: every replica routes as the emulated one. Distinct ones: they do not.
"$MOETRON" model make --family olmoe --preset tiny --set num_hidden_layers=1 --out "$WORK/one" --seed 1 >/dev/null
for i in 0 1 2 3; do
  echo '{"prompt_tokens": [17, 202, 33, 9, 250, 61, 7, 88, 140, 5], "max_new_tokens": 1}'
done >"$WORK/same.jsonl"
random_prompts "$WORK/distinct.jsonl" 16 5 "4 + i % 5" 256
"$MOETRON" run "${quiet[@]}" --model "$WORK/one" --prompts "$WORK/same.jsonl" --out "$WORK/loads-one.h5" ||
  fail "the one-layer loads run failed"
"$MOETRON" run "${quiet[@]}" --model "$MODEL" --prompts "$WORK/distinct.jsonl" --out "$WORK/loads.h5" || fail "the loads run failed"

# compare MODEL WORKLOAD TOLERANCE [REPLICA OPTIONS...]: real and emulated ranks' served tokens of
# dp=4,ep=4, each within TOLERANCE (a share) of the real rank's and their total within TOLERANCE/5;
# sets ratio to the emulated ranks' max/mean.
compare() {
  local model=$1 workload=$2 tolerance=$3 plan=dp=4,ep=4 tag real_total=0 emulated_total=0
  shift 3
  tag="$workload-$#"
  mpi 4 "$MOETRON" run "${quiet[@]}" --model "$model" --prompts "$WORK/$workload.jsonl" --plan "$plan" "$@" \
    --out "$WORK/real-$tag.h5" >/dev/null || fail "$tag: the real 4-rank run failed"
  local emulated=()
  for rank in 0 1 2 3; do
    "$MOETRON" run "${quiet[@]}" --model "$model" --prompts "$WORK/$workload.jsonl" --plan "$plan" "$@" --emulate-rank $rank \
      --emulate-world 4 --emulate-peers "$PEERS" --out "$WORK/emu-$tag-$rank.h5" 2>"$WORK/emu.err" ||
      fail "$tag rank $rank: $(cat "$WORK/emu.err")"
    local real emu
    real=$(served "$WORK/real-$tag.h5" $rank) emu=$(served "$WORK/emu-$tag-$rank.h5" $rank)
    [[ -n "$emu" && "$emu" -gt 0 ]] || fail "$tag rank $rank: the emulated rank served no expert tokens"
    awk -v e="$emu" -v r="$real" -v t="$tolerance" 'BEGIN { d = e - r; if (d < 0) d = -d; exit !(d <= t * r) }' ||
      fail "$tag rank $rank: emulated served $emu expert token-slots, the real rank $real (tolerance $tolerance)"
    if [[ $# -gt 0 ]]; then  # the emulated rank places what the real run placed
      [[ "$(h5_values "$WORK/emu-$tag-$rank.h5" /experts/replicas)" == "$(h5_values "$WORK/real-$tag.h5" /experts/replicas)" ]] ||
        fail "$tag rank $rank: /experts/replicas differs from the real run's"
    fi
    emulated+=("$emu")
    real_total=$((real_total + real)) emulated_total=$((emulated_total + emu))
  done
  awk -v e="$emulated_total" -v r="$real_total" -v t="$tolerance" 'BEGIN { d = e - r; if (d < 0) d = -d; exit !(d <= t / 5 * r) }' ||
    fail "$tag: the emulated ranks served $emulated_total expert token-slots in all, the real ones $real_total"
  ratio=$(printf '%s\n' "${emulated[@]}" | awk '{ s += $1; if ($1 > m) m = $1 } END { printf "%.4f", m / (s / NR) }')
}

# Identical requests: peers that route as this rank (--emulate-peers same) are exactly the real
# ones. Distinct requests: the default, peers' picks moved within each set.
PEERS=same
compare "$WORK/one" same 0
plain=$ratio
compare "$WORK/one" same 0 --redundant-experts 4 --expert-loads "$WORK/loads-one.h5"
with=$ratio
echo "one layer, identical requests: emulated = real on every rank; emulated ranks' max/mean $plain without replicas, $with with 4"
awk -v a="$with" -v b="$plain" 'BEGIN { exit !(a < b) }' || fail "replicas did not balance the emulated ranks ($with vs $plain)"
h5_attr() { h5dump -a "$2" "$1" | sed -n 's/.*(0): "\(.*\)".*/\1/p'; }
[[ "$(h5_attr "$WORK/emu-same-0-0.h5" /emulated_peers)" == same ]] || fail "/@emulated_peers is not 'same'"
PEERS=rotated
compare "$MODEL" distinct 0.6 --redundant-experts 4 --expert-loads "$WORK/loads.h5"
echo "4 layers, distinct requests, 4 replicas: emulated ranks within 60% of the real ones, in all within 12%"

# The warm-up form: rank 1 of tp=2,dp=2,ep=4 (tp coordinate 1) places replicas in every layer.
"$MOETRON" run "${common[@]}" --model "$MODEL" --prompts "$WORK/distinct.jsonl" --plan tp=2,dp=2,ep=4 --redundant-experts 4 \
  --emulate-rank 1 --emulate-world 4 --log-level info --out "$WORK/warm.h5" >"$WORK/warm.log" 2>&1 ||
  { cat "$WORK/warm.log"; fail "emulated rank with a warm-up failed"; }
grep -q "warm-up of 16 requests.*(the emulated rank's replica and layers)" "$WORK/warm.log" ||
  fail "no emulated warm-up in the log: $(tail -5 "$WORK/warm.log")"
for layer in 0 1 2 3; do
  h5dump -d /experts/replicas "$WORK/warm.h5" | grep "($layer,0,0): [0-9]" >/dev/null ||
    fail "the emulated warm-up placed no replica in layer $layer"
done
echo "emulated replicas: served tokens match the real ranks, replicas balance them, warm-up places them"
