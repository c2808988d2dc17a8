#!/usr/bin/env bash
# moetron workload: files with the stated counts, lengths and arrivals, which `moetron run`
# reads; a closed loop keeps at most C requests in flight; bad options are refused by name.
source "$(dirname "$0")/common.bash"
w=("$MOETRON" workload)

expect_exit_1 bad_kind "--kind: unknown kind 'tiny'" "${w[@]}" --kind tiny --requests 3 --vocab 10 --out "$WORK/x.jsonl"
expect_exit_1 zero_requests "--requests must be at least 1" "${w[@]}" --kind short --requests 0 --vocab 10 --out "$WORK/x.jsonl"
expect_exit_1 zero_rate "--rate must be > 0" "${w[@]}" --kind short --requests 3 --rate 0 --vocab 10 --out "$WORK/x.jsonl"
expect_exit_1 bad_concurrency "--concurrency must be at least 1" "${w[@]}" --kind short --requests 3 --concurrency 0 \
  --vocab 10 --out "$WORK/x.jsonl"
expect_exit_1 both_loops "--rate and --concurrency exclude each other" "${w[@]}" --kind short --requests 3 --rate 1 \
  --concurrency 2 --vocab 10 --out "$WORK/x.jsonl"
expect_exit_1 no_vocab "'--vocab' is required" "${w[@]}" --kind short --requests 3 --out "$WORK/x.jsonl"
expect_exit_1 bad_vocab "--vocab must be" "${w[@]}" --kind short --requests 3 --vocab 0 --out "$WORK/x.jsonl"
expect_exit_1 not_a_number "--rate" "${w[@]}" --kind short --requests 3 --rate fast --vocab 10 --out "$WORK/x.jsonl"
[ ! -e "$WORK/x.jsonl" ] || fail "a refused workload left a file"

for kind in short medium long mixed; do
  "${w[@]}" --kind "$kind" --requests 400 --vocab 1000 --seed 5 --out "$WORK/$kind.jsonl" >/dev/null
done
"${w[@]}" --kind short --requests 3000 --rate 200 --vocab 1000 --out "$WORK/poisson.jsonl" >/dev/null
"${w[@]}" --kind short --requests 3000 --rate 200 --vocab 1000 --out "$WORK/poisson-again.jsonl" >/dev/null
cmp -s "$WORK/poisson.jsonl" "$WORK/poisson-again.jsonl" || fail "the same options gave another file"
"${w[@]}" --kind short --requests 9 --concurrency 3 --vocab 256 --out "$WORK/closed.jsonl" >/dev/null
"$PYTHON" - "$WORK" <<'PY' || fail "workload files are not as stated"
import json, statistics, sys
work = sys.argv[1]
load = lambda name: [json.loads(l) for l in open(f"{work}/{name}.jsonl")]
ranges = {"short": ((8, 64), (8, 32)), "medium": ((128, 512), (32, 128)), "long": ((1024, 2048), (128, 256))}
for kind, ((pmin, pmax), (omin, omax)) in ranges.items():
    reqs = load(kind)
    assert len(reqs) == 400 and len({r["id"] for r in reqs}) == 400
    for r in reqs:
        assert pmin <= len(r["prompt_tokens"]) <= pmax and omin <= r["max_new_tokens"] <= omax, (kind, r["id"])
        assert all(0 <= t < 1000 for t in r["prompt_tokens"]) and r["ignore_eos"] is True
        assert "arrival_s" not in r and "after" not in r
mixed = [len(r["prompt_tokens"]) for r in load("mixed")]
assert all(8 <= p <= 2048 for p in mixed) and min(mixed) <= 64 and max(mixed) >= 1024
arrivals = [r["arrival_s"] for r in load("poisson")]
gaps = [b - a for a, b in zip([0] + arrivals, arrivals)]
assert len(arrivals) == 3000 and min(gaps) > 0
mean = statistics.fmean(gaps)
# 3000 exponential gaps: the mean's standard error is 1.8% of 1/rate; allow 8%.
assert abs(mean - 1 / 200) < 0.08 / 200, mean
closed = load("closed")
assert [r.get("after") for r in closed] == [None] * 3 + [f"r{i}" for i in range(6)]
print(f"kinds within their ranges; Poisson mean gap {mean * 1e3:.3f} ms (1/rate 5 ms); closed loop chained")
PY

# A closed loop of 3 through the engine: never more than 3 requests between arrival and
# completion, and each follower arrives when the request it follows finishes.
"$MOETRON" run --model "$FIXTURES/olmoe" --prompts "$WORK/closed.jsonl" --backend cpu --log-level warn \
  --out "$WORK/closed.h5" || fail "the closed-loop run failed"
"$PYTHON" - "$WORK/closed.h5" <<'PY' || fail "the closed loop was not kept"
import sys, h5py
r = h5py.File(sys.argv[1])["/requests"]
start, e2e = r["arrival_s"][:], r["e2e_s"][:]
end = start + e2e
for i in range(3, 9):
    assert abs(start[i] - end[i - 3]) < 1e-6, (i, start[i], end[i - 3])
for t in sorted(set(start)):
    in_flight = sum(1 for a, b in zip(start, end) if a <= t < b)
    assert in_flight <= 3, (t, in_flight)
print("closed loop of 3 kept")
PY
echo "workload files as stated; bad options refused by name"
