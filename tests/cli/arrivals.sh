#!/usr/bin/env bash
# Arrival times are honoured. Tolerance: a request is admitted no earlier than its arrival_s on
# any rank's clock, and, when the engine is idle, within 0.25 s after it (a sleep's wake-up and
# one step on a loaded 2-core machine). While waiting for an arrival the engine sleeps: the run
# with the 1.5 s wait uses under 0.5 s more CPU time than the same run without it (a spinning
# wait adds about a CPU second per second waited; start-up's own CPU time, 0.6-0.78 s on this
# 2-core machine, is the baseline's too, so load moves the difference little). With several
# ranks (replicas in lockstep, pipeline stages) every rank admits the same requests at the same
# step: the tokens equal one rank's.
source "$(dirname "$0")/common.bash"
model=$FIXTURES/olmoe
cat > "$WORK/late.jsonl" <<'JSONL'
{"id": "late", "prompt_tokens": [1, 5, 9, 3], "max_new_tokens": 4, "arrival_s": 1.5}
{"id": "early", "prompt_tokens": [7, 2], "max_new_tokens": 4}
JSONL
sed 's/, "arrival_s": 1.5//' "$WORK/late.jsonl" > "$WORK/now.jsonl"
TIMEFORMAT='%R %U %S'
timed_run() {  # prompts, out, times file
  { time "$MOETRON" run --model "$model" --prompts "$1" --backend cpu --ignore-eos --log-level warn \
      --out "$2" >/dev/null 2>&1; } 2>"$3"
}
timed_run "$WORK/now.jsonl" "$WORK/now.h5" "$WORK/time0.txt" || fail "the run without a late arrival failed"
timed_run "$WORK/late.jsonl" "$WORK/late.h5" "$WORK/time.txt" || fail "the run with a late arrival failed"
read -r wall user sys <"$WORK/time.txt"
read -r wall0 user0 sys0 <"$WORK/time0.txt"
"$PYTHON" - "$WORK/late.h5" "$wall" "$user" "$sys" "$user0" "$sys0" <<'PY' || fail "arrival times not honoured"
import sys, h5py
f = h5py.File(sys.argv[1])
wall, cpu = float(sys.argv[2]), float(sys.argv[3]) + float(sys.argv[4])
cpu0 = float(sys.argv[5]) + float(sys.argv[6])  # the same run without the wait
r, total = f["/requests"], f["/summary"].attrs["total_seconds"]
ids = [i.decode() for i in r["ids"][:]]
late, early = ids.index("late"), ids.index("early")
arrival, queue, ttft = r["arrival_s"][late], r["queue_s"][late], r["ttft_s"][late]
print(f"late: arrival {arrival} s, queue {queue:.4f} s, ttft {ttft:.4f} s; run {total:.3f} s; "
      f"process wall {wall} s, cpu {cpu:.2f} s (without the wait {cpu0:.2f} s)")
assert arrival == 1.5, arrival
assert 0 <= queue <= 0.25, f"admitted {queue} s after its arrival (tolerance [0, 0.25])"
assert 0 < ttft and ttft >= queue
# The run's own clock passed 1.5 s before the late request finished: it was not admitted early.
assert total >= 1.5 + r["e2e_s"][late] - 1e-6, total
assert r["e2e_s"][early] < 1.0 and r["arrival_s"][early] == 0 and r["queue_s"][early] >= 0
assert wall >= 1.5
# Idle means asleep: the wait adds well under the 1.5 s it lasts to the CPU time.
assert cpu - cpu0 < 0.5, f"{cpu} s of CPU time for {wall} s of wall time, {cpu0} s without the wait: the idle engine spins"
PY

# Several ranks: Poisson arrivals and a closed loop, over replicas (dp=2) and pipeline stages
# (pp=2): the same tokens as one rank.
"$MOETRON" workload --kind short --requests 6 --rate 40 --vocab 256 --seed 1 --out "$WORK/poisson.jsonl" >/dev/null
"$MOETRON" workload --kind short --requests 7 --concurrency 3 --vocab 256 --seed 2 --out "$WORK/closed.jsonl" >/dev/null
for load in poisson closed; do
  args=(run --model "$model" --prompts "$WORK/$load.jsonl" --backend cpu --log-level warn --save-logits)
  "$MOETRON" "${args[@]}" --out "$WORK/$load-1.h5" || fail "$load on one rank"
  for plan in dp=2 pp=2; do
    mpi 2 "$MOETRON" "${args[@]}" --plan "$plan" --out "$WORK/$load-$plan.h5" || fail "$load with $plan"
    "$COMPARE_RESULTS" "$WORK/$load-$plan.h5" "$WORK/$load-1.h5" --rtol 1e-5 >/dev/null ||
      fail "$load with $plan gave other tokens than one rank"
    "$PYTHON" - "$WORK/$load-$plan.h5" "$WORK/$load.jsonl" <<'PY' || fail "$load with $plan: arrivals not honoured"
import json, sys, h5py
r = h5py.File(sys.argv[1])["/requests"]
given = [json.loads(l).get("arrival_s") for l in open(sys.argv[2])]
for i, a in enumerate(given):
    assert a is None or r["arrival_s"][i] == a, (i, a, r["arrival_s"][i])
    assert r["queue_s"][i] >= 0 and r["ttft_s"][i] > 0, i
PY
  done
done
echo "arrival times honoured on one rank and with dp=2 and pp=2; the idle engine sleeps"
