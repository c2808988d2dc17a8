#!/usr/bin/env bash
# The memory-fit check of a plan counts what the backend will hold (issue 16): the cpu keeps
# weights in float32, twice their bf16 bytes, and every run adds a KV cache and activations. A
# plan that fits only the bf16 weights, or whose KV cache does not fit beside them, is refused
# before anything is loaded, naming --plan, each part and the one that does not fit; a run that
# fits still runs.
source "$(dirname "$0")/common.bash"
model=$FIXTURES/olmoe  # 281,536 parameters: 563,072 bytes in bf16, 1,126,144 in float32
echo '{"prompt_tokens": [1, 2, 3], "max_new_tokens": 2}' >"$WORK/p.jsonl"
run=(run --model "$model" --prompts "$WORK/p.jsonl" --backend cpu --log-level warn --out "$WORK/out.h5")

# refused NAME RANKS PATTERN ARGS...: exits 1 on RANKS ranks, every rank saying PATTERN, no results.
refused() {
  local name=$1 ranks=$2 pattern=$3 rc=0
  shift 3
  timeout 60 "${MPI_RUN[@]}" "$ranks" "$MOETRON" "${run[@]}" "$@" >"$WORK/$name.log" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ] || { cat "$WORK/$name.log"; fail "$name: exit $rc, expected a refusal"; }
  [ "$(grep -c -- "$pattern" "$WORK/$name.log")" -ge "$ranks" ] ||
    { cat "$WORK/$name.log"; fail "$name: not every one of $ranks rank(s) says '$pattern'"; }
  [ ! -e "$WORK/out.h5" ] || fail "$name: wrote results"
  echo "$name: $(grep -m1 -- "$pattern" "$WORK/$name.log")"
}

# Room for the bf16 weights, not for the float32 the cpu holds.
refused f32-weights 1 "error: --plan pp=1,tp=1,dp=1,ep=1: rank 0 needs .* (weights 1.07 MiB as float32 on the cpu backend, KV cache .* for 21 tokens, activations .*) but a rank has 781.25 KiB (--memory-per-rank): the weights alone do not fit" \
  --plan pp=1 --memory-per-rank 800000
# The same on two stages: every rank refuses with rank 0's message.
refused f32-weights-pp2 2 "error: --plan pp=2,tp=1,dp=1,ep=1: rank 1 needs .* the weights alone do not fit" \
  --plan pp=2 --memory-per-rank 400000
# 256 MiB hold the weights and activations (about 108 MiB) but not a KV cache of 200,000 tokens
# (1 KiB each in float32: 4 layers x K,V x 2 kv heads x 16).
refused big-kv-cache 1 "but a rank has 256.00 MiB (--memory-per-rank): the KV cache does not fit beside the weights and activations; use a smaller --kv-cache-tokens" \
  --memory-per-rank 268435456 --kv-cache-tokens 200000
refused auto-nothing-fits 1 "error: --plan auto: no plan fits on 1 rank; the one needing the least, --plan pp=1,tp=1,dp=1,ep=1: rank 0 needs" \
  --plan auto --memory-per-rank 800000

# What fits runs.
"$MOETRON" "${run[@]}" --memory-per-rank 268435456 --kv-cache-tokens 4096 || fail "a fitting run was refused"
[ -f "$WORK/out.h5" ] || fail "the fitting run wrote no results"
echo "ok: plans are refused by what the cpu backend holds; a fitting run passes"
