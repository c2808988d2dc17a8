#!/usr/bin/env bash
# The rule that keeps programmatic dependent launch correct (docs/design-notes.md, "Kernel
# launches on the device"): every kernel in kernels/ calls pdl_enter() as its first statement,
# and none is launched with <<<...>>> (launch() sets the attribute and checks the call). The one
# reviewed exception, dense_gemv_kernel (it reads weights before the wait and triggers its
# dependents late: kernels/dense_gemv.cu), must call pdl_wait() and pdl_trigger() once each,
# and no other kernel may call either half on its own.
set -euo pipefail
src=${MOETRON_SOURCE_DIR:?}
python3 - "$src/kernels" <<'PY'
import glob, re, sys
SPLIT_PDL = {"dense_gemv_kernel"}  # reviewed: see kernels/dense_gemv.cu's file comment
bad = []
for path in sorted(glob.glob(sys.argv[1] + "/*.cu") + glob.glob(sys.argv[1] + "/*.cuh")):
    text = open(path).read()
    for m in re.finditer(r"__global__", text):
        name = next(n for n in re.findall(r"(\w+)\s*\(", text[m.end():text.index("{", m.end())])
                    if n != "__launch_bounds__")
        body = text[text.index("{", m.end()) + 1:]
        # The kernel's own body: up to the brace that closes the one opened above.
        depth, end = 1, 0
        while depth:
            depth += {"{": 1, "}": -1}.get(body[end], 0)
            end += 1
        body = body[:end]
        first = body.strip().split("\n", 1)[0].strip()
        if name in SPLIT_PDL:
            for half in ("pdl_wait();", "pdl_trigger();"):
                if body.count(half) != 1:
                    bad.append(f"{path}: kernel {name} must call {half[:-1]} exactly once")
            if "pdl_enter()" in body:
                bad.append(f"{path}: kernel {name} splits PDL and must not call pdl_enter()")
        elif not first.startswith("pdl_enter();"):
            bad.append(f"{path}: kernel {name} does not start with pdl_enter() (first: '{first}')")
        elif "pdl_wait()" in body or "pdl_trigger()" in body:
            bad.append(f"{path}: kernel {name} calls a half of pdl_enter(); only {sorted(SPLIT_PDL)} may")
    for n, line in enumerate(text.split("\n"), 1):
        if "<<<" in line and not line.strip().startswith("//"):
            bad.append(f"{path}:{n}: a <<<...>>> launch; use launch() from common.cuh")
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("ok: every kernel enters through pdl_enter() and launches through launch()")
PY
