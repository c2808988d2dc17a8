#!/usr/bin/env python3
"""Build small random MoE checkpoints with Hugging Face's own classes and record
HF's float32 reference (last-position logits and a greedy continuation).

Runs on the GPU machine (python3 with torch + transformers). Output, one folder per family:
  <out>/<family>/config.json, model.safetensors   (bf16 weights, as save_pretrained writes them)
  <out>/<family>/reference.json                   (prompts, greedy tokens, float32 logits)

The reference is computed on the CPU in float32 from exactly the bf16 weights that were saved,
with eager attention, by re-running the full sequence each step (no KV cache) so that nothing
but the model's own math is in it.
"""
import argparse, json, math, os, sys
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

VOCAB = 256
COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6,
              rope_theta=10000.0, bos_token_id=1, eos_token_id=2, pad_token_id=0)

FAMILIES = {
    # Mixtral: plain top-2 routing with renormalisation.
    "mixtral": dict(model_type="mixtral", intermediate_size=48, num_local_experts=8,
                    num_experts_per_tok=2, rope_theta=1e6),
    # Qwen2-MoE: qkv bias, shared expert with sigmoid gate, a dense layer via mlp_only_layers.
    "qwen2_moe": dict(model_type="qwen2_moe", intermediate_size=96, moe_intermediate_size=32,
                      shared_expert_intermediate_size=80, num_experts=8, num_experts_per_tok=4,
                      norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[2],
                      tie_word_embeddings=False),
    # OLMoE: QK-norm over the whole projection, no renormalisation of top-k.
    "olmoe": dict(model_type="olmoe", intermediate_size=32, num_experts=8, num_experts_per_tok=2,
                  norm_topk_prob=False),
    # Qwen3-MoE: per-head QK-norm, head_dim != hidden/heads, renormalised top-k, tied embeddings.
    "qwen3_moe": dict(model_type="qwen3_moe", intermediate_size=96, moe_intermediate_size=32,
                      num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, head_dim=32,
                      decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=True),
}

PROMPTS = [[7], [3, 17, 42, 99, 5], [11, 200, 13, 77, 31, 9, 150, 64, 2 + 1, 250, 128, 45, 8, 19, 230, 101, 66]]
NEW_TOKENS = 8


def make_config(family):
    kw = dict(COMMON)
    kw.update(FAMILIES[family])
    model_type = kw.pop("model_type")
    return AutoConfig.for_model(model_type, **kw)


def reinit(model, seed):
    """HF's default init (std 0.02) gives near-uniform routing and near-tied logits; scale
    weights so that routing and greedy choices are decisive and a tie cannot flip them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                scale = 2.0 if ("gate" in name and "proj" not in name) else 1.0  # router
                p.copy_(scale * torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    print("transformers", transformers.__version__, "torch", torch.__version__)
    for i, family in enumerate(FAMILIES):
        cfg = make_config(family)
        try:
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="eager")
        except TypeError:
            model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32, attn_implementation="eager")
        reinit(model, args.seed + i)
        model = model.to(torch.bfloat16)
        d = os.path.join(args.out, family)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        # The reference: the saved checkpoint loaded the way a user loads it, in float32 (the
        # bf16 weights upcast exactly). Reloading matters: casting the in-memory model to bf16
        # and back would also round the rotary inv_freq buffer to bf16, which HF never does
        # when it loads a checkpoint.
        ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        for name, buf in ref.named_buffers():
            if name.endswith("inv_freq"):
                assert buf.dtype == torch.float32, name
        prompts = []
        for prompt in PROMPTS:
            ids = list(prompt)
            step_logits, min_margin = [], float("inf")
            with torch.no_grad():
                for _ in range(NEW_TOKENS):
                    out = ref(input_ids=torch.tensor([ids]), use_cache=False)
                    last = out.logits[0, -1].float()
                    top2 = torch.topk(last, 2).values
                    min_margin = min(min_margin, float(top2[0] - top2[1]))
                    step_logits.append([float(x) for x in last])
                    ids.append(int(torch.argmax(last)))
            prompts.append(dict(prompt_tokens=list(prompt), greedy_tokens=ids[len(prompt):],
                                step_logits=step_logits, min_top2_margin=min_margin))
            print(f"{family}: prompt len {len(prompt)} -> {ids[len(prompt):]} margin {min_margin:.4f}")
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(dict(family=family, transformers=transformers.__version__,
                           note="step_logits[s] are the float32 logits that chose greedy_tokens[s]",
                           prompts=prompts), f)
        from safetensors import safe_open
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            names = sorted(f.keys())
        print(family, "saved tensors:", [n for n in names if ".layers.0." in n or "layers" not in n])
        print(open(os.path.join(d, "config.json")).read())


if __name__ == "__main__":
    main()
