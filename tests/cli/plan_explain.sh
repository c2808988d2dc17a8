#!/usr/bin/env bash
# `moetron plan --explain PLAN`: the plan's decode and prefill steps op by op beside the ranking,
# their sums equal to the totals the prediction reports, sources from the profile's tables where
# it measured them; a plan that is not valid or does not fit ends the command naming --explain.
source "$(dirname "$0")/common.bash"

# sums_match FILE: each step's "sum of ops" line says what its "prediction" line says.
sums_match() {
  local predicted summed
  predicted=$(grep -E '^  prediction ' "$1" | sed 's/^  prediction *//')
  summed=$(grep -E '^  sum of ops ' "$1" | sed 's/^  sum of ops *//')
  [[ $(grep -cE '^  prediction ' "$1") -eq 2 ]] || fail "$1: not one totals line a step: $(cat "$1")"
  [[ "$predicted" == "$summed" ]] || fail "$1: the ops do not sum to the prediction: $predicted / $summed"
}

# The roofline (no profile): OLMoE on 16 ranks, the tp=8,dp=2 plan of issue 12.
"$MOETRON" model make --family olmoe --preset olmoe-1b-7b --config-only --out "$WORK/olmoe" \
  --set num_hidden_layers=2 --set max_position_embeddings=8192 >/dev/null
workload=(--requests 64 --prompt-tokens 64 --output-tokens 12 --max-batch 64 --max-batch-tokens 4096)
"$MOETRON" plan --model "$WORK/olmoe" --ranks 16 --ranks-per-node 8 "${workload[@]}" --top 3 \
  --explain pp=1,tp=8,dp=2,ep=1 >"$WORK/explain.txt"
for needle in " wins: " "explain   pp=1,tp=8,dp=2,ep=1" "--emulate-rank 15 --emulate-world 16" "decode step: 32 sequences a replica x 1 token(s), context 70" \
  "prefill step: 32 sequences a replica x 64 token(s)" "qkv gemm" "qk-norm row_sumsq" "tp all-reduce: attention out" \
  "emulated copy: tp all-reduce" "all-to-all: rows to the experts" "emulated copy: all-to-all rows" "pack_dispatch" \
  "expert call" "tp allgather: logits" "roofline, HBM-bound" "decode replayed as a CUDA graph"; do
  grep -qF -- "$needle" "$WORK/explain.txt" || fail "--explain output lacks '$needle': $(cat "$WORK/explain.txt")"
done
sums_match "$WORK/explain.txt"
# A pipeline plan: eager decode, the stages' own lines.
"$MOETRON" plan --model "$WORK/olmoe" --ranks 16 --ranks-per-node 8 "${workload[@]}" --explain pp=2,tp=4,dp=2,ep=2 \
  >"$WORK/pp.txt"
grep -qF "eager decode, launches overlapping kernels" "$WORK/pp.txt" || fail "pp=2 decode not eager: $(cat "$WORK/pp.txt")"
grep -qF "(not reported): compute + kernel gaps + emulation + host" "$WORK/pp.txt" || fail "pp=2: no other stage's line"
sums_match "$WORK/pp.txt"

# A profile measured on the CPU: the answers name its tables.
"$MOETRON" model make --family olmoe --out "$WORK/tiny" --seed 1 >/dev/null
"$MOETRON" bench --model "$WORK/tiny" --out "$WORK/tiny.h5" --backend cpu --quick >/dev/null 2>&1 \
  || fail "moetron bench --quick failed"
"$MOETRON" plan --model "$WORK/tiny" --profile "$WORK/tiny.h5" --hardware cpu --ranks 4 --ranks-per-node 4 \
  --requests 8 --prompt-tokens 16 --output-tokens 4 --explain tp=2,dp=2,ep=2 >"$WORK/profiled.txt"
for needle in "gemm [" "hbm_copy: bytes r+w" "memory_bound (mean of" "eager: one launch gap a kernel"; do
  grep -qF -- "$needle" "$WORK/profiled.txt" || fail "profiled --explain lacks '$needle': $(cat "$WORK/profiled.txt")"
done
sums_match "$WORK/profiled.txt"

# Refusals name --explain; nothing of the ranking is printed first.
olmoe=(plan --model "$WORK/olmoe" --ranks 16 --ranks-per-node 8)
expect_failure "--explain: unknown factor 'xp'" "${olmoe[@]}" --explain tp=16,xp=2
expect_failure "--explain pp=1,tp=8,dp=1,ep=1 has 8 ranks (pp x tp x dp), the cluster --ranks 16" "${olmoe[@]}" --explain tp=8
expect_failure "--explain pp=1,tp=1,dp=16,ep=3: ep=3 does not divide" "${olmoe[@]}" --explain dp=16,ep=3
expect_failure "--explain pp=1,tp=2,dp=8,ep=8 is not feasible on this cluster: stage 0 needs" \
  "${olmoe[@]}" --memory-per-rank 1GiB --explain tp=2,dp=8,ep=8
[[ ! -s "$WORK/out" ]] || fail "a refused --explain printed: $(cat "$WORK/out")"
"$MOETRON" plan --help | grep -F -- "--explain" >/dev/null || fail "plan --help lacks --explain"
echo "plan_explain: ok"
