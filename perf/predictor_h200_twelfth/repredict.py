# Re-predicts the emulated points (section b) of a validation file from the profiles beside it
# (the 01:12 call's: FAMILY-PRESET-profile-1r-cuda.h5) with another build's `moetron plan`:
#   python3 perf/predictor_h200_twelfth/repredict.py BUILD/moetron [VALIDATION.h5]
# Predictions are deterministic given a profile, so a pricing change is judged against the same
# measurements. Workload as perf/validate_predictor.py's full mode (2-layer shapes).
import h5py, subprocess, sys, os, numpy as np
M = sys.argv[1]
V = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), 'validation-1-kernel-fix.h5')
D = os.path.dirname(V)
shapes = {"OLMoE-1B-7B": ("olmoe", "olmoe-1b-7b"), "Qwen1.5-MoE-A2.7B": ("qwen2_moe", "qwen1.5-moe-a2.7b"),
          "Mixtral-8x7B": ("mixtral", "mixtral-8x7b")}
f = h5py.File(V)
s = lambda a: [x.decode() if isinstance(x, bytes) else x for x in a]
g = f['emulated']; rows = zip(s(g['shape'][()]), g['world'][()], s(g['label'][()]), g['measured_s'][()], g['predicted_s'][()])
cache = {}; errs = []; upper = 0
for shape, world, label, meas, pred_old in rows:
    fam, pre = shapes[shape]; mdir = f"/tmp/rp-{fam}"
    if not os.path.exists(mdir + "/config.json"):
        subprocess.run([M, "model", "make", "--family", fam, "--preset", pre, "--config-only", "--out", mdir, "--set",
                        "num_hidden_layers=2", "--set", "max_position_embeddings=8192"], check=True, capture_output=True)
    key = (fam, world)
    if key not in cache:
        n = max(4 * world, 32); out = f"/tmp/rp-{fam}-{world}.h5"
        subprocess.run([M, "plan", "--model", mdir, "--profile", f"{D}/{fam}-{pre}-profile-1r-cuda.h5", "--hardware", "h200",
                        "--ranks", str(world), "--ranks-per-node", str(min(world, 8)), "--requests", str(n), "--prompt-tokens", "64",
                        "--output-tokens", "12", "--max-batch", str(n), "--max-batch-tokens", str(n * 64), "--top", "1", "--out", out],
                       check=True, capture_output=True)
        h = h5py.File(out); cols = h['plans/decode_parts'].attrs['columns'].split(',')
        cache[key] = {n: dict(zip(cols, r)) for n, r in zip(s(h['plans/plan'][()]), h['plans/decode_parts'][()])}
    p = cache[key][label]; pred = p['compute_s'] + p['kernel_overhead_s'] + p['emulation_s'] + p.get('host_s', 0)  # StepCost::emulated_rank_s
    e = pred / meas - 1; errs.append(abs(e)); upper += pred <= meas
    print(f"{shape:18} {world:3} {label:22} old {pred_old*1e3:6.3f} new {pred*1e3:6.3f} meas {meas*1e3:6.3f} err {e*100:+6.1f}%  "
          f"c {p['compute_s']*1e6:5.0f} o {p['kernel_overhead_s']*1e6:5.0f} e {p['emulation_s']*1e6:5.0f} h {p.get('host_s', 0)*1e6:4.0f}")
print(f"median {np.median(errs)*100:.1f}% worst {max(errs)*100:.1f}% upper bounds {upper}/{len(errs)}")
