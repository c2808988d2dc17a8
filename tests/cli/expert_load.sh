#!/usr/bin/env bash
# Expert load (issue 13): skewed dummy routers follow the law asked for, as `moetron analyze`
# measures it; bad options are refused naming the option; on 2 ranks with EP=2 (both expert
# paths: tp=2 without dispatch, dp=2 with it) the ranks' measured expert tokens and the
# analysis' per-set loads each sum to the run's routed token-slots, and each rank records the
# time it waited in communication.
source "$(dirname "$0")/common.bash"
command -v h5dump >/dev/null || { echo "skip: h5dump not found"; exit 77; }

# 64 requests of 8-39 prompt tokens and 32 output tokens each: ~6900 token-slots per layer.
python3 - "$WORK/prompts.jsonl" <<'PY'
import json, random, sys
random.seed(2)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        prompt = [random.randrange(3, 256) for _ in range(random.randrange(8, 40))]
        f.write(json.dumps({"prompt_tokens": prompt, "max_new_tokens": 32, "ignore_eos": True}) + "\n")
PY
attr() { h5dump -a "$2" "$1" | sed -n 's/^ *(0): \(.*\)$/\1/p'; }
sum() { h5_values "$1" "$2" | paste -sd+ | bc; }
within() {  # within VALUE WANT TOLERANCE
  awk -v v="$1" -v w="$2" -v t="$3" 'BEGIN { exit !(v - w <= t && w - v <= t) }'
}

# ---- the laws, recovered (olmoe tiny: 8 experts, top-2; 4 MoE layers averaged) ---------------
# Tolerances: the dummy model's own routing is uneven (unbiased, its layers' max/mean is up to
# 1.5), so a fitted exponent lands within 0.15 of the law and a hot share within 0.05. (Not
# zipf:0: a line through sorted noise has a positive slope, ~0.2 for this model unbiased.)
for law in zipf:1.0 zipf:1.5 hot:2:0.6; do
  out=$WORK/skew.h5
  "$MOETRON" run --model "$FIXTURES/olmoe" --load-format dummy --routing-skew "$law" \
    --prompts "$WORK/prompts.jsonl" --out "$out" >"$WORK/skew.log" 2>&1 || { cat "$WORK/skew.log"; fail "run $law"; }
  "$MOETRON" analyze "$out" --out "$WORK/skew_analysis.h5" >"$WORK/analyze.log" || fail "analyze $law"
  measured=$(attr "$WORK/skew_analysis.h5" /law/measured)
  case $law in
    zipf:*) want=${law#zipf:}; tol=0.15 ;;
    hot:*) want=${law##*:}; tol=0.05 ;;
  esac
  within "$measured" "$want" "$tol" || { cat "$WORK/analyze.log"; fail "$law: measured $measured, want $want +- $tol"; }
  echo "$law: measured $measured (want $want +- $tol)"
done
grep -q "routing skew asked: hot:2:0.6" "$WORK/analyze.log" || fail "the table does not name the law"

# ---- bad options, refused naming the option ---------------------------------------------------
run_args=(run --model "$FIXTURES/olmoe" --prompts "$WORK/prompts.jsonl" --out "$WORK/bad.h5")
expect_exit_1 skew_without_dummy "--routing-skew.*--load-format dummy" "$MOETRON" "${run_args[@]}" --routing-skew zipf:1
expect_exit_1 skew_malformed "--routing-skew 'zipf:x'" "$MOETRON" "${run_args[@]}" --load-format dummy --routing-skew zipf:x
expect_exit_1 skew_hot_malformed "--routing-skew 'hot:2'" "$MOETRON" "${run_args[@]}" --load-format dummy --routing-skew hot:2
expect_exit_1 skew_infeasible "--routing-skew hot:1:0.9" "$MOETRON" "${run_args[@]}" --load-format dummy --routing-skew hot:1:0.9
expect_exit_1 window_negative "--routing-window" "$MOETRON" "${run_args[@]}" --routing-window -1
expect_exit_1 analyze_top "--top" "$MOETRON" analyze "$WORK/skew.h5" --top 0
expect_exit_1 analyze_missing "no_such.h5" "$MOETRON" analyze "$WORK/no_such.h5"
expect_exit_1 analyze_out_is_input "--out" "$MOETRON" analyze "$WORK/skew.h5" --out "$WORK/skew.h5"
[ ! -e "$WORK/bad.h5" ] || fail "a refused run wrote a results file"

# ---- 2 ranks, EP=2: per-rank loads sum to the total --------------------------------------------
for plan in tp=2,ep=2 dp=2,ep=2; do
  out=$WORK/ep.h5
  mpi 2 "$MOETRON" run --model "$FIXTURES/olmoe" --prompts "$WORK/prompts.jsonl" --plan "$plan" --out "$out" \
    --routing-window 4 >"$WORK/ep.log" 2>&1 || { cat "$WORK/ep.log"; fail "run $plan"; }
  "$MOETRON" analyze "$out" --out "$WORK/ep_analysis.h5" >"$WORK/ep_analyze.log" || fail "analyze $plan"
  total=$(sum "$out" /experts/tokens)
  (( total > 0 )) || fail "$plan: no routed tokens"
  [[ "$(sum "$out" /experts/tokens_by_window)" == "$total" ]] || fail "$plan: the windows do not add up to $total"
  [[ "$(h5_values "$out" /experts/window_steps | head -2 | paste -sd' ')" == "0 4" ]] || fail "$plan: first window is not [0, 4)"
  measured=$(sum "$out" /ranks/expert_tokens)
  [[ "$measured" == "$total" ]] || fail "$plan: the ranks computed $measured token-slots, the routing counted $total"
  [[ "$(sum "$WORK/ep_analysis.h5" /ep/tokens)" == "$total" ]] || fail "$plan: the EP sets' loads do not sum to $total"
  mapfile -t mine < <(h5_values "$out" /ranks/expert_tokens)
  mapfile -t expected < <(h5_values "$WORK/ep_analysis.h5" /ranks/expected_tokens)
  [[ "${mine[*]}" == "${expected[*]}" ]] || fail "$plan: ranks measured ${mine[*]}, their experts' loads are ${expected[*]}"
  awk -v s="$(h5_values "$out" /ranks/expert_seconds | head -1)" 'BEGIN { exit !(s > 0) }' || fail "$plan: no expert time"
  # Both ranks meet in every step's collectives, so each waits in them some time, but never
  # longer than the run.
  run_s=$(attr "$out" /summary/total_seconds)
  for kind in decode prefill; do
    h5_values "$out" /ranks/${kind}_comm_wait_seconds |
      awk -v run="$run_s" '{ if (!($1 > 0 && $1 < run)) bad = 1 } END { exit bad || NR != 2 }' ||
      fail "$plan: $kind comm wait per rank is not in (0, $run_s) s: $(h5_values "$out" /ranks/${kind}_comm_wait_seconds | paste -sd' ')"
  done
  grep -q "rank 1: ${mine[1]} token-slots computed" "$WORK/ep_analyze.log" || fail "$plan: the table lacks rank 1"
  echo "$plan: ranks computed ${mine[*]} of $total token-slots"
done

# ---- the plots (perf/expert_plots.py), where a python3 has h5py and matplotlib -------------------
for py in python3 /usr/bin/python3; do
  if "$py" -c "import h5py, matplotlib" 2>/dev/null; then
    "$py" "$MOETRON_SOURCE_DIR/perf/expert_plots.py" "$WORK/ep_analysis.h5" --out "$WORK/plots" >/dev/null ||
      fail "perf/expert_plots.py failed"
    for png in expert_heatmap ep_load load_over_time; do
      [[ "$(head -c 4 "$WORK/plots/$png.png" | tail -c 3)" == PNG ]] || fail "no $png.png"
    done
    echo "plots drawn with $py"
    break
  fi
done
echo "ok"
