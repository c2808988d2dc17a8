#!/usr/bin/env python3
"""Expert load study (issue 13): under zipf routing skews, the expert-parallel ranks' load
imbalance and the throughput of EP plans with and without redundant experts.

One command runs everything and writes a Markdown report with its plots:

  # CPU ranks (small OLMoE-shaped model made here; 4 MPI ranks, oversubscribed):
  python3 perf/expert_load_study.py --moetron build-cpu/moetron --out perf/EXPERT_LOAD.md

  # Several ranks sharing one GPU (MPI transport through host memory; OLMoE-1B-7B shape with
  # 4 layers, dummy weights; about 3 minutes on one H200, then at most --emulated-budget-s
  # (default 120) for the emulated ranks of 8, 16 and 64-rank EP plans):
  python3 perf/expert_load_study.py --backend cuda --moetron build/moetron --out perf/EXPERT_LOAD_GPU.md
  # only the emulated section:
  python3 perf/expert_load_study.py --backend cuda --emulated-only --moetron build/moetron --out EMU.md

For every skew S (--skews, default 0, 0.5, 1.0, 1.5) and every plan (--plans), it runs the plan
without replicas, then with --redundant-experts R whose --expert-loads is the no-replica run of
the same skew and plan (an oracle: the loads of the very workload it then serves). Each
results file is read for the measured per-rank expert token-slots (/ranks/expert_tokens) and
expert seconds, and the throughput (/summary); `moetron analyze` gives the expert-level
imbalance (max/mean of the summed expert loads) and the fitted skew. The imbalance that
replicas change is the ranks': max/mean of /ranks/expert_tokens.

Emulated ranks (--emulated-worlds, default 4 and 8 on the cpu, 8, 16 and 64 on cuda): EP at
worlds larger than the machine, one rank at a time (`moetron run --emulate-rank R
--emulate-world N`). Per skew, one single-process run of the workload measures the experts'
loads (/experts/tokens: the routing does not depend on the plan); from them the busiest EP set
of dp=N,ep=N is predicted (the set with the most token-slots; rank r holds set r) and only that
rank is emulated. With --redundant-experts R (default N/2) and those loads as --expert-loads,
the emulated rank records the placement (/experts/replicas); the sets' loads are predicted
again with each replicated expert's tokens split evenly between its copies, and the rank
predicted busiest then is emulated too when it is another. Reported per point: the busiest
rank's predicted and measured expert token-slots (measured: the emulated rank's
/ranks/expert_tokens, which counts every peer as sending what the rank sends itself), their
max/mean imbalance, and its median decode step time, with and without replicas.
--emulated-budget-s bounds this section (points past it are listed as left out).

Writes: the Markdown file (--out), PNG plots beside it (--plots, default <out stem>_plots/),
the raw rows as JSON (<plots>/rows.json, <plots>/emulated_rows.json) and every run's files
under --work (a temp folder).
"""
import argparse, datetime, json, os, platform, random, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)


def fail(message):
    sys.exit(f"expert_load_study.py: {message}")


def run(cmd, log_path):
    with open(log_path, "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = open(log_path).read()[-2000:]
        fail(f"{' '.join(cmd)} exited {rc}; log {log_path}:\n{tail}")


def mpi_prefix(mpirun, ranks):
    extra = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [mpirun, "-np", str(ranks), "--oversubscribe"] + extra


def plan_ranks(plan):
    factors = dict(part.split("=") for part in plan.split(","))
    n = 1
    for key in ("pp", "tp", "dp"):
        n *= int(factors.get(key, 1))
    return n, int(factors.get("ep", 1))


def write_prompts(path, requests, prompt_len, new_tokens, vocab, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(requests):
            prompt = [rng.randrange(3, vocab) for _ in range(prompt_len)]
            f.write(json.dumps({"prompt_tokens": prompt, "max_new_tokens": new_tokens, "ignore_eos": True}) + "\n")


def make_model(moetron, backend, work, layers):
    model = os.path.join(work, "model")
    if os.path.exists(os.path.join(model, "config.json")):
        return model
    if backend == "cuda":
        cmd = [moetron, "model", "make", "--family", "olmoe", "--preset", "olmoe-1b-7b", "--config-only",
               "--set", f"num_hidden_layers={layers}", "--out", model]
    else:
        cmd = [moetron, "model", "make", "--family", "olmoe", "--preset", "tiny", "--config-only", "--out", model]
    run(cmd, os.path.join(work, "model_make.log"))
    return model


def read_run(path):
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        summary = dict(f["/summary"].attrs)
        tokens = np.asarray(f["/ranks/expert_tokens"][()], dtype=float)
        seconds = np.asarray(f["/ranks/expert_seconds"][()], dtype=float)
        steps = float(np.sum(f["/steps/seconds"][()]))
    return {
        "output_tokens_per_s": float(summary["output_tokens_per_s"]),
        "total_tokens_per_s": float(summary["total_tokens_per_s"]),
        "rank_imbalance": float(tokens.max() / tokens.mean()) if tokens.mean() > 0 else float("nan"),
        "rank_expert_tokens": tokens.astype(int).tolist(),
        "rank_seconds_imbalance": float(seconds.max() / seconds.mean()) if seconds.mean() > 0 else float("nan"),
        "busiest_expert_share": float(seconds.max() / steps) if steps > 0 else float("nan"),
    }


def read_analysis(path):
    import h5py
    with h5py.File(path, "r") as f:
        overall = dict(f["/overall"].attrs)
        layers = f["/layers/imbalance"][()]
        law = dict(f["/law"].attrs) if "/law" in f else {}
    return {
        "expert_imbalance": float(overall["imbalance"]),
        "layer_imbalance": float(sum(layers) / len(layers)) if len(layers) else float("nan"),
        "measured_law": float(law["measured"]) if "measured" in law else float("nan"),
    }


def study(args):
    os.makedirs(args.work, exist_ok=True)
    model = args.model or make_model(args.moetron, args.backend, args.work, args.layers)
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    experts, vocab = int(config["num_experts"]), int(config["vocab_size"])
    prompts = os.path.join(args.work, "prompts.jsonl")
    write_prompts(prompts, args.requests, args.prompt_len, args.max_new_tokens, min(vocab, 50000), args.seed)
    rows = []
    for plan in [] if args.emulated_only else args.plans:
        ranks, ep = plan_ranks(plan)
        if ep < 2:
            fail(f"plan {plan}: the study compares replicas, which need ep > 1")
        redundant = args.redundant if args.redundant > 0 else min(experts, 2 * ep)
        for skew in args.skews:
            tag = f"{plan.replace('=', '').replace(',', '_')}_zipf{skew}"
            base = os.path.join(args.work, f"{tag}_r0.h5")
            for r in (0, redundant):
                out = os.path.join(args.work, f"{tag}_r{r}.h5")
                cmd = mpi_prefix(args.mpirun, ranks) + [
                    args.moetron, "run", "--model", model, "--load-format", "dummy", "--routing-skew", f"zipf:{skew}",
                    "--prompts", prompts, "--backend", args.backend, "--plan", plan, "--log-level", "warn",
                    "--max-batch", str(args.max_batch), "--out", out]
                if args.backend == "cuda":
                    cmd += ["--kv-cache-tokens", str(args.requests * (args.prompt_len + args.max_new_tokens + 16))]
                if r > 0:
                    cmd += ["--redundant-experts", str(r), "--expert-loads", base]
                print(f"== {plan}, zipf:{skew}, {r} redundant experts", flush=True)
                # Repeats differ only in time: the throughput is their median, the rest the last's.
                speeds = []
                for _ in range(args.repeats):
                    run(cmd, out + ".log")
                    speeds.append(read_run(out)["output_tokens_per_s"])
                analysis = out + ".analysis.h5"
                run([args.moetron, "analyze", out, "--out", analysis], analysis + ".log")
                row = {"plan": plan, "ranks": ranks, "skew": skew, "redundant": r}
                row.update(read_run(out))
                row.update(read_analysis(analysis))
                row["output_tokens_per_s"] = sorted(speeds)[len(speeds) // 2]
                row["output_tokens_per_s_runs"] = speeds
                rows.append(row)
    return rows, config


# ---- emulated ranks ----

def set_loads(loads, ep, placement=None):
    """Token-slots per EP set from loads [layers, E]; with a placement ([layers, R, 2] of
    (expert, set), -1 rows unused) each replicated expert's tokens split evenly over its copies."""
    import numpy as np
    layers, experts = loads.shape
    size = experts // ep
    per_set = np.zeros(ep)
    for l in range(layers):
        holders = [[e // size] for e in range(experts)]
        if placement is not None:
            for expert, where in placement[l]:
                if expert >= 0:
                    holders[int(expert)].append(int(where))
        for e in range(experts):
            for s in holders[e]:
                per_set[s] += loads[l, e] / len(holders[e])
    return per_set


def read_emulated(path, rank):
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        served = float(f["/ranks/expert_tokens"][rank])
        prefill = f["/steps/is_prefill"][()].astype(bool)
        seconds = f["/steps/seconds"][()]
        placement = f["/experts/replicas"][()] if "/experts/replicas" in f else None
    decode = seconds[~prefill]
    return served, float(np.median(decode)) if len(decode) else float("nan"), placement


def emulated_study(args, model, experts, vocab):
    """Busiest emulated rank of dp=N,ep=N per world, skew and redundancy (see the docstring)."""
    import h5py
    import numpy as np
    prompts = os.path.join(args.work, "emulated_prompts.jsonl")
    write_prompts(prompts, args.emulated_requests, args.prompt_len, args.max_new_tokens, min(vocab, 50000), args.seed)
    common = ["--model", model, "--load-format", "dummy", "--prompts", prompts, "--backend", args.backend,
              "--log-level", "warn", "--max-batch", str(args.max_batch)]
    if args.backend == "cuda":
        common += ["--kv-cache-tokens", str(args.emulated_requests * (args.prompt_len + args.max_new_tokens + 16))]
    start, rows, left_out = time.monotonic(), [], []
    # Skews 0 and the largest first, then the rest: a budget cut still leaves both ends.
    skews = sorted(args.skews, key=lambda s: (s not in (min(args.skews), max(args.skews)), s))
    for skew in skews:
        loads_path = os.path.join(args.work, f"emu_loads_zipf{skew}.h5")
        for world in args.emulated_worlds:
            if time.monotonic() - start > args.emulated_budget_s:
                left_out.append(f"{world} ranks, zipf {skew}: past --emulated-budget-s {args.emulated_budget_s:g}")
                continue
            if experts % world:
                left_out.append(f"{world} ranks: ep={world} does not divide {experts} experts")
                continue
            if not os.path.exists(loads_path):
                run([args.moetron, "run", *common, "--routing-skew", f"zipf:{skew}", "--out", loads_path],
                    loads_path + ".log")
            with h5py.File(loads_path, "r") as f:
                loads = np.asarray(f["/experts/tokens"][()], dtype=float)
            plan, mean = f"dp={world},ep={world}", loads.sum() / world
            redundant = min(experts, args.emulated_redundant or max(world // 2, 1))

            def emulate(rank, r):
                out = os.path.join(args.work, f"emu_w{world}_zipf{skew}_r{r}_rank{rank}.h5")
                cmd = [args.moetron, "run", *common, "--routing-skew", f"zipf:{skew}", "--plan", plan,
                       "--emulate-rank", str(rank), "--emulate-world", str(world), "--out", out]
                if r > 0:
                    cmd += ["--redundant-experts", str(r), "--expert-loads", loads_path]
                print(f"== emulated rank {rank} of {plan}, zipf:{skew}, {r} redundant experts", flush=True)
                run(cmd, out + ".log")
                return read_emulated(out, rank)

            predicted = set_loads(loads, world)
            busiest = int(np.argmax(predicted))
            served, step, _ = emulate(busiest, 0)
            base = {"world": world, "plan": plan, "skew": skew, "redundant": 0, "rank": busiest,
                    "predicted_tokens": float(predicted[busiest]), "measured_tokens": served,
                    "mean_tokens": float(mean), "decode_step_s": step, "ranks_run": [busiest]}
            # The placement is only known from a run with replicas: the no-replica busiest rank's.
            served_r, step_r, placement = emulate(busiest, redundant)
            predicted_r = set_loads(loads, world, placement)
            busiest_r, ranks_run, steps_run = int(np.argmax(predicted_r)), [busiest], [step_r]
            if busiest_r != busiest:
                served_r, step_r, _ = emulate(busiest_r, redundant)
                ranks_run.append(busiest_r)
                steps_run.append(step_r)
            placed = int(np.sum(placement[:, :, 0] >= 0)) if placement is not None else 0
            # A real run waits for its slowest rank: the step is the slowest of the ranks run.
            rows += [base, dict(base, redundant=redundant, rank=busiest_r, predicted_tokens=float(predicted_r[busiest_r]),
                                measured_tokens=served_r, decode_step_s=max(steps_run), ranks_run=ranks_run,
                                steps_run=steps_run, placed=placed)]
    rows.sort(key=lambda r: (r["world"], r["skew"], r["redundant"]))
    return rows, left_out


def fmt(x, digits=3):
    return "nan" if x != x else f"{x:.{digits}f}"


def draw(rows, plots):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(plots, exist_ok=True)
    figures = {}
    for key, ylabel, name in (("rank_imbalance", "EP ranks' expert token-slots, max/mean", "rank_imbalance.png"),
                              ("output_tokens_per_s", "output tokens/s", "throughput.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        points = 0
        for plan in sorted({r["plan"] for r in rows}):
            for redundant in sorted({r["redundant"] for r in rows if r["plan"] == plan}):
                sel = sorted((r for r in rows if r["plan"] == plan and r["redundant"] == redundant), key=lambda r: r["skew"])
                ax.plot([r["skew"] for r in sel], [r[key] for r in sel], marker="o",
                        linestyle="-" if redundant else "--", label=f"{plan}, {redundant} redundant")
                points += len(sel)
        if key == "rank_imbalance":
            expert = sorted({(r["skew"], r["expert_imbalance"]) for r in rows if r["redundant"] == 0})
            ax.plot([s for s, _ in expert], [v for _, v in expert], color="grey", linestyle=":", marker="x",
                    label="experts' max/mean (analyze)")
        finish(fig, ax, ylabel, os.path.join(plots, name))
        figures[name] = points
    return figures


def finish(fig, ax, ylabel, path):
    import matplotlib.pyplot as plt
    ax.set_xlabel("routing skew (zipf exponent S)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_emulated(rows, plots):
    """The busiest emulated rank's measured imbalance and decode step per world, with and without replicas."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not rows:
        return {}
    figures = {}
    for name, ylabel, value in (
            ("emulated_imbalance.png", "busiest emulated rank's expert token-slots / mean",
             lambda r: r["measured_tokens"] / r["mean_tokens"]),
            ("emulated_decode_step.png", "busiest emulated rank's median decode step (ms)",
             lambda r: 1e3 * r["decode_step_s"])):
        fig, ax = plt.subplots(figsize=(6, 4))
        for world in sorted({r["world"] for r in rows}):
            for with_replicas in (False, True):
                sel = sorted((r for r in rows if r["world"] == world and (r["redundant"] > 0) == with_replicas),
                             key=lambda r: r["skew"])
                label = f"{world} ranks, {sel[0]['redundant']} redundant" if sel else ""
                ax.plot([r["skew"] for r in sel], [value(r) for r in sel], marker="o",
                        linestyle="-" if with_replicas else "--", label=label)
        finish(fig, ax, ylabel, os.path.join(plots, name))
        figures[name] = len(rows)
    return figures


def emulated_markdown(rows, left_out, args):
    if not rows and not left_out:
        return []
    lines = [
        "", "## Emulated ranks: EP at larger worlds, the busiest rank",
        "",
        f"`moetron run --emulate-rank R --emulate-world N --plan dp=N,ep=N` on one {args.backend} process; "
        f"{args.emulated_requests} requests over the N replicas (the same workload at every N). The busiest "
        "rank is predicted from a single-process run's `/experts/tokens` of the same workload and skew "
        "(rank r holds EP set r); with replicas, from those loads split evenly over the copies of the "
        "placement the emulated run records (`/experts/replicas`, placed from the same file). *predicted*: "
        "that set's token-slots from the loads; *measured*: the emulated rank's `/ranks/expert_tokens`, "
        "which counts every peer as sending the rank what it sends itself (emulation's assumption), so it "
        "scatters around the prediction with few requests per replica. *max/mean*: over the sets' mean "
        "(the workload's token-slots / N). *decode step*: the busiest rank's median decode step (compute "
        "and local copies only: no waiting for peers); with replicas, the slowest of the ranks run.",
        "",
        "| ranks | zipf S | redundant | busiest rank | predicted tokens | measured tokens | predicted max/mean "
        "| measured max/mean | decode step (ms) | step vs no replicas |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        base = next(b for b in rows if b["world"] == r["world"] and b["skew"] == r["skew"] and b["redundant"] == 0)
        gain = base["decode_step_s"] / r["decode_step_s"] if r["decode_step_s"] > 0 else float("nan")
        ranks = ",".join(map(str, r["ranks_run"]))
        lines.append(f"| {r['world']} | {r['skew']} | {r['redundant']} | {r['rank']} (ran {ranks}) | "
                     f"{r['predicted_tokens']:.0f} | {r['measured_tokens']:.0f} | "
                     f"{fmt(r['predicted_tokens'] / r['mean_tokens'])} | {fmt(r['measured_tokens'] / r['mean_tokens'])} | "
                     f"{fmt(1e3 * r['decode_step_s'], 2)} | {fmt(gain, 2)}x |")
    if left_out:
        lines += ["", "Left out: " + "; ".join(left_out) + "."]
    return lines


def write_markdown(rows, config, args, plots, figures, emulated=(), left_out=()):
    date = datetime.date.today().isoformat()
    cpus = os.cpu_count()
    where = (f"{args.backend.upper()} backend; MPI ranks on {platform.node()} ({cpus} CPU cores)"
             if args.backend == "cpu" else f"cuda backend; ranks sharing the GPU(s) of {platform.node()} (MPI transport)")
    lines = [
        "# Expert load: imbalance and throughput with and without redundant experts",
        "",
        f"Written by `perf/expert_load_study.py` on {date}: {where}.",
        f"Model: OLMoE-shaped, {config['num_hidden_layers']} layers, {config['num_experts']} experts, "
        f"top-{config['num_experts_per_tok']}, hidden {config['hidden_size']}, dummy weights with "
        f"`--routing-skew zipf:S`; {args.requests} requests of {args.prompt_len} prompt tokens and "
        f"{args.max_new_tokens} new tokens, `--max-batch {args.max_batch}`; output tok/s is the median of "
        f"{args.repeats} run(s).",
        "",
        "The replica runs read their `--expert-loads` from the no-replica run of the same skew and plan "
        "(an oracle placement). *rank max/mean*: the EP ranks' measured expert token-slots "
        "(`/ranks/expert_tokens`), the imbalance replicas change; *expert max/mean*: the experts' summed "
        "load (`moetron analyze`, `/overall@imbalance`), the same with and without replicas; *busiest "
        "expert time*: the busiest rank's expert seconds over the run's step time.",
        "",
    ]
    if args.backend == "cpu":
        lines += ["These are CPU-rank figures: more ranks than cores share a small machine, so the "
                  "throughput column is dominated by oversubscription and noise, and says little about "
                  "GPUs; the token-slot imbalance is exact.", ""]
    if not rows:  # --emulated-only: the model, not the MPI section's workload
        lines = lines[:3] + [f"Model: OLMoE-shaped, {config['num_hidden_layers']} layers, {config['num_experts']} "
                             f"experts, top-{config['num_experts_per_tok']}, hidden {config['hidden_size']}, dummy "
                             f"weights with `--routing-skew zipf:S`; {args.prompt_len} prompt tokens and "
                             f"{args.max_new_tokens} new tokens per request."]
    else:
        lines += table(rows)
    lines += emulated_markdown(emulated, left_out, args)
    rel = os.path.relpath(plots, os.path.dirname(os.path.abspath(args.out)))
    lines += ["", "Plots:", ""]
    for name in figures:
        lines.append(f"![{name}]({rel}/{name})")
    lines += ["", f"Command: `{' '.join(sys.argv)}`", ""]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))


def table(rows):
    lines = ["| plan | zipf S | redundant | expert max/mean | rank max/mean | rank tokens | expert seconds max/mean "
              "| busiest expert time | output tok/s | vs no replicas |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        base = next(b for b in rows if b["plan"] == r["plan"] and b["skew"] == r["skew"] and b["redundant"] == 0)
        speed = r["output_tokens_per_s"] / base["output_tokens_per_s"] if base["output_tokens_per_s"] > 0 else float("nan")
        lines.append(f"| {r['plan']} | {r['skew']} | {r['redundant']} | {fmt(r['expert_imbalance'])} | "
                     f"{fmt(r['rank_imbalance'])} | {' '.join(map(str, r['rank_expert_tokens']))} | "
                     f"{fmt(r['rank_seconds_imbalance'])} | {fmt(100 * r['busiest_expert_share'], 1)}% | "
                     f"{fmt(r['output_tokens_per_s'], 1)} | {fmt(speed, 2)}x |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moetron", default=os.path.join(SOURCE, "build-cpu", "moetron"))
    ap.add_argument("--backend", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--model", help="a model folder (default: one made under --work: tiny OLMoE on the cpu, "
                                     "the OLMoE-1B-7B shape with --layers layers on cuda, config only)")
    ap.add_argument("--layers", type=int, default=4, help="layers of the OLMoE-1B-7B-shaped model (cuda)")
    ap.add_argument("--plans", nargs="+", help="EP plans (default: dp=4,ep=4 and tp=4,ep=4 on the cpu, dp=4,ep=4 on cuda)")
    ap.add_argument("--skews", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
    ap.add_argument("--redundant", type=int, default=0, help="redundant experts R (default: 2 per EP set, at most E)")
    ap.add_argument("--requests", type=int, help="default 64")
    ap.add_argument("--prompt-len", type=int, help="default 24 (cpu), 128 (cuda)")
    ap.add_argument("--max-new-tokens", type=int, help="default 32 (cpu), 64 (cuda)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, help="runs of each point, throughput their median (default 3 cpu, 1 cuda)")
    ap.add_argument("--emulated-worlds", type=int, nargs="*",
                    help="EP worlds of the emulated section, none to skip it (default 4 8 on the cpu, 8 16 64 on cuda)")
    ap.add_argument("--emulated-redundant", type=int, default=0, help="redundant experts there (default N/2)")
    ap.add_argument("--emulated-requests", type=int, help="its workload's requests (default 32 cpu, 128 cuda)")
    ap.add_argument("--emulated-budget-s", type=float, help="seconds for that section (default 120 on cuda, none on the cpu)")
    ap.add_argument("--emulated-only", action="store_true", help="only the emulated section (no MPI runs)")
    ap.add_argument("--quick", action="store_true",
                    help="CI: skews 0 and 1.5, one plan on 2 ranks, 8 short requests; emulated 4 ranks")
    ap.add_argument("--work", help="where the runs' files go (default: moetron_expert_load_<backend> in the temp folder)")
    ap.add_argument("--out", default=os.path.join(HERE, "EXPERT_LOAD.md"))
    ap.add_argument("--plots", help="folder for the PNGs (default: <out stem>_plots/)")
    args = ap.parse_args()
    gpu = args.backend == "cuda"
    if args.quick:
        args.skews = [0.0, 1.5]
        args.plans = args.plans or ["dp=2,ep=2"]
        args.requests, args.prompt_len, args.max_new_tokens = args.requests or 8, args.prompt_len or 8, args.max_new_tokens or 4
        if args.emulated_worlds is None:
            args.emulated_worlds = [4]
    if args.emulated_worlds is None:
        args.emulated_worlds = [8, 16, 64] if gpu else [4, 8]
    args.emulated_requests = args.emulated_requests or (128 if gpu else 32)
    if args.emulated_budget_s is None:
        args.emulated_budget_s = 120.0 if gpu else float("inf")
    args.plans = args.plans or (["dp=4,ep=4"] if gpu else ["dp=4,ep=4", "tp=4,ep=4"])
    args.requests = args.requests or 64
    args.repeats = args.repeats or (1 if gpu or args.quick else 3)
    args.prompt_len = args.prompt_len or (128 if gpu else 24)
    args.max_new_tokens = args.max_new_tokens or (64 if gpu else 32)
    stem = os.path.splitext(os.path.abspath(args.out))[0]
    args.work = args.work or os.path.join(tempfile.gettempdir(), f"moetron_expert_load_{args.backend}")
    plots = args.plots or stem + "_plots"
    if not os.access(args.moetron, os.X_OK):
        fail(f"--moetron {args.moetron} is not an executable")
    if shutil.which(args.mpirun) is None:
        fail(f"--mpirun {args.mpirun} not found")
    rows, config = study(args)
    model = args.model or make_model(args.moetron, args.backend, args.work, args.layers)  # study's, made once
    emulated, left_out = emulated_study(args, model, int(config["num_experts"]), int(config["vocab_size"]))
    os.makedirs(plots, exist_ok=True)  # --emulated-only draws no table figures
    figures = draw(rows, plots) if rows else {}
    figures.update(draw_emulated(emulated, plots))
    if rows:  # --emulated-only keeps an earlier run's
        with open(os.path.join(plots, "rows.json"), "w") as f:
            json.dump(rows, f, indent=1)
    with open(os.path.join(plots, "emulated_rows.json"), "w") as f:
        json.dump(emulated, f, indent=1)
    write_markdown(rows, config, args, plots, figures, emulated, left_out)
    print(f"wrote {args.out}, plots in {plots}")


if __name__ == "__main__":
    main()
