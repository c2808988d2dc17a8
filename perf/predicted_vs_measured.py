#!/usr/bin/env python3
"""Predicted against measured, from `moetron run` results files (issue 12's check of the predictor):

  perf/predicted_vs_measured.py RESULTS.h5... --out DIR

Each results file holds the predictor's expectations for the plan that ran (/predictions, chosen
plan's row) and what the run measured (/steps, /requests). For each file: the median decode step
at the batch size the prediction assumed (the nearest measured batch), and the mean time to first
token. Draws DIR/decode_step.png and DIR/ttft.png (predicted on x, measured on y, the diagonal
y = x: points above it are runs slower than predicted, as an upper-bound predictor wants) and
writes DIR/predicted_vs_measured.csv, with the chosen plan's ceiling decode step (the bound no run
beats, `ceiling_step_s`; nan in files written before it was recorded). Files without /predictions are skipped with a message.
"""
import argparse, csv, os, sys

import h5py
import numpy as np


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def plan_factor(plan, name):
    """The value of `name` (pp, tp, dp, ep) in a plan written "pp=1,tp=2,dp=2,ep=2"; 1 if absent."""
    for part in plan.split(","):
        k, _, v = part.partition("=")
        if k.strip() == name:
            return int(v)
    return 1


def one_file(path):
    with h5py.File(path, "r") as f:
        if "predictions" not in f:
            print(f"{path}: no /predictions (made before predictions were recorded): skipped", file=sys.stderr)
            return None
        chosen = text(f["predictions"].attrs["chosen"])
        plans = [text(p) for p in f["predictions/plan"][()]]
        if chosen not in plans:
            print(f"{path}: chosen plan {chosen} not among the predictions: skipped", file=sys.stderr)
            return None
        i = plans.index(chosen)
        batch = int(f["predictions/batch"][i])
        predicted_step = float(f["predictions/decode_step_s"][i])
        predicted_ttft = float(f["predictions/ttft_s"][i])
        sizes = f["steps/batch_size"][()]
        prefill = f["steps/is_prefill"][()].astype(bool)
        seconds = f["steps/seconds"][()]
        decode_sizes = sizes[~prefill]
        if decode_sizes.size == 0:
            print(f"{path}: no decode steps: skipped", file=sys.stderr)
            return None
        # /steps/batch_size counts every data-parallel replica's sequences; the prediction's
        # batch is one replica's.
        replicas = plan_factor(chosen, "dp")
        nearest = decode_sizes[np.argmin(np.abs(decode_sizes - batch * replicas))]
        measured_step = float(np.median(seconds[~prefill][decode_sizes == nearest]))
        measured_ttft = float(np.mean(f["requests/ttft_s"][()]))
        # The bound no run beats (absent from files written before it was priced: nan).
        ceiling = f["predictions/ceiling_decode_step_s"][i] if "predictions/ceiling_decode_step_s" in f else np.nan
        return dict(file=path, plan=chosen, batch=batch, measured_batch=int(nearest) // replicas,
                    predicted_step_s=predicted_step, measured_step_s=measured_step,
                    ceiling_step_s=float(ceiling),
                    predicted_ttft_s=predicted_ttft, measured_ttft_s=measured_ttft,
                    predicted_tps=float(f["predictions/output_tokens_per_s"][i]),
                    measured_tps=float(f["summary"].attrs["output_tokens_per_s"]))


def scatter(rows, key, label, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = np.array([r[f"predicted_{key}"] for r in rows]) * 1e3
    y = np.array([r[f"measured_{key}"] for r in rows]) * 1e3
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(x, y, label="estimate")
    for r, xi, yi in zip(rows, x, y):
        ax.annotate(r["plan"], (xi, yi), fontsize=7)
    hi = max(x.max(), y.max()) * 1.1
    # The decode step's ceiling beside its estimate (files that record it): left of the diagonal
    # wherever it holds.
    ceiling = np.array([r.get(f"ceiling_{key}", np.nan) for r in rows]) * 1e3
    if np.isfinite(ceiling).any():
        ax.scatter(ceiling, y, marker="^", label="ceiling (no run beats it)")
    ax.plot([0, hi], [0, hi], "k--", linewidth=1, label="measured = predicted")
    ax.set_xlabel(f"predicted {label} (ms)")
    ax.set_ylabel(f"measured {label} (ms)")
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = [r for r in (one_file(p) for p in a.results) if r]
    if not rows:
        sys.exit("predicted_vs_measured.py: no results file holds predictions")
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "predicted_vs_measured.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    scatter(rows, "step_s", "decode step", os.path.join(a.out, "decode_step.png"))
    scatter(rows, "ttft_s", "time to first token", os.path.join(a.out, "ttft.png"))
    for r in rows:
        print(f"{r['plan']}: decode step predicted {r['predicted_step_s'] * 1e3:.3f} ms, measured "
              f"{r['measured_step_s'] * 1e3:.3f} ms (batch {r['measured_batch']}); TTFT predicted "
              f"{r['predicted_ttft_s'] * 1e3:.3f} ms, measured {r['measured_ttft_s'] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
