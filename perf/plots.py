#!/usr/bin/python3
"""Serving figures from `moetron run` results files:

  perf/plots.py RESULTS.h5 [RESULTS.h5 ...] --out DIR

writes, each a PNG with labelled axes and units, one point (or line) per results file:
  throughput.png      output tokens/s against the mean decode batch and against the mean
                      concurrency (requests in flight, by Little's law: sum of e2e / run time)
  latency_cdf.png     distributions (CDFs) of TTFT, inter-token latency (every gap) and e2e
  latency_vs_load.png TTFT and ITL p50/p99 (the /summary attributes) against mean concurrency
and DIR/plots.json: for each PNG its axis labels and how many data points it plots, which the
CI test checks. Given several configurations (perf/study.py passes each run's, i.e. its factors
but the load), the load figures draw one line per configuration, never a line through runs of
different ones. Percentiles come from the results file (one definition: the engine's
analysis/percentiles.hpp), never recomputed here. Expert-load reports (`moetron analyze --out
A.h5`, recognised by their /layers/gini) may be given among the files: perf/expert_plots.py draws
their heatmap, per-set load and load over time, and those PNGs join the list.

Needs python3 with h5py, numpy and matplotlib (Debian: python3-h5py python3-numpy
python3-matplotlib, installed by `make deps`).
"""
import argparse, json, os, sys

import h5py
import matplotlib
matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt
import numpy as np


def load_run(path, series=None):
    """One results file as the numbers the figures need; `series` names its configuration."""
    with h5py.File(path, "r") as f:
        s = dict(f["/summary"].attrs)
        r = f["/requests"]
        times, offsets = r["token_times_s"][:], r["output_offsets"][:]
        steps = f["/steps"]
        decode = steps["is_prefill"][:] == 0
        batches = steps["batch_size"][:][decode]
        e2e = r["e2e_s"][:]
        return {
            "path": path,
            "label": os.path.splitext(os.path.basename(path))[0],
            "series": series,
            "summary": {k: float(v) for k, v in s.items()},
            "ttft_s": r["ttft_s"][:],
            "e2e_s": e2e,
            "itl_gaps_s": np.concatenate([np.diff(times[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
                                         + [np.zeros(0)]),
            "mean_decode_batch": float(batches.mean()) if batches.size else float("nan"),
            # Little's law: the time-averaged number of requests between arrival and completion.
            "mean_concurrency": float(e2e.sum() / s["total_seconds"]) if s["total_seconds"] > 0 else float("nan"),
        }


def cdf(ax, values, label):
    x = np.sort(values)
    ax.plot(x, np.arange(1, x.size + 1) / x.size, label=label, drawstyle="steps-post")
    return x.size


def save_figure(fig, axes, path, points, lines=None):
    """Writes the figure; returns what the CI test checks of it: data points, axis labels and,
    for the load figures, the configurations drawn (one line each)."""
    fig.savefig(path, dpi=100)
    plt.close(fig)
    entry = {"points": points, "xlabel": [a.get_xlabel() for a in axes], "ylabel": [a.get_ylabel() for a in axes]}
    if lines is not None:
        entry["configurations"] = lines
    return entry


def by_series(runs, key):
    """[(series label or None, its runs sorted by key)], in the order the series first appear."""
    groups = {}
    for r in runs:
        groups.setdefault(r["series"], []).append(r)
    return [(s, sorted(g, key=lambda r: r[key])) for s, g in groups.items()]


def legend_if_named(ax, groups):
    if any(s is not None for s, _ in groups):
        ax.legend(fontsize=7)


def throughput_figure(runs, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    points = 0
    for key, ax, xlabel in [("mean_decode_batch", axes[0], "mean decode batch (sequences per step)"),
                            ("mean_concurrency", axes[1], "mean concurrency (requests in flight)")]:
        groups = by_series(runs, key)
        for series, order in groups:
            x = [r[key] for r in order]
            y = [r["summary"]["output_tokens_per_s"] for r in order]
            ax.plot(x, y, "o-", label=series)
            if series is None:  # one configuration: name the points; else the legend names the lines
                for r, xi, yi in zip(order, x, y):
                    ax.annotate(r["label"], (xi, yi), fontsize=7, textcoords="offset points", xytext=(3, 3))
            points += len(x)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("throughput (output tokens/s)")
        legend_if_named(ax, groups)
    fig.suptitle("Throughput against batch and concurrency")
    return save_figure(fig, axes, path, points, len(groups))


def latency_cdf_figure(runs, path):
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    points = 0
    panels = [("ttft_s", 1e3, "time to first token (ms)"), ("itl_gaps_s", 1e3, "inter-token latency (ms)"),
              ("e2e_s", 1.0, "end-to-end latency (s)")]
    for ax, (key, scale, xlabel) in zip(axes, panels):
        for r in runs:
            if r[key].size:
                points += cdf(ax, r[key] * scale, r["label"])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of samples (CDF)")
        ax.set_xscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle("Latency distributions")
    return save_figure(fig, axes, path, points)


def latency_vs_load_figure(runs, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    groups = by_series(runs, "mean_concurrency")
    points = 0
    for ax, metric, name in [(axes[0], "ttft", "time to first token"), (axes[1], "itl", "inter-token latency")]:
        for i, (series, order) in enumerate(groups):
            x = [r["mean_concurrency"] for r in order]
            for q, style in (("p50", "o-"), ("p99", "s--")):
                y = [r["summary"][f"{metric}_{q}_s"] * 1e3 for r in order]
                # One colour a configuration (its p50 and p99 told apart by the line style).
                colour = None if series is None else f"C{i % 10}"
                ax.plot(x, y, style, color=colour, label=q if series is None else f"{series}: {q}")
                points += sum(1 for v in y if np.isfinite(v))
        ax.set_xlabel("mean concurrency (requests in flight)")
        ax.set_ylabel(f"{name} (ms)")
        if any(s is not None for s, _ in groups):
            ax.set_yscale("log")  # configurations may differ by orders of magnitude
        ax.legend(fontsize=6 if len(groups) > 1 else None)
    fig.suptitle("Latency against load")
    return save_figure(fig, axes, path, points, len(groups))


FIGURES = {"throughput.png": throughput_figure, "latency_cdf.png": latency_cdf_figure,
           "latency_vs_load.png": latency_vs_load_figure}


def is_load_report(path):
    with h5py.File(path, "r") as f:
        return "/layers/gini" in f


def expert_figures(reports, out_dir):
    """The expert-load figures of `moetron analyze` reports (perf/expert_plots.py): {png: entry}."""
    if not reports:
        return {}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import expert_plots
    manifest = {}
    for i, report in enumerate(reports):
        sub = out_dir if len(reports) == 1 else os.path.join(out_dir, f"load{i}")
        for png in expert_plots.draw_all(report, sub):
            manifest[os.path.relpath(png, out_dir)] = {"source": report}
    return manifest


def draw_all(paths, out_dir, series=None):
    """Every figure into out_dir; returns the manifest (also written as out_dir/plots.json).
    series: {results file: its configuration's label}, for runs of several configurations."""
    os.makedirs(out_dir, exist_ok=True)
    reports = [p for p in paths if is_load_report(p)]
    runs = [load_run(p, (series or {}).get(p)) for p in paths if p not in reports]
    manifest = {name: draw(runs, os.path.join(out_dir, name)) for name, draw in FIGURES.items()} if runs else {}
    manifest.update(expert_figures(reports, out_dir))
    with open(os.path.join(out_dir, "plots.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+",
                    help="results files of `moetron run`, and any `moetron analyze --out` reports (HDF5)")
    ap.add_argument("--out", required=True, help="folder for the PNGs and plots.json")
    a = ap.parse_args()
    for p in a.results:
        if not os.path.isfile(p):
            ap.error(f"results file {p} does not exist")
    for name, entry in draw_all(a.results, a.out).items():
        print(f"{os.path.join(a.out, name)}: {entry['points']} points")


if __name__ == "__main__":
    main()
