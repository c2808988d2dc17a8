#!/usr/bin/env python3
"""Plots of an expert-load report (`moetron analyze RESULTS.h5 --out A.h5`).

    python3 perf/expert_plots.py A.h5 --out DIR

writes DIR/expert_heatmap.png (MoE layer x expert token-slots), DIR/ep_load.png (each
expert-parallel set's load, and each rank's measured expert tokens for parallel runs) and
DIR/load_over_time.png (each set's load per window of engine steps). perf/plots.py may import
`draw_all`. Needs python3-h5py and python3-matplotlib.
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def heatmap(f, out):
    tokens = f["/layers/tokens"][:]
    layers = f["/layers/index"][:]
    fig, ax = plt.subplots(figsize=(max(6, tokens.shape[1] * 0.15 + 2), max(3, len(layers) * 0.25 + 1.5)))
    im = ax.imshow(tokens, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("expert")
    ax.set_ylabel("MoE layer")
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([str(l) for l in layers])
    ax.set_title("routed token-slots per layer and expert")
    fig.colorbar(im, ax=ax, label="token-slots")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def ep_bars(f, out):
    ep = f["/ep"]
    tokens = ep["tokens"][:]
    panels = 2 if "/ranks/expert_tokens" in f else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.5), squeeze=False)
    ax = axes[0][0]
    ax.bar(range(len(tokens)), tokens)
    ax.set_xticks(range(len(tokens)))
    ax.axhline(tokens.mean(), color="k", linestyle="--", label="mean")
    ax.set_xlabel("expert-parallel set")
    ax.set_ylabel("token-slots")
    ax.set_title("load per EP set (%s); %.1f%% of expert time waits"
                 % (ep.attrs["plan"].decode() if isinstance(ep.attrs["plan"], bytes) else ep.attrs["plan"],
                    100 * ep.attrs["expert_wait_share"]), fontsize=9)
    ax.legend()
    if panels == 2:
        ax = axes[0][1]
        measured = f["/ranks/expert_tokens"][:]
        ax.bar(range(len(measured)), measured, label="measured")
        ax.set_xticks(range(len(measured)))
        ax.plot(range(len(measured)), f["/ranks/expected_tokens"][:], "k_", markersize=20, label="by its experts")
        ax.set_xlabel("MPI rank")
        ax.set_ylabel("token-slots computed")
        ax.set_title("per rank", fontsize=9)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def over_time(f, out):
    by_window = f["/ep/tokens_by_window"][:]
    steps = f["/ep/window_steps"][:]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if len(steps):
        x = (steps[:, 0] + steps[:, 1]) / 2.0
        for s in range(by_window.shape[1]):
            ax.plot(x, by_window[:, s], label="set %d" % s)
    ax.set_xlabel("engine step (window centre)")
    ax.set_ylabel("token-slots in the window")
    ax.set_title("load over time per EP set")
    if by_window.shape[1] <= 16:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def draw_all(analysis, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with h5py.File(analysis, "r") as f:
        if "/layers/tokens" not in f or "/ep" not in f:
            sys.exit("%s: not a `moetron analyze --out` file (no /layers/tokens or /ep)" % analysis)
        paths = [os.path.join(out_dir, n) for n in ("expert_heatmap.png", "ep_load.png", "load_over_time.png")]
        heatmap(f, paths[0])
        ep_bars(f, paths[1])
        over_time(f, paths[2])
    return paths


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("analysis", help="the file `moetron analyze --out` wrote")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    a = p.parse_args()
    for path in draw_all(a.analysis, a.out):
        print(path)


if __name__ == "__main__":
    main()
