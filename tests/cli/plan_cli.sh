#!/usr/bin/env bash
# `moetron plan`: a ranked table for a cluster that is not at hand, the HDF5 file of every
# prediction, expert loads from a results file, and bad options refused naming the option.
source "$(dirname "$0")/common.bash"

"$MOETRON" model make --family qwen3_moe --preset qwen3-30b-a3b --config-only --out "$WORK/q3" >/dev/null

# 1,024 GPUs: every plan ranked; the table and the reason the best wins.
"$MOETRON" plan --model "$WORK/q3" --ranks 1024 --ranks-per-node 8 --top 5 --out "$WORK/plans.h5" >"$WORK/table.txt"
for needle in "1024 ranks (128 nodes x 8)" "output tok/s" "bottleneck" " wins: " "upper bounds" "wrote $WORK/plans.h5"; do
  grep -qF -- "$needle" "$WORK/table.txt" || fail "plan output lacks '$needle': $(cat "$WORK/table.txt")"
done
rows=$(grep -cE '^ +[0-9]+  pp=' "$WORK/table.txt")
[[ $rows -eq 5 ]] || fail "--top 5 printed $rows rows"
ranked=$(sed -n 's/^plans *\([0-9]*\) ranked in \([0-9.]*\) ms.*/\1 \2/p' "$WORK/table.txt")
read -r count ms <<<"$ranked"
[[ $count -gt 100 ]] || fail "only '$count' plans ranked"
awk -v ms="$ms" 'BEGIN { exit !(ms < 5000) }' || fail "ranking took $ms ms"
ls "$WORK" | grep -q '\.tmp\.' && fail "temporary files left behind"

# The file parses and holds every plan, best first.
if python3 -c 'import h5py' 2>/dev/null; then
  python3 - "$WORK/plans.h5" "$count" <<'PY' || fail "plans.h5 does not hold the ranking"
import h5py, sys
f = h5py.File(sys.argv[1], "r")
plans = [p.decode() if isinstance(p, bytes) else p for p in f["/plans/plan"][()]]
assert len(plans) == int(sys.argv[2]), len(plans)
rates = f["/plans/output_tokens_per_s"][()]
fits = f["/plans/fits"][()]
good = [r for r, ok in zip(rates, fits) if ok]
assert good == sorted(good, reverse=True)
assert f["/plans/decode_parts"].shape == (len(plans), 11)
best = f.attrs["best_plan"]
assert (best.decode() if isinstance(best, bytes) else best) == plans[0]
PY
elif command -v h5dump >/dev/null; then
  h5dump -d /plans/plan "$WORK/plans.h5" >"$WORK/plans.txt" || fail "h5dump cannot read plans.h5"
  grep -qF "SIMPLE { ( $count ) / ( $count ) }" "$WORK/plans.txt" || fail "plans.h5 does not hold $count plans"
fi

# A workload from a prompts file; interconnect and memory overrides; CPU figures.
random_prompts "$WORK/prompts.jsonl" 12 1 'i + 1' 151936
"$MOETRON" plan --model "$WORK/q3" --ranks 16 --ranks-per-node 8 --prompts "$WORK/prompts.jsonl" \
  --interconnect "intra=400:3,inter=50:8" --memory-per-rank 80GB --hardware h100 >"$WORK/small.txt"
grep -qF "12 requests" "$WORK/small.txt" || fail "--prompts did not set the workload: $(head -5 "$WORK/small.txt")"
grep -qF "400 GB/s + 3.0 us inside a node, 50.0 GB/s + 8.0 us across, memory 74.51 GiB" "$WORK/small.txt" \
  || fail "--interconnect/--memory-per-rank not applied: $(grep hardware "$WORK/small.txt")"

# Expert loads of a real run on the CPU: a tiny model, 4 ranks.
"$MOETRON" model make --family olmoe --out "$WORK/tiny" --seed 1 >/dev/null
random_prompts "$WORK/tiny.jsonl" 4 2 '4' 256
"$MOETRON" run --model "$WORK/tiny" --prompts "$WORK/tiny.jsonl" --out "$WORK/run.h5" --backend cpu \
  --log-level error >/dev/null
"$MOETRON" plan --model "$WORK/tiny" --ranks 4 --ranks-per-node 4 --hardware cpu --routing "$WORK/run.h5" \
  --requests 8 --prompt-tokens 16 --output-tokens 4 >"$WORK/routed.txt"
grep -qF "expert loads of $WORK/run.h5" "$WORK/routed.txt" || fail "--routing not used: $(cat "$WORK/routed.txt")"

# Nothing fits: exit 1 with the reason.
rc=0
"$MOETRON" plan --model "$WORK/q3" --ranks 1 --ranks-per-node 1 --memory-per-rank 1GiB >"$WORK/none.txt" || rc=$?
[[ $rc -eq 1 ]] || fail "a cluster nothing fits on exited $rc"
grep -qF "no plan fits" "$WORK/none.txt" || fail "no reason given: $(cat "$WORK/none.txt")"

# On CUDA (the default figures), a plan whose expert slice is not a multiple of 8 does not fit:
# Qwen1.5-MoE's 1,408 expert columns over pp=2,tp=16,dp=2 are 44 a rank.
"$MOETRON" model make --family qwen2_moe --preset qwen1.5-moe-a2.7b --config-only --out "$WORK/q15" >/dev/null
"$MOETRON" plan --model "$WORK/q15" --ranks 64 --ranks-per-node 8 --out "$WORK/q15.h5" >"$WORK/q15.txt" \
  || fail "plan of Qwen1.5-MoE on 64 ranks failed: $(cat "$WORK/q15.txt")"
if command -v h5dump >/dev/null; then
  h5dump -w 0 -d /plans/refusal "$WORK/q15.h5" | grep -F "pp=2,tp=16,dp=2,ep=1: each rank's slice of an expert, 1408 / 32 shards (tp*dp/ep) = 44 columns, is not a multiple of 8" >/dev/null \
    || fail "q15.h5: pp=2,tp=16,dp=2,ep=1 not refused for its 44-column expert slices"
fi

# Bad options name the option.
q3=(--model "$WORK/q3")
expect_failure "--ranks" plan "${q3[@]}" --ranks-per-node 8
expect_failure "--ranks must be" plan "${q3[@]}" --ranks 0 --ranks-per-node 1
expect_failure "--ranks-per-node must be" plan "${q3[@]}" --ranks 8 --ranks-per-node 16
expect_failure "--hardware: unknown hardware 'b200'" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --hardware b200
expect_failure "--interconnect: intra='400' is not GBps:us" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --interconnect intra=400
expect_failure "--hardware-set: unknown key 'tflops'" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --hardware-set tflops=1
expect_failure "--memory-per-rank: '-5' is not a byte count" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --memory-per-rank -5
expect_failure "--prompt-tokens must be at least 1" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --prompt-tokens 0
expect_failure "--arrival-rate must be" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --arrival-rate -1
expect_failure "--ranks-per-device must be in [1, --ranks-per-node]" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --ranks-per-device 0.5
expect_failure "--ranks-per-device must be in [1, --ranks-per-node]" plan "${q3[@]}" --ranks 8 --ranks-per-node 4 --ranks-per-device 8
expect_failure "--top must be at least 1" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --top 0
expect_failure "leave out --requests" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --prompts "$WORK/prompts.jsonl" --requests 3
expect_failure "--bogus" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --bogus
expect_failure "$WORK/nowhere/config.json" plan --model "$WORK/nowhere" --ranks 8 --ranks-per-node 8
expect_failure "$WORK/missing.h5" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --routing "$WORK/missing.h5"
expect_failure "/experts/tokens is not" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --routing "$WORK/run.h5"
expect_failure "$WORK/no-dir/p.h5" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --out "$WORK/no-dir/p.h5"
"$MOETRON" plan --help | grep -F -- "--interconnect" >/dev/null || fail "plan --help lacks --interconnect"
"$MOETRON" --help | grep -F "plan " >/dev/null || fail "moetron --help does not list plan"
# Two ranks on each GPU: the cluster line says so, and every plan's decode step takes at least
# twice its compute and no less than alone (the device serves both ranks' kernels in turn; the
# sharing_s column, 11th, is what that adds). The same memory for both, so the batches agree.
"$MOETRON" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --ranks-per-device 2 --hardware h200 --memory-per-rank 70GiB \
  --out "$WORK/shared.h5" >"$WORK/shared.txt" || fail "--ranks-per-device 2 failed"
grep -qF "8 ranks (1 nodes x 8), 2 ranks a device" "$WORK/shared.txt" || fail "no sharing on the cluster line: $(head -3 "$WORK/shared.txt")"
"$MOETRON" plan "${q3[@]}" --ranks 8 --ranks-per-node 8 --hardware h200 --memory-per-rank 70GiB \
  --out "$WORK/alone.h5" >/dev/null
if python3 -c 'import h5py' 2>/dev/null; then
  python3 - "$WORK/shared.h5" "$WORK/alone.h5" <<'PY' || fail "--ranks-per-device 2 did not price the sharing"
import h5py, sys
shared, alone = (h5py.File(p, "r")["plans"] for p in sys.argv[1:])
name = lambda g: [p.decode() if isinstance(p, bytes) else p for p in g["plan"][()]]
cols = shared["decode_parts"].attrs["columns"]
cols = (cols.decode() if isinstance(cols, bytes) else cols).split(",")
assert cols[-1] == "sharing_s", cols
total = lambda row: sum(v for c, v in zip(cols, row) if c not in ("imbalance_s", "emulation_s"))
fits = dict(zip(name(shared), shared["fits"][()]))
rows = dict(zip(name(shared), shared["decode_parts"][()]))
base = dict(zip(name(alone), alone["decode_parts"][()]))
checked = added = 0
for plan, ok in fits.items():
    if not ok or plan not in base:
        continue
    row = dict(zip(cols, rows[plan]))
    assert total(rows[plan]) >= max(total(base[plan]), 2 * row["compute_s"]) * (1 - 1e-9), (plan, rows[plan], base[plan])
    checked += 1
    added += row["sharing_s"] > 0
assert checked > 0 and added > 0, (checked, added)
PY
fi
echo "plan_cli: ok"
