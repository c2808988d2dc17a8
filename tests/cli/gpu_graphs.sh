#!/usr/bin/env bash
# On a GPU: decode steps replayed from CUDA graphs give the same tokens as running them eagerly,
# over batches that shrink through every bucket as requests finish; and the CUDA backend's
# greedy tokens on the HF fixtures' real-width twin agree with the CPU backend's.
source "$(dirname "$0")/common.bash"
command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || { echo "skip: no GPU"; exit 77; }
model=$WORK/olmoe-h512
# head_dim 64 (512 / 8): a width the CUDA attention kernels take.
"$MOETRON" model make --family olmoe --preset tiny --set hidden_size=512 --set num_attention_heads=8 \
  --set num_key_value_heads=4 --set intermediate_size=256 --set vocab_size=1024 --out "$model" --seed 3
python3 - "$WORK/prompts.jsonl" <<'PY'
import json, random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    for i in range(21):  # lengths differ so requests finish at different steps
        f.write(json.dumps({"prompt_tokens": [random.randrange(3, 1024) for _ in range(random.randrange(1, 40))],
                            "max_new_tokens": 4 + 3 * i}) + "\n")
PY
args=(run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cuda --ignore-eos --log-level info)
"$MOETRON" "${args[@]}" --out "$WORK/graphs.h5" 2>&1 | tee "$WORK/graphs.log"
grep -q "recorded the decode step" "$WORK/graphs.log" || fail "no decode graphs were recorded"
"$MOETRON" "${args[@]}" --no-graphs --out "$WORK/eager.h5"
"$COMPARE_RESULTS" "$WORK/graphs.h5" "$WORK/eager.h5" --no-logits || fail "graph replay differs from eager"
"$MOETRON" run --model "$model" --prompts "$WORK/prompts.jsonl" --backend cpu --ignore-eos \
  --log-level warn --out "$WORK/cpu.h5"
# bf16 on the GPU against float32 on the CPU, free-running greedy (one flip changes the rest of
# that request): most tokens must still agree.
"$COMPARE_RESULTS" "$WORK/graphs.h5" "$WORK/cpu.h5" --min-agreement 0.5 || fail "cuda and cpu disagree"
echo "graph replay equals eager"
