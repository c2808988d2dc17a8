#!/usr/bin/env bash
# `moetron model make` and `model info` for every family, and clear failures for bad options.
# Env (set by ctest): MOETRON = the binary, MOETRON_SOURCE_DIR. Exit 77 = skip.
source "$(dirname "$0")/common.bash"  # fail, expect_failure, WORK
work=$WORK

for family in mixtral qwen2_moe olmoe qwen3_moe; do
  out="$work/$family"
  "$MOETRON" model make --family "$family" --out "$out" --seed 7 >"$work/make.txt"
  grep -qF "$family" "$work/make.txt" || fail "make did not report the family: $(cat "$work/make.txt")"
  [[ -f "$out/config.json" && -f "$out/model.safetensors" ]] || fail "$family: checkpoint files missing"
  ls "$out" | grep -q '\.tmp\.' && fail "$family: temp files left behind"
  "$MOETRON" model info --model "$out" >"$work/info.txt"
  for needle in "family               $family" "parameters" "active per token" "every expected tensor present"; do
    grep -qF "$needle" "$work/info.txt" || fail "$family info lacks '$needle': $(cat "$work/info.txt")"
  done
  # The fixture written by transformers describes the same model.
  "$MOETRON" model info --model "$MOETRON_SOURCE_DIR/tests/fixtures/$family" >"$work/fixture_info.txt"
  diff <(sed 1d "$work/info.txt" | grep -v '^weights') <(sed 1d "$work/fixture_info.txt" | grep -v '^weights') \
    || fail "$family: made checkpoint and HF fixture describe different models"
done

# Same seed -> identical bytes; --set edits; sharding.
"$MOETRON" model make --family olmoe --out "$work/again" --seed 7 >/dev/null
cmp -s "$work/olmoe/model.safetensors" "$work/again/model.safetensors" || fail "same seed gave different weights"
"$MOETRON" model make --family qwen2_moe --set hidden_size=128 --set 'mlp_only_layers=[0]' --dtype f32 \
  --max-shard-size 500kB --out "$work/edited" >/dev/null
[[ -f "$work/edited/model.safetensors.index.json" ]] || fail "--max-shard-size did not shard"
"$MOETRON" model info --model "$work/edited" >"$work/info.txt"
grep -qF "vocab / hidden       256 / 128" "$work/info.txt" || fail "--set hidden_size not applied: $(cat "$work/info.txt")"
grep -qF "(3 MoE, 1 dense)" "$work/info.txt" || fail "--set mlp_only_layers not applied"
grep -qF "(sharded)" "$work/info.txt" || fail "info did not report sharding"

# Help and errors.
"$MOETRON" model make --help | grep -F -- "--max-shard-size" >/dev/null || fail "make --help lacks options"
"$MOETRON" model info --help | grep -F -- "--model" >/dev/null || fail "info --help lacks options"
expect_failure "--bogus" model make --family olmoe --out "$work/x" --bogus
expect_failure "--out" model make --family olmoe
expect_failure "--family" model make --out "$work/x"
expect_failure "llama" model make --family llama --out "$work/x"
expect_failure "unknown preset" model make --family olmoe --preset mixtral-8x7b --out "$work/x"
expect_failure "--seed" model make --family olmoe --seed -3 --out "$work/x"
expect_failure "--dtype" model make --family olmoe --dtype int8 --out "$work/x"
expect_failure "--max-shard-size" model make --family olmoe --max-shard-size lots --out "$work/x"
expect_failure "num_key_value_heads" model make --family olmoe --set num_key_value_heads=3 --out "$work/x"
expect_failure "key=value" model make --family olmoe --set hidden_size --out "$work/x"
expect_failure "config.json" model info --model "$work/does-not-exist"
expect_failure "--model" model info
expect_failure "unknown subcommand" model frobnicate
[[ ! -e "$work/x" || -z "$(ls -A "$work/x")" ]] || fail "a failed make left files in its output folder"
echo "model_cli: ok"
