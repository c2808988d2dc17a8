#!/usr/bin/env bash
# `moetron run` on every family's fixture reproduces Hugging Face's greedy tokens and logits.
source "$(dirname "$0")/common.bash"
for family in mixtral qwen2_moe olmoe qwen3_moe; do
  fixture_prompts "$FIXTURES/$family/reference.json" "$WORK/$family.jsonl"
  "$MOETRON" run --model "$FIXTURES/$family" --prompts "$WORK/$family.jsonl" --out "$WORK/$family.h5" \
    --backend cpu --ignore-eos --save-logits --log-level warn
  "$COMPARE_RESULTS" --hf-reference "$FIXTURES/$family/reference.json" "$WORK/$family.h5" --rtol 1e-4 \
    || fail "$family does not match Hugging Face"
done
# A config transformers loads and runs loads here too: a tiny checkpoint keeping its family's
# real EOS ids (a list, outside its vocabulary of 256) runs, with one warning naming the field
# (rank 0 only), and gives the same tokens and logits.
mkdir -p "$WORK/real-eos"
ln -s "$FIXTURES/olmoe/model.safetensors" "$WORK/real-eos/model.safetensors"
python3 - "$FIXTURES/olmoe/config.json" "$WORK/real-eos/config.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["eos_token_id"] = [50279, 100257]
json.dump(config, open(sys.argv[2], "w"))
PY
mpi 2 "$MOETRON" run --model "$WORK/real-eos" --prompts "$WORK/olmoe.jsonl" --out "$WORK/real-eos.h5" \
  --backend cpu --ignore-eos --save-logits --log-level warn --plan tp=2 2>"$WORK/real-eos.log" ||
  fail "a config with EOS ids outside the vocabulary did not run: $(cat "$WORK/real-eos.log")"
[ "$(grep -c "warn.*config.json: field 'eos_token_id' has 50279, outside the vocabulary \[0, 256)" \
      "$WORK/real-eos.log")" -eq 1 ] || fail "no single warning naming eos_token_id: $(cat "$WORK/real-eos.log")"
"$COMPARE_RESULTS" "$WORK/real-eos.h5" "$WORK/olmoe.h5" --rtol 1e-5 || fail "the EOS ids changed the run"
echo "all families match Hugging Face"
