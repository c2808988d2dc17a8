#!/usr/bin/env bash
# Launch rules on the CPU, with the test hooks standing in for GPUs and for each rank's memory:
# rank 0 logs one line per node saying which ranks share which GPU and the transport chosen;
# ranks that would each choose a different --plan auto all run rank 0's plan; rank 0's failure
# to resolve a plan ends every rank with its message.
source "$(dirname "$0")/common.bash"
model=$FIXTURES/olmoe
printf '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 3}\n{"prompt_tokens": [4], "max_new_tokens": 3}\n' >"$WORK/prompts.jsonl"
args=(run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cpu)
host=$(hostname)
plan_of() { h5dump -a /plan "$1" | sed -n 's/^ *(0): "\(.*\)"$/\1/p'; }

expect_line() {  # expect_line HOOK RANKS LINE
  env MOETRON_TEST_GPU_UUIDS="$1" "${MPI_RUN[@]}" "$2" "$MOETRON" "${args[@]}" --plan "pp=$2" \
    --out "$WORK/bind.h5" >"$WORK/log" 2>&1 || { cat "$WORK/log"; fail "run with MOETRON_TEST_GPU_UUIDS='$1' failed"; }
  grep -qF "] $3 [devices from the test hook" "$WORK/log" || { cat "$WORK/log"; fail "no line '$3'"; }
  # The hook's GPUs decide the binding; the cpu backend still computes on the CPU.
  [[ "$(h5dump -a /device "$WORK/bind.h5" | sed -n 's/^ *(0): "\(.*\)"$/\1/p')" == cpu ]] || fail "/@device is not cpu"
}
# Slurm's --gpus-per-task=1: every rank sees one device, its own.
expect_line "GPU-a;GPU-b;GPU-c;GPU-d" 4 \
  "node $host: ranks 0-3, 4 GPUs (GPU-a: rank 0; GPU-b: rank 1; GPU-c: rank 2; GPU-d: rank 3), one GPU per rank: device transport nccl"
expect_line "GPU-a;GPU-a;GPU-b;GPU-b" 4 \
  "node $host: ranks 0-3, 2 GPUs (GPU-a: ranks 0,1; GPU-b: ranks 2,3), ranks share GPUs: device transport mpi through host memory (NCCL refuses two ranks on one GPU)"
# mpirun: every rank sees both devices and takes one by its node-local rank.
expect_line "GPU-a,GPU-b" 2 \
  "node $host: ranks 0,1, 2 GPUs (GPU-a: rank 0; GPU-b: rank 1), one GPU per rank: device transport nccl"

# A rank without a GPU among ranks with one: every rank stops, naming it.
if env MOETRON_TEST_GPU_UUIDS="GPU-a;" timeout 60 "${MPI_RUN[@]}" 2 "$MOETRON" "${args[@]}" --plan pp=2 \
    --out "$WORK/none.h5" >"$WORK/log" 2>&1; then
  fail "a rank without a GPU was accepted"
fi
grep -q "rank 1 on host $host sees no GPU" "$WORK/log" || { cat "$WORK/log"; fail "the error does not name rank 1"; }

# Rank 0 has room for every plan, rank 1 (100 MiB) only for tp=2,ep=1 (its ranks need 98.4 MiB,
# mostly activations; every other plan more than 102 MiB): alone, rank 0 would choose dp=2 and
# rank 1 tp=2. Every rank runs the plan that fits both.
for memory in "1000000000;104857600" "104857600;1000000000"; do
  env MOETRON_TEST_MEMORY_PER_RANK="$memory" timeout 120 "${MPI_RUN[@]}" 2 "$MOETRON" "${args[@]}" --plan auto \
    --out "$WORK/auto.h5" >"$WORK/log" 2>&1 || { cat "$WORK/log"; fail "--plan auto with memory '$memory' failed"; }
  [[ "$(plan_of "$WORK/auto.h5")" == "pp=1,tp=2,dp=1,ep=1" ]] || fail "memory '$memory': plan $(plan_of "$WORK/auto.h5")"
done
# With room for every plan, the predictor decides: every rank runs the plan rank 0 ranked first,
# and rank 0 logs the ranking and why the best wins.
env MOETRON_TEST_MEMORY_PER_RANK="1000000000" "${MPI_RUN[@]}" 2 "$MOETRON" "${args[@]}" --plan auto \
  --out "$WORK/roomy.h5" >"$WORK/log" 2>&1 || { cat "$WORK/log"; fail "--plan auto with room failed"; }
best=$(sed -n 's/.*info rank 0\]   #1 \([^:]*\): .*/\1/p' "$WORK/log")
[[ -n "$best" && "$(plan_of "$WORK/roomy.h5")" == "$best" ]] ||
  { cat "$WORK/log"; fail "with room: ran $(plan_of "$WORK/roomy.h5"), the predictor's first is '$best'"; }
grep -q "info rank 0\] --plan auto: $best wins: " "$WORK/log" || { cat "$WORK/log"; fail "no explanation"; }
# The results file keeps every prediction beside the run: the chosen plan first, five in all.
chosen=$(h5dump -a /predictions/chosen "$WORK/roomy.h5" | sed -n 's/^ *(0): "\(.*\)"$/\1/p')
[[ "$chosen" == "$best" ]] || fail "/predictions@chosen is '$chosen', the run's plan '$best'"
ranked=$(h5dump -d /predictions/plan "$WORK/roomy.h5")
grep -q "(0): \"$best\"" <<<"$ranked" || { echo "$ranked"; fail "/predictions/plan does not start with $best"; }

# Nothing fits rank 0: every rank exits non-zero with rank 0's message, within the timeout.
set +e
env MOETRON_TEST_MEMORY_PER_RANK="1;1000000000" timeout 60 "${MPI_RUN[@]}" 2 "$MOETRON" "${args[@]}" --plan auto \
  --out "$WORK/none.h5" >"$WORK/log" 2>&1
rc=$?
set -e
(( rc != 0 && rc != 124 )) || { cat "$WORK/log"; fail "exit status $rc (124: it hung)"; }
grep -q "error: --plan auto: no plan fits on 2 ranks; .* but a rank has 1.00 B (MOETRON_TEST_MEMORY_PER_RANK)" "$WORK/log" ||
  { cat "$WORK/log"; fail "rank 0's message is missing"; }
[[ ! -e "$WORK/none.h5" ]] || fail "a results file was written"

# CPU ranks take their share of the cores their node's ranks may use (the union of their
# affinities), and the predictions have ranks sharing cores take turns: two ranks held to one
# core (taskset) compute single-threaded and the predictor prices them as two ranks a device; on
# two cores each has one of its own. MOETRON_CPU_THREADS replaces the share.
sharing_of() { h5dump -a /predictions/ranks_per_device "$1" | sed -n 's/^ *(0): \(.*\)$/\1/p'; }
expect_sharing() {  # expect_sharing CORES THREADS_ENV LOG_LINE RANKS_PER_DEVICE
  env ${2:+MOETRON_CPU_THREADS=$2} taskset -c "$1" "${MPI_RUN[@]}" 2 --bind-to none "$MOETRON" "${args[@]}" --plan tp=2 \
    --out "$WORK/share.h5" >"$WORK/log" 2>&1 || { cat "$WORK/log"; fail "2 ranks on cores $1 failed"; }
  grep -qF "info rank 0] cpu backend: $3" "$WORK/log" || { cat "$WORK/log"; fail "cores $1: no line 'cpu backend: $3'"; }
  [[ "$(sharing_of "$WORK/share.h5")" == "$4" ]] ||
    fail "cores $1, MOETRON_CPU_THREADS '$2': /predictions@ranks_per_device $(sharing_of "$WORK/share.h5"), expected $4"
}
expect_sharing 0 "" "1 thread(s) a rank, 2 rank(s) on 1 cores of this node" 2
expect_sharing 0 3 "3 thread(s) a rank, 2 rank(s) on 1 cores of this node (MOETRON_CPU_THREADS)" 6
if (( $(nproc) >= 2 )); then
  expect_sharing 0,1 "" "1 thread(s) a rank, 2 rank(s) on 2 cores of this node" 1
fi
expect_exit_1 cpu_threads "MOETRON_CPU_THREADS: 'two' is not a positive number of threads" \
  env MOETRON_CPU_THREADS=two "$MOETRON" "${args[@]}" --out "$WORK/threads.h5"
echo "ok: binding lines, one plan for every rank, CPU ranks' cores"
