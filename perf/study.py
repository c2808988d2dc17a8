#!/usr/bin/python3
"""A factorial study of Moetron's serving performance, run as a Slurm array job.

  perf/study.py prepare GRID.json --dir DIR [--moetron BIN] [--source CHECKOUT]
      expands the grid (every combination of the factors' levels, times `repeats`) into
      DIR/tasks.json, one task per grid point and repeat, and prints the sbatch line:
  sbatch --array=0-(N-1) jobs/study.sbatch DIR
      each array task runs `perf/study.py task DIR $SLURM_ARRAY_TASK_ID`: writes the task's
      workload with `moetron workload`, then `moetron run` to DIR/results/task-<i>.h5
  perf/study.py analyze DIR --out STUDY.md [--plots]
      collects the results files and fits, for each response (default: throughput
      output_tokens_per_s, itl_p99_s, ttft_p99_s), an ANOVA (statsmodels OLS, type II sums of
      squares) on the factors with more than one level and their two-way interactions; writes a
      Markdown table per response with each term's share of the total sum of squares, the
      throughput knee per configuration, and (--plots) perf/plots.py's figures into DIR/plots.

The grid (JSON; perf/study_grids/ has the CI grid and the GPU grid):
  models      {"name": "checkpoint dir"}: the levels of the factor `model` (relative paths are
              relative to --source, the checkout)
  factors     {"factor": [levels]}; built in: model, plan (pp=..,tp=..: its ranks are pp*tp*dp),
              kind (moetron workload --kind), concurrency (--concurrency) or rate (--rate),
              emulate_rank (one process runs only that rank's share of the plan:
              --emulate-rank R --emulate-world <the plan's ranks>, no launcher; to study plans
              larger than the machine);
              any other factor needs an entry in run_options (a factor whose option this
              moetron lacks is refused at prepare, e.g. routing_skew before --routing-skew exists)
  run_options {"factor": "--moetron-run-option"}; by default routing_skew -> --routing-skew,
              prefill_chunk -> --prefill-chunk (chunked prefill: 0 is whole prompts, "auto" the
              adaptive chunk), itl_target_ratio -> --itl-target-ratio (with auto only),
              admission -> --admission (continuous, or static: groups prefilled, then decoded
              together) and max_batch -> --max-batch (sequences in one step).
              Levels may be numbers or text (e.g. [0, 256, "auto"]): every factor is categorical
  repeats     runs per grid point (the workload seed is the repeat index)
  requests    requests per workload;  run_args: more `moetron run` options
  launcher    how a task with several ranks starts them, "{ranks}" replaced, e.g.
              "srun --mpi=pmix --ntasks={ranks} --kill-on-bad-exit=1" (one rank: run directly)
  responses   /summary attributes to analyse
"""
import argparse, itertools, json, os, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_RESPONSES = ["output_tokens_per_s", "itl_p99_s", "ttft_p99_s"]
BUILT_IN = {"model", "plan", "kind", "concurrency", "rate", "emulate_rank"}
DEFAULT_RUN_OPTIONS = {"routing_skew": "--routing-skew", "prefill_chunk": "--prefill-chunk",
                       "itl_target_ratio": "--itl-target-ratio", "admission": "--admission",
                       "max_batch": "--max-batch"}


def fail(message):
    sys.exit(f"study.py: {message}")


def plan_ranks(plan):
    """pp * tp * dp of 'pp=2,tp=2' (omitted factors are 1)."""
    ranks = 1
    for part in plan.split(","):
        key, _, value = part.partition("=")
        if key.strip() in ("pp", "tp", "dp"):
            ranks *= int(value)
        elif key.strip() != "ep":
            fail(f"plan '{plan}': the study needs explicit plans (pp=P,tp=T,dp=D,ep=E), not '{part}'")
    return ranks


def moetron_run_options(moetron):
    text = subprocess.run([moetron, "run", "--help"], capture_output=True, text=True).stdout
    return {word for word in text.split() if word.startswith("--")}


def prepare(grid_path, study_dir, moetron, source):
    grid = json.load(open(grid_path))
    factors = grid["factors"]
    run_options = dict(DEFAULT_RUN_OPTIONS, **grid.get("run_options", {}))
    if "concurrency" in factors and "rate" in factors:
        fail(f"{grid_path}: factors 'concurrency' and 'rate' exclude each other (a closed or an open loop)")
    known = moetron_run_options(moetron)
    for name in factors:
        if name in BUILT_IN:
            continue
        if name not in run_options:
            fail(f"{grid_path}: factor '{name}' is not built in ({', '.join(sorted(BUILT_IN))}) "
                 f"and has no entry in run_options")
        if run_options[name] not in known:
            fail(f"{grid_path}: factor '{name}' needs `moetron run {run_options[name]}`, which {moetron} "
                 f"does not have; remove the factor from the grid")
    models = {name: os.path.join(source, path) for name, path in grid["models"].items()}
    for name in factors.get("model", []):
        if not os.path.isfile(os.path.join(models.get(name, ""), "config.json")):
            fail(f"{grid_path}: model '{name}' has no config.json at {models.get(name)}")
    names = list(factors)
    tasks = []
    for levels in itertools.product(*(factors[n] for n in names)):
        for repeat in range(int(grid.get("repeats", 1))):
            point = dict(zip(names, levels))
            tasks.append(task_of(len(tasks), point, repeat, grid, models, run_options, moetron, study_dir))
    os.makedirs(study_dir, exist_ok=True)
    study = {"grid": grid, "grid_file": os.path.abspath(grid_path), "factors": names, "tasks": tasks,
             "responses": grid.get("responses", DEFAULT_RESPONSES)}
    with open(os.path.join(study_dir, "tasks.json.tmp"), "w") as f:
        json.dump(study, f, indent=1)
    os.replace(os.path.join(study_dir, "tasks.json.tmp"), os.path.join(study_dir, "tasks.json"))
    print(f"{len(tasks)} tasks in {study_dir}/tasks.json; submit with\n"
          f"  sbatch --array=0-{len(tasks) - 1} jobs/study.sbatch {study_dir}")
    return tasks


def task_of(index, point, repeat, grid, models, run_options, moetron, study_dir):
    """The two commands of one grid point and repeat: the workload, then the run."""
    model = models[point.get("model", next(iter(models)))]
    vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
    workload = os.path.join(study_dir, "workloads", f"task-{index}.jsonl")
    out = os.path.join(study_dir, "results", f"task-{index}.h5")
    make_workload = [moetron, "workload", "--kind", str(point.get("kind", "short")),
                     "--requests", str(grid.get("requests", 100)), "--vocab", str(vocab),
                     "--seed", str(repeat), "--out", workload]
    for loop in ("concurrency", "rate"):
        if loop in point:
            make_workload += [f"--{loop}", str(point[loop])]
    plan = str(point.get("plan", "pp=1"))
    run = [moetron, "run", "--model", model, "--prompts", workload, "--out", out, "--plan", plan]
    for name, level in point.items():
        if name not in BUILT_IN:
            run += [run_options[name], str(level)]
    run += [str(a) for a in grid.get("run_args", [])]
    ranks = plan_ranks(plan)
    if "emulate_rank" in point:  # one process stands for one rank of the plan
        run += ["--emulate-world", str(ranks), "--emulate-rank", str(point["emulate_rank"])]
    elif ranks > 1:
        run = grid.get("launcher", "mpirun -np {ranks}").format(ranks=ranks).split() + run
    return {"index": index, "factors": point, "repeat": repeat, "workload": make_workload, "run": run,
            "out": out}


def run_task(study_dir, index):
    study = json.load(open(os.path.join(study_dir, "tasks.json")))
    task = study["tasks"][index]
    for folder in ("workloads", "results"):
        os.makedirs(os.path.join(study_dir, folder), exist_ok=True)
    print(f"task {index}: {task['factors']} repeat {task['repeat']}", flush=True)
    for step in ("workload", "run"):
        print("+ " + " ".join(task[step]), flush=True)
        subprocess.run(task[step], check=True)


def collect(study_dir):
    """One row per finished task: its factors and its /summary attributes."""
    import h5py
    study = json.load(open(os.path.join(study_dir, "tasks.json")))
    rows, missing = [], []
    for task in study["tasks"]:
        if not os.path.isfile(task["out"]):
            missing.append(task["index"])
            continue
        with h5py.File(task["out"], "r") as f:
            summary = {k: float(v) for k, v in f["/summary"].attrs.items()}
        rows.append(dict(task["factors"], repeat=task["repeat"], out=task["out"], **summary))
    return study, rows, missing


def anova_table(frame, factors, response):
    """Type II ANOVA of `response` on the varying factors and their two-way interactions:
    [(term, df, sum_sq, share of the total sum of squares, F, p)]."""
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm
    varying = [f for f in factors if frame[f].nunique() > 1]
    if not varying:
        return []
    terms = [f"C({f})" for f in varying]
    rhs = " + ".join(terms) + "".join(f" + {a}:{b}" for a, b in itertools.combinations(terms, 2))
    data = frame[varying + [response]].copy()
    for f in varying:
        data[f] = data[f].astype(str)
    fit = smf.ols(f"{response} ~ {rhs}", data=data).fit()
    if fit.df_resid < 1:
        # As many parameters as runs: every term fits exactly and nothing is left to test
        # against. The caller says so instead of a table.
        return None
    table = anova_lm(fit, typ=2)
    total = table["sum_sq"].sum()
    out = []
    for term, row in table.iterrows():
        name = term.replace("C(", "").replace(")", "")
        out.append((name, row["df"], row["sum_sq"], row["sum_sq"] / total if total > 0 else float("nan"),
                    row.get("F"), row.get("PR(>F)")))
    return sorted(out, key=lambda r: (r[0] == "Residual", -r[3]))


def load_factor(factors):
    return next((f for f in ("concurrency", "rate") if f in factors), None)


def configuration(row, factors):
    """A run's configuration: its varying factors but the load, as "f=v, ..." ("all": none)."""
    load = load_factor(factors)
    return ", ".join(f"{f}={row[f]}" for f in factors if f != load) or "all"


def knees(frame, factors):
    """Per configuration (every factor but the load, e.g. each prefill_chunk): the smallest load
    whose mean throughput reaches 90% of the configuration's best, and its p99 ITL over the
    lightest load's median ITL (an unloaded step's time; the issue's target keeps it within 2)."""
    load = load_factor(factors)
    if load is None:
        return []
    others = [f for f in factors if f != load]
    out = []
    # In the grid's order: levels may mix numbers and text (prefill_chunk 0, 256, "auto"), which
    # do not sort together.
    groups = frame.groupby(others, sort=False) if others else [((), frame)]
    for key, group in groups:
        means = group.groupby(load)[["output_tokens_per_s", "itl_p99_s", "itl_p50_s"]].mean().sort_index()
        best = means["output_tokens_per_s"].max()
        knee = means[means["output_tokens_per_s"] >= 0.9 * best].index[0]
        unloaded = means["itl_p50_s"].iloc[0]
        key = key if isinstance(key, tuple) else (key,)
        ratios = means["itl_p99_s"] / unloaded
        out.append((", ".join(f"{f}={v}" for f, v in zip(others, key)) or "all", load, knee,
                    means.loc[knee, "output_tokens_per_s"], ratios.loc[knee],
                    ratios[ratios.index <= knee].max(), means.assign(ratio=ratios)))
    return out


def number(x, digits=3):
    return "" if x is None or x != x else f"{x:.{digits}g}"


def analyze(study_dir, out_path, plots):
    import pandas as pd
    study, rows, missing = collect(study_dir)
    if not rows:
        fail(f"{study_dir}: no results files yet")
    frame = pd.DataFrame(rows)
    factors = study["factors"]
    lines = [f"# Factorial study: {os.path.basename(study['grid_file'])}", "",
             f"{len(rows)} runs of {len(study['tasks'])} tasks"
             + (f" (missing: tasks {', '.join(map(str, missing))})" if missing else "") + "; factors: "
             + ", ".join(f"{f} ({', '.join(map(str, study['grid']['factors'][f]))})" for f in factors)
             + f"; {study['grid'].get('repeats', 1)} repeats. Generated by `perf/study.py analyze`.", "",
             "Each table is a type II ANOVA (statsmodels OLS) on the factors that vary and their two-way "
             "interactions; *share* is the term's sum of squares over the total, i.e. the part of the "
             "variance it explains (the residual is what repeats alone vary by).", ""]
    for response in study["responses"]:
        lines += [f"## {response}", "", "| term | df | sum of squares | share | F | p |",
                  "| --- | --- | --- | --- | --- | --- |"]
        table = anova_table(frame, factors, response)
        if table is None:
            lines[-2:] = [f"No ANOVA: {len(frame)} runs leave no residual degrees of freedom for the "
                          "factors and their interactions (add repeats or levels)."]
            lines.append("")
            continue
        for term, df, ss, share, f_value, p in table:
            lines.append(f"| {term} | {df:g} | {number(ss)} | {share * 100:.1f}% | {number(f_value)} | {number(p)} |")
        lines.append("")
    knee_rows = knees(frame, factors)
    if knee_rows:
        lines += ["## Throughput knee", "",
                  "The lightest load reaching 90% of the configuration's best mean throughput, and p99 ITL "
                  "there over the lightest load's median ITL.", "",
                  "| configuration | load | knee | output tokens/s | p99 ITL / unloaded ITL | worst ratio up to the knee |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for config, load, knee, tps, ratio, worst, _ in knee_rows:
            lines.append(f"| {config} | {load} | {knee} | {number(tps, 4)} | {number(ratio)} | {number(worst)} |")
        lines.append("")
        for config, load, _, _, _, _, means in knee_rows:
            lines += [f"### {config}: by {load}", "",
                      f"| {load} | output tokens/s | ITL p50 (ms) | ITL p99 (ms) | p99 ITL / unloaded |",
                      "| --- | --- | --- | --- | --- |"]
            for level, row in means.iterrows():
                lines.append(f"| {level} | {number(row['output_tokens_per_s'], 4)} | {number(row['itl_p50_s'] * 1e3)} "
                             f"| {number(row['itl_p99_s'] * 1e3)} | {number(row['ratio'])} |")
            lines.append("")
    if plots:
        sys.path.insert(0, HERE)
        import plots as plotting
        plot_dir = os.path.join(study_dir, "plots")
        varying = [f for f in factors if frame[f].nunique() > 1]
        series = {row["out"]: configuration(row, varying) for _, row in frame.iterrows()}
        manifest = plotting.draw_all(list(frame["out"]), plot_dir, series)
        lines += ["## Figures", ""] + [f"![{name}]({os.path.relpath(os.path.join(plot_dir, name), os.path.dirname(os.path.abspath(out_path)))})"
                                       for name in manifest] + [""]
    with open(out_path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(out_path + ".tmp", out_path)
    print(f"wrote {out_path}: {len(rows)} runs, {len(study['responses'])} ANOVA tables")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="expand a grid into DIR/tasks.json")
    p.add_argument("grid")
    p.add_argument("--dir", required=True)
    p.add_argument("--moetron", default=os.path.join(os.path.dirname(HERE), "build", "moetron"))
    p.add_argument("--source", default=os.path.dirname(HERE), help="the checkout the grid's paths are relative to")
    t = sub.add_parser("task", help="run one task (what each array task of jobs/study.sbatch does)")
    t.add_argument("dir")
    t.add_argument("index", type=int)
    a = sub.add_parser("analyze", help="ANOVA tables (and figures) from the finished tasks")
    a.add_argument("dir")
    a.add_argument("--out", required=True, help="the Markdown file to write, e.g. perf/STUDY.md")
    a.add_argument("--plots", action="store_true", help="draw perf/plots.py's figures into DIR/plots")
    args = ap.parse_args()
    if args.command == "prepare":
        if not os.access(args.moetron, os.X_OK):
            fail(f"--moetron {args.moetron} is not an executable")
        prepare(args.grid, os.path.abspath(args.dir), os.path.abspath(args.moetron), os.path.abspath(args.source))
    elif args.command == "task":
        run_task(os.path.abspath(args.dir), args.index)
    else:
        analyze(os.path.abspath(args.dir), args.out, args.plots)


if __name__ == "__main__":
    main()
