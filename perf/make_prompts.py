#!/usr/bin/env python3
"""make_prompts.py OUT N PROMPT_LEN NEW_TOKENS [VOCAB] [SEED]: N random requests as JSON Lines."""
import json, random, sys
out, n, plen, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
vocab = int(sys.argv[5]) if len(sys.argv) > 5 else 32000
rng = random.Random(int(sys.argv[6]) if len(sys.argv) > 6 else 0)
with open(out, "w") as f:
    for i in range(n):
        f.write(json.dumps({"prompt_tokens": [rng.randrange(3, vocab) for _ in range(plen)],
                            "max_new_tokens": new}) + "\n")
