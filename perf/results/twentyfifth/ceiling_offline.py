# Prices the points of a perf/validate_predictor.py file, sections (a) one device and (b) emulated
# ranks, with another build's `moetron plan` from the profiles beside the file
# (FAMILY-PRESET-profile-1r-cuda.h5), and sets both predictions against the measurements: the
# estimate (the ranking's) and the ceiling (predictor.hpp, assumption 14: the bound no run beats).
#   /usr/bin/python3 perf/results/twentyfifth/ceiling_offline.py BUILD/moetron VALIDATION.h5
# Predictions are deterministic given a profile; the workloads are validate_predictor.py's full
# mode (2-layer shapes). Work files under /tmp/ceiling-offline.
import os, subprocess, sys
import h5py, numpy as np

M, V = sys.argv[1], sys.argv[2]
D, W = os.path.dirname(os.path.abspath(V)), "/tmp/ceiling-offline"
os.makedirs(W, exist_ok=True)
SHAPES = {"OLMoE-1B-7B": ("olmoe", "olmoe-1b-7b"), "Qwen1.5-MoE-A2.7B": ("qwen2_moe", "qwen1.5-moe-a2.7b"),
          "Mixtral-8x7B": ("mixtral", "mixtral-8x7b")}
BATCHES, STEPS = [256, 64, 16, 4, 1], 6  # validate_predictor.py's full mode
text = lambda a: [x.decode() if isinstance(x, bytes) else x for x in a]


def model_dir(shape):
    fam, pre = SHAPES[shape]
    d = f"{W}/m-{fam}"
    if not os.path.exists(d + "/config.json"):
        subprocess.run([M, "model", "make", "--family", fam, "--preset", pre, "--config-only", "--out", d, "--set",
                        "num_hidden_layers=2", "--set", "max_position_embeddings=8192"], check=True, capture_output=True)
    return d, f"{D}/{fam}-{pre}-profile-1r-cuda.h5"


def plan_parts(shape, ranks, args, out):
    d, profile = model_dir(shape)
    subprocess.run([M, "plan", "--model", d, "--profile", profile, "--hardware", "h200", "--ranks", str(ranks),
                    "--ranks-per-node", str(min(ranks, 8)), *map(str, args), "--top", "1", "--out", out],
                   check=True, capture_output=True)
    with h5py.File(out) as h:
        cols = h["plans/decode_parts"].attrs["columns"].split(",")
        names = text(h["plans/plan"][()])
        return {kind: {n: dict(zip(cols, r)) for n, r in zip(names, h[f"plans/{kind}_parts"][()])}
                for kind in ("decode", "prefill", "ceiling_decode", "ceiling_prefill")}


def total(p):  # StepCost::total_s
    return sum(v for c, v in p.items() if c not in ("imbalance_s", "emulation_s"))


def emulated(p):  # StepCost::emulated_rank_s
    return p["compute_s"] + p["kernel_overhead_s"] + p["emulation_s"] + p.get("host_s", 0)


def report(name, rows):
    est = np.array([r[1] / r[3] - 1 for r in rows])
    share = np.array([r[2] / r[3] for r in rows])  # ceiling time over measured: the share of the ceiling reached
    holds = sum(r[2] <= r[3] for r in rows)
    print(f"{name}: {len(rows)} points; estimate median |error| {np.median(abs(est)) * 100:.1f}%, worst "
          f"{abs(est).max() * 100:.1f}%, estimate >= measured throughput in {sum(est <= 0)}; ceiling holds in "
          f"{holds}/{len(rows)}; share of the ceiling reached median {np.median(share) * 100:.0f}%, "
          f"range {share.min() * 100:.0f}-{share.max() * 100:.0f}%")


f = h5py.File(V)
g = f["single"]
rows = []
for shape, label, meas in zip(text(g["shape"][()]), text(g["label"][()]), g["measured_s"][()]):
    if label.startswith("decode"):
        b = int(label.split()[-1])
        j = BATCHES.index(b)
        args, kind = ["--requests", b, "--prompt-tokens", 64, "--output-tokens", 2 * j * STEPS + STEPS + 1,
                      "--max-batch", b, "--max-batch-tokens", 16384], "decode"
    else:
        L = int(label.split()[1])
        args, kind = ["--requests", 1, "--prompt-tokens", L, "--output-tokens", 1, "--max-batch", 1,
                      "--max-batch-tokens", L], "prefill"
    parts = plan_parts(shape, 1, args, f"{W}/a.h5")
    est, ceil = total(parts[kind]["pp=1,tp=1,dp=1,ep=1"]), total(parts[f"ceiling_{kind}"]["pp=1,tp=1,dp=1,ep=1"])
    rows.append((f"{shape} {label}", est, ceil, meas))
    print(f"(a) {shape:18} {label:20} estimate {est * 1e3:7.3f} ceiling {ceil * 1e3:7.3f} measured {meas * 1e3:7.3f} ms"
          f"  reached {ceil / meas * 100:4.0f}%{'' if ceil <= meas else '  CEILING BROKEN'}")
single = rows

g = f["emulated"]
rows, cache = [], {}
for shape, world, label, meas in zip(text(g["shape"][()]), g["world"][()], text(g["label"][()]), g["measured_s"][()]):
    key = (shape, int(world))
    if key not in cache:
        n = max(4 * world, 32)
        cache[key] = plan_parts(shape, int(world), ["--requests", n, "--prompt-tokens", 64, "--output-tokens", 12,
                                                    "--max-batch", n, "--max-batch-tokens", n * 64],
                                f"{W}/b-{SHAPES[shape][0]}-{world}.h5")
    est, ceil = emulated(cache[key]["decode"][label]), emulated(cache[key]["ceiling_decode"][label])
    rows.append((f"{shape} {world} {label}", est, ceil, meas))
    print(f"(b) {shape:18} {world:3} {label:22} estimate {est * 1e3:7.3f} ceiling {ceil * 1e3:7.3f} measured "
          f"{meas * 1e3:7.3f} ms  reached {ceil / meas * 100:4.0f}%{'' if ceil <= meas else '  CEILING BROKEN'}")
report("(a) one device", single)
report("(b) emulated ranks", rows)
