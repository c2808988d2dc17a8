#!/usr/bin/env python3
"""Hugging Face transformers' decode and prefill rates for a model shape, for comparison with
Moetron in the same run (perf/bench.py runs it).

The model is the checkpoint's config.json with random bf16 weights made on the GPU (both engines
read the same shape; for checkpoints on disk pass --weights to load them). Decode rate follows
the method in the CUDA issue: time generate() of N new tokens and of 1 new token with the same
prompt batch; the difference is N-1 decode steps. Prefill rate: prompt tokens over the
1-token generate() time. Prints one JSON line per batch size.
"""
import argparse, json, time
import torch
from transformers import AutoConfig, AutoModelForCausalLM


def timed(fn, reps):
    torch.cuda.synchronize()
    best = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best.append(time.perf_counter() - t)
    best.sort()
    return best[len(best) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="directory with config.json")
    ap.add_argument("--weights", action="store_true", help="load the checkpoint's weights")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    if args.weights:
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16, device_map="cuda")
    else:
        cfg = AutoConfig.from_pretrained(args.model)
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.eval()
    vocab = model.config.vocab_size
    g = torch.Generator(device="cuda").manual_seed(0)
    for b in [int(x) for x in args.batches.split(",")]:
        ids = torch.randint(3, vocab, (b, args.prompt), device="cuda", generator=g)
        common = dict(do_sample=False, min_new_tokens=None, pad_token_id=0, eos_token_id=None)
        try:
            with torch.no_grad():
                model.generate(ids, max_new_tokens=2, **common)  # warm-up
                t1 = timed(lambda: model.generate(ids, max_new_tokens=1, **common), args.reps)
                tn = timed(lambda: model.generate(ids, max_new_tokens=args.new_tokens, **common), args.reps)
        except torch.OutOfMemoryError:
            print(json.dumps(dict(engine="hf", batch=b, error="out of memory")), flush=True)
            torch.cuda.empty_cache()
            continue
        step = (tn - t1) / (args.new_tokens - 1)
        print(json.dumps(dict(engine="hf", batch=b, prompt=args.prompt, decode_step_s=step,
                              decode_tok_s=b / step, prefill_tok_s=b * args.prompt / t1)), flush=True)


if __name__ == "__main__":
    main()
