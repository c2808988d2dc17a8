#!/usr/bin/env bash
# The rule that keeps programmatic dependent launch correct (docs/design-notes.md, "Kernel
# launches on the device"): every kernel in kernels/ calls pdl_enter() as its first statement,
# and none is launched with <<<...>>> (launch() sets the attribute and checks the call).
set -euo pipefail
src=${MOETRON_SOURCE_DIR:?}
python3 - "$src/kernels" <<'PY'
import glob, re, sys
bad = []
for path in sorted(glob.glob(sys.argv[1] + "/*.cu") + glob.glob(sys.argv[1] + "/*.cuh")):
    text = open(path).read()
    for m in re.finditer(r"__global__", text):
        body = text[text.index("{", m.end()) + 1:]
        first = body.strip().split("\n", 1)[0].strip()
        if not first.startswith("pdl_enter();"):
            name = re.search(r"(\w+)\s*\(", text[m.end():]).group(1)
            bad.append(f"{path}: kernel {name} does not start with pdl_enter() (first: '{first}')")
    for n, line in enumerate(text.split("\n"), 1):
        if "<<<" in line and not line.strip().startswith("//"):
            bad.append(f"{path}:{n}: a <<<...>>> launch; use launch() from common.cuh")
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("ok: every kernel enters through pdl_enter() and launches through launch()")
PY
