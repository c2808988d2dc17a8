#!/usr/bin/env python3
"""Random requests as JSON Lines.

  make_prompts.py OUT N PROMPT_LEN NEW_TOKENS [VOCAB] [SEED]
      N requests of PROMPT_LEN random tokens, each asking for NEW_TOKENS.
  make_prompts.py OUT --phases 256,128,64,32,8,1 --steps 8 --prompt 512 [--vocab V] [--seed S]
      One request per slot of the first phase; they finish in waves so that the decode batch
      runs `steps` steps at each listed size in turn (one run measures every batch size).
"""
import argparse, json, random, sys


def write(out, lengths, prompt, vocab, seed):
    rng = random.Random(seed)
    with open(out, "w") as f:
        for new in lengths:
            f.write(json.dumps({"prompt_tokens": [rng.randrange(3, vocab) for _ in range(prompt)],
                                "max_new_tokens": new}) + "\n")


if len(sys.argv) > 2 and sys.argv[2] == "--phases":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--phases", required=True)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sizes = [int(x) for x in a.phases.split(",")]
    assert sizes == sorted(sizes, reverse=True), "phases from the largest batch down"
    # Request i stays for as many phases as there are sizes > i (the largest phases end first);
    # the first token comes from prefill, so phase p ends after (p + 1) * steps + 1 tokens.
    lengths = []
    for i in range(sizes[0]):
        phases = sum(1 for s in sizes if s > i)
        lengths.append(phases * a.steps + 1)
    write(a.out, lengths, a.prompt, a.vocab, a.seed)
else:
    out, n, plen, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    vocab = int(sys.argv[5]) if len(sys.argv) > 5 else 32000
    write(out, [new] * n, plen, vocab, int(sys.argv[6]) if len(sys.argv) > 6 else 0)
