# Re-predicts section (a), one device, of a perf/validate_predictor.py file from the profiles
# beside it (FAMILY-PRESET-profile-1r-cuda.h5) with another build's `moetron plan`, on any machine:
#   python3 perf/results/twentieth/repredict_single.py BUILD/moetron perf/predictor_h200_fifteenth/validation-2-gap-remeasured.h5
# Predictions are deterministic given a profile, so a pricing change is judged against the same
# measurements (work files under /tmp/rp). Workload as validate_predictor.py's full mode.
import os; os.makedirs("/tmp/rp", exist_ok=True)
import h5py, subprocess, sys, os, numpy as np
M, V = sys.argv[1], sys.argv[2]
D = os.path.dirname(V)
shapes = {"OLMoE-1B-7B": ("olmoe", "olmoe-1b-7b"), "Qwen1.5-MoE-A2.7B": ("qwen2_moe", "qwen1.5-moe-a2.7b"),
          "Mixtral-8x7B": ("mixtral", "mixtral-8x7b")}
s = lambda a: [x.decode() if isinstance(x, bytes) else x for x in a]
g = h5py.File(V)['single']
rows = list(zip(s(g['shape'][()]), s(g['label'][()]), g['measured_s'][()], g['predicted_s'][()]))
batches = [256, 64, 16, 4, 1]
errs = []; ub = 0
for shape, label, meas, old in rows:
    fam, pre = shapes[shape]; mdir = f"/tmp/rp/m-{fam}"
    if not os.path.exists(mdir + "/config.json"):
        subprocess.run([M, "model", "make", "--family", fam, "--preset", pre, "--config-only", "--out", mdir, "--set",
                        "num_hidden_layers=2", "--set", "max_position_embeddings=8192"], check=True, capture_output=True)
    prof = f"{D}/{fam}-{pre}-profile-1r-cuda.h5"
    if label.startswith("decode"):
        b = int(label.split()[-1]); j = batches.index(b); out_t = 2 * j * 6 + 6 + 1
        args = ["--requests", b, "--prompt-tokens", 64, "--output-tokens", out_t, "--max-batch", b, "--max-batch-tokens", 16384]; kind = "decode"
    else:
        L = int(label.split()[1]); args = ["--requests", 1, "--prompt-tokens", L, "--output-tokens", 1, "--max-batch", 1, "--max-batch-tokens", L]; kind = "prefill"
    out = "/tmp/rp/a.h5"
    subprocess.run([M, "plan", "--model", mdir, "--profile", prof, "--hardware", "h200", "--ranks", "1", "--ranks-per-node", "1",
                    *map(str, args), "--top", "1", "--out", out], check=True, capture_output=True)
    h = h5py.File(out); cols = h[f'plans/{kind}_parts'].attrs['columns'].split(',')
    names = s(h['plans/plan'][()]); r = dict(zip(cols, h[f'plans/{kind}_parts'][()][names.index("pp=1,tp=1,dp=1,ep=1")]))
    pred = sum(v for c, v in r.items() if c not in ("imbalance_s", "emulation_s"))
    e = pred / meas - 1; errs.append(abs(e)); ub += pred <= meas
    print(f"{shape:18} {label:20} old {old*1e3:6.3f} new {pred*1e3:6.3f} meas {meas*1e3:6.3f} err {e*100:+6.1f}%")
print(f"median {np.median(errs)*100:.1f}% worst {max(errs)*100:.1f}% upper bounds {ub}/{len(rows)}")
