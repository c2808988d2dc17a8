#!/usr/bin/env python3
"""The benchmark table of the CUDA issue, in one run on the GPU machine:

  python3 perf/bench.py --moetron build/moetron --models olmoe-1b-7b,qwen1.5-moe-a2.7b --out DIR

For each model shape (random bf16 weights: `moetron run --load-format dummy`, and the same shape
with random weights in Hugging Face transformers), at each batch size with 512-token prompts:
Moetron's decode step latency and throughput (CUDA graphs, and eagerly), its prefill
throughput, HF's decode throughput (generate of N tokens minus generate of 1), and each figure
against its roofline: the bytes a decode step must read (attention and dense weights, the
experts a batch hits under uniform routing, the KV cache, the LM head) over the measured HBM
bandwidth, and its FLOPs over the measured bf16 GEMM rate. Prefill at each --prefill-prompts
length (default 512 and 4096): Moetron's and HF's prompt tokens per second and their fraction
of the bf16 GEMM rate. With --startup: a full-size checkpoint written (sharded as the hub
does), dropped from the page cache, and loaded: startup time and weight-read rate against the
disk's cold sequential read rate. Writes DIR/bench.json (every record), DIR/RESULTS.md (the
tables) and DIR/bench.h5 (when h5py is present).
"""
import argparse, datetime, json, os, re, shutil, subprocess, sys, time

import torch

from bench_table import write_table

FAMILY = {"olmoe-1b-7b": "olmoe", "qwen1.5-moe-a2.7b": "qwen2_moe", "mixtral-8x7b": "mixtral",
          "qwen3-30b-a3b": "qwen3_moe"}


def measure_roofline():
    """HBM bandwidth (a large device-to-device copy, bytes read + written) and the bf16 GEMM rate
    (8192^3 on random data), each the median of repeated timed runs after warm-up."""
    def median_ms(fn, reps=20):
        for _ in range(3):
            fn()
        times = []
        for _ in range(reps):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); fn(); b.record(); torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        return sorted(times)[len(times) // 2]
    n = 1 << 30  # 2 GiB of bf16 each way
    src = torch.randn(n, dtype=torch.bfloat16, device="cuda")
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 2 / (median_ms(lambda: dst.copy_(src)) / 1e3)
    del src, dst
    m = 8192
    x = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    y = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    flops = 2 * m ** 3 / (median_ms(lambda: x @ y) / 1e3)
    del x, y
    torch.cuda.empty_cache()
    return bw, flops


def make_prompts(out, *args):
    """perf/make_prompts.py OUT ARGS... (random requests as JSON Lines)."""
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_prompts.py"), out,
                    *[str(a) for a in args]], check=True)


def hf_bench(label, *args):
    """perf/hf_bench.py ARGS...: its JSON records (a failure is printed, not raised, so the
    Moetron figures of the call are kept)."""
    hf = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "hf_bench.py"),
                         *[str(a) for a in args]], capture_output=True, text=True)
    if hf.returncode != 0:
        print(f"hf_bench ({label}) failed:", hf.stderr[-2000:], flush=True)
    return [json.loads(line) for line in hf.stdout.splitlines() if line.startswith("{")]


def load_config(path):
    with open(os.path.join(path, "config.json")) as f:
        return json.load(f)


def step_cost(c, batch, context):
    """Bytes a decode step must read and FLOPs it must do (bf16 weights and KV cache)."""
    h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
    heads, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    hd = c.get("head_dim") or h // heads
    experts = c.get("num_local_experts") or c.get("num_experts")
    k = c["num_experts_per_tok"]
    moe_i = c.get("moe_intermediate_size") or c["intermediate_size"]
    shared_i = c.get("shared_expert_intermediate_size", 0) or 0
    attn = h * hd * (2 * heads + 2 * kv)
    expert = 3 * h * moe_i
    shared = 3 * h * shared_i + (h if shared_i else 0)
    hit = experts * (1 - (1 - k / experts) ** batch)  # distinct experts a batch touches (uniform)
    weights = layers * (attn + experts * h + shared + hit * expert) + vocab * h
    kv_bytes = batch * context * layers * 2 * kv * hd * 2
    bytes_ = 2 * weights + kv_bytes + batch * h * 2
    active = layers * (attn + experts * h + shared + k * expert) + vocab * h
    flops = 2 * batch * active + 4 * batch * context * layers * heads * hd
    return bytes_, flops


def run_moetron(binary, model, prompts, max_batch, out_name, extra, out):
    """One moetron run; returns its log (stderr) or raises with it."""
    cmd = [binary, "run", "--model", model, "--load-format", "dummy", "--prompts", prompts,
           "--out", os.path.join(out, out_name), "--ignore-eos", "--backend", "cuda",
           "--max-batch", str(max_batch), "--max-batch-tokens", "16384"] + extra
    t = time.time()
    log = subprocess.run(cmd, capture_output=True, text=True)
    print(f"  {' '.join(extra) or 'graphs'}: {time.time() - t:.0f} s", flush=True)
    if log.returncode != 0:
        raise RuntimeError(log.stderr[-3000:])
    return log.stderr


def decode_medians(log):
    """{batch: step seconds} from the 'decode step median by batch' log line."""
    line = next(l for l in log.splitlines() if "decode step median by batch:" in l)
    return {int(b): float(ms) / 1e3 for b, ms in re.findall(r" (\d+): ([\d.e+-]+) ms", line)}


def prefill_rate(log, after_first=False):
    """The run's prompt tokens per second from its 'prefill:' log line; after_first: without the
    first prefill step (its one-off costs), where the run had more than one."""
    m = re.search(r"prefill: \d+ tokens at (\d+) tok/s(?: \(\d+ steps(?:; after the first: (\d+) tok/s)?)?", log)
    if not m:
        return float("nan")
    return float(m.group(2)) if after_first and m.group(2) else float(m.group(1))


def idle_shares(log, untraced_step_s=None):
    """The --measure-gpu-idle lines of a run's log. CUPTI's tracing lengthens the host's graph
    launches (the gap before a step's first kernel; perf/NOTES.md, seventeenth session), so the
    traced step's idle is also set against the same run's step without tracing: 1 - busy /
    untraced step is the idle left in an untraced step if tracing does not slow the kernels."""
    m = re.search(r"GPU idle within decode steps: median ([\d.]+)% \(p90 ([\d.]+)%\); "
                  r"whole step incl. host: median ([\d.]+)%; (\d+) kernels/step", log)
    if not m:
        raise RuntimeError("no idle line in the log:\n" + log[-2000:])
    r = dict(idle_within_step=float(m.group(1)) / 100, idle_within_step_p90=float(m.group(2)) / 100,
             idle_whole_step=float(m.group(3)) / 100, kernels_per_step=int(m.group(4)))
    k = re.search(r"GPU idle between the kernels of decode steps: median ([\d.]+)% \(p90 ([\d.]+)%\); "
                  r"launch gap before the first kernel: median ([\d.]+) us; busy ([\d.]+) us a step", log)
    if k:
        r.update(idle_between_kernels=float(k.group(1)) / 100, idle_between_kernels_p90=float(k.group(2)) / 100,
                 launch_gap_us=float(k.group(3)), busy_us=float(k.group(4)))
        if untraced_step_s:
            r.update(untraced_step_s=untraced_step_s,
                     idle_untraced_estimate=max(0.0, 1 - r["busy_us"] * 1e-6 / untraced_step_s))
    return r


def prefill_flops_per_token(c, prompt):
    """FLOPs a prompt token costs in prefill: the active weights' GEMMs and causal attention
    over half the prompt on average."""
    return step_cost(c, 1, prompt / 2)[1]


def measure_prefill(binary, model, preset, cfg, prompt, out, peak, hf=True):
    """Moetron's prefill rate on prompts of `prompt` tokens (as many as fill three steps of 16,384
    tokens, one new token each; the rate is that of the steps after the first, whose one-off
    costs are reported apart), and HF's (a batch of the same tokens, 1-token generate())."""
    # A prompt as long as the model's context leaves no room for the one new token.
    prompt = min(prompt, cfg.get("max_position_embeddings", prompt + 1) - 1)
    requests = max(3, 3 * 16384 // prompt)
    prompts = os.path.join(out, f"prefill-{prompt}.jsonl")
    make_prompts(prompts, requests, prompt, 1, 30000)
    records = []
    flops = prefill_flops_per_token(cfg, prompt)
    try:
        log = run_moetron(binary, model, prompts, requests, f"prefill-{prompt}.h5", [], out)
        rate = prefill_rate(log, after_first=True)
        records.append(dict(engine="moetron-prefill", model=preset, prompt=prompt, requests=requests,
                            prefill_tok_s=rate, prefill_tok_s_with_first_step=prefill_rate(log),
                            fraction_of_gemm_rate=rate * flops / peak))
    except RuntimeError as e:
        records.append(dict(engine="moetron-prefill", model=preset, prompt=prompt, error=str(e)[-2000:]))
    hf_batch = max(1, min(64, 32768 // prompt))
    hf_records = hf_bench("prefill", "--model", model, "--batches", hf_batch, "--prompt", prompt,
                          "--new-tokens", 2, "--reps", 3) if hf else []
    for r in hf_records:
        rate = r.get("prefill_tok_s")
        records.append(dict(engine="hf-prefill", model=preset, prompt=prompt, batch=hf_batch,
                            prefill_tok_s=rate, fraction_of_gemm_rate=rate * flops / peak if rate else None,
                            **({"error": r["error"]} if "error" in r else {})))
    for r in records:
        print(json.dumps(r), flush=True)
    return records


def measure_sampling(binary, model, preset, batch, prompt, steps, out, reps=2):
    """The cost of sampling (temperature 0.8, top-p 0.9) over greedy at one batch size: the
    decode step median of each, runs alternating so that drift falls on both alike; the spread
    of the repeats is the run-to-run noise the overhead is read against."""
    prompts = os.path.join(out, f"sampling-{batch}.jsonl")
    make_prompts(prompts, batch, prompt, steps + 1, 30000)
    modes = {"greedy": [], "sampled": ["--temperature", "0.8", "--top-p", "0.9"]}
    steps_s = {m: [] for m in modes}
    try:
        for _ in range(reps):
            for mode, extra in modes.items():
                log = run_moetron(binary, model, prompts, batch, f"sampling-{mode}.h5", extra, out)
                steps_s[mode].append(decode_medians(log)[batch])
    except (RuntimeError, StopIteration, KeyError) as e:
        r = dict(engine="moetron-sampling", model=preset, batch=batch, error=str(e)[-2000:])
        print(json.dumps(r), flush=True)
        return r
    greedy, sampled = min(steps_s["greedy"]), min(steps_s["sampled"])
    r = dict(engine="moetron-sampling", model=preset, batch=batch, context=prompt + steps // 2,
             greedy_step_s=greedy, sampled_step_s=sampled, sampling_overhead=sampled / greedy - 1,
             greedy_spread=max(steps_s["greedy"]) / greedy - 1, sampled_spread=max(steps_s["sampled"]) / sampled - 1)
    print(json.dumps(r), flush=True)
    return r


def drop_from_page_cache(folder):
    """Evicts the folder's files from the page cache (clean pages: no privileges needed), so the
    next read comes from the disk."""
    for name in os.listdir(folder):
        fd = os.open(os.path.join(folder, name), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cold_read_rate(path):
    """Bytes per second of one sequential buffered read of a file just dropped from the cache."""
    drop_from_page_cache(os.path.dirname(path))
    t, n = time.time(), 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(64 << 20)
            if not b:
                break
            n += len(b)
    return n / (time.time() - t)


def measure_startup(binary, preset, out):
    """Writes the preset's full checkpoint (5 GB shards), measures the disk's cold read rate on
    its largest shard, then a cold `moetron run` of one short request: its startup line."""
    ckpt = os.path.join(out, f"{preset}-checkpoint")
    os.makedirs(out, exist_ok=True)
    t = time.time()
    subprocess.run([binary, "model", "make", "--family", FAMILY[preset], "--preset", preset, "--out", ckpt],
                   check=True, capture_output=True)
    make_s = time.time() - t
    print(f"  startup: checkpoint written in {make_s:.0f} s", flush=True)
    shards = sorted((os.path.getsize(os.path.join(ckpt, f)), f) for f in os.listdir(ckpt) if f.endswith(".safetensors"))
    disk = cold_read_rate(os.path.join(ckpt, shards[-1][1]))
    print(f"  startup: disk cold read {disk / 1e9:.2f} GB/s", flush=True)
    drop_from_page_cache(ckpt)
    prompts = os.path.join(out, "startup.jsonl")
    make_prompts(prompts, 1, 16, 2, 30000)
    cmd = [binary, "run", "--model", ckpt, "--prompts", prompts, "--out", os.path.join(out, "startup.h5"),
           "--backend", "cuda", "--ignore-eos"]
    log = subprocess.run(cmd, capture_output=True, text=True)
    r = dict(engine="moetron-startup", model=preset, checkpoint_bytes=sum(b for b, _ in shards),
             shards=len(shards), make_s=make_s, disk_read_bytes_per_s=disk)
    m = re.search(r"startup: ready in ([\d.e+-]+) s; weights ([\d.e+-]+) GB read in ([\d.e+-]+) s.*?"
                  r"KV cache ([\d.e+-]+) s(?:, (\d+) decode graphs recorded in ([\d.e+-]+) s)?", log.stderr)
    if log.returncode != 0 or not m:
        r["error"] = log.stderr[-2000:]
    else:
        r.update(startup_s=float(m.group(1)), weights_bytes=float(m.group(2)) * 1e9,
                 weights_s=float(m.group(3)), kv_cache_s=float(m.group(4)),
                 graphs=int(m.group(5) or 0), graphs_s=float(m.group(6) or 0))
        r["weights_read_bytes_per_s"] = r["weights_bytes"] / r["weights_s"] if r["weights_s"] > 0 else None
        r["fraction_of_disk_rate"] = r["weights_read_bytes_per_s"] / disk if r["weights_read_bytes_per_s"] else None
    shutil.rmtree(ckpt, ignore_errors=True)
    print(json.dumps(r), flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moetron", required=True)
    ap.add_argument("--models", default="olmoe-1b-7b,qwen1.5-moe-a2.7b")
    ap.add_argument("--batches", default="1,8,32,64,128,256")
    ap.add_argument("--hf-batches", default="1,8,32,64")
    ap.add_argument("--idle-batches", default="1,64", help="batch sizes for the GPU-idle runs")
    ap.add_argument("--steps", type=int, default=8, help="decode steps measured at each batch size")
    ap.add_argument("--no-eager", dest="eager", action="store_false", help="skip the --no-graphs run")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prefill-prompts", default="512,4096",
                    help="prompt lengths of the prefill comparison with HF ('' to skip)")
    ap.add_argument("--startup", action="store_true",
                    help="also time a cold start from a full-size checkpoint written to --out (disk!)")
    ap.add_argument("--sampling-batches", default="64",
                    help="batch sizes where sampling (temperature / top-p) is timed against greedy ('' to skip)")
    ap.add_argument("--no-hf-decode", dest="hf_decode", action="store_false", help="skip HF's decode runs")
    ap.add_argument("--no-hf-prefill", dest="hf_prefill", action="store_false", help="skip HF's prefill runs")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    device = torch.cuda.get_device_name()
    bw, peak = measure_roofline()
    print(f"{device}: HBM {bw / 1e12:.2f} TB/s (read + write), bf16 GEMM {peak / 1e12:.0f} TFLOP/s", flush=True)
    records = []
    for preset in args.models.split(","):
        model = os.path.join(args.out, preset)
        subprocess.run([args.moetron, "model", "make", "--family", FAMILY[preset], "--preset", preset,
                        "--config-only", "--out", model], check=True, capture_output=True)
        cfg = load_config(model)
        batches = [int(x) for x in args.batches.split(",")]
        # One run measures every batch size: requests finish in waves (make_prompts --phases).
        phased = os.path.join(args.out, "phased.jsonl")
        make_prompts(phased, "--phases", ",".join(str(b) for b in sorted(batches, reverse=True)),
                     "--steps", args.steps, "--prompt", args.prompt)
        context = args.prompt + len(batches) * args.steps // 2
        try:
            graphs_log = run_moetron(args.moetron, model, phased, max(batches), f"{preset}.h5", [], args.out)
            eager_log = (run_moetron(args.moetron, model, phased, max(batches), f"{preset}-eager.h5",
                                     ["--no-graphs"], args.out) if args.eager else None)
            graph_steps, eager_steps = decode_medians(graphs_log), decode_medians(eager_log) if eager_log else {}
            prefill = prefill_rate(graphs_log)
        except (RuntimeError, StopIteration) as e:
            print(json.dumps(dict(engine="moetron", model=preset, error=str(e)[-2000:])), flush=True)
            continue
        for b in batches:
            bytes_, flops = step_cost(cfg, b, context)
            # The copy's bytes read + written per second is the HBM's total rate, which reads
            # alone can use (the roofline: ~2.6 GB at 3.02 TB/s = ~1,100 tok/s).
            floor = max(bytes_ / bw, flops / peak)
            r = dict(engine="moetron", model=preset, batch=b, context=context, step_bytes=bytes_,
                     step_flops=flops, roofline_step_s=floor, roofline_tok_s=b / floor, prefill_tok_s=prefill)
            if b in graph_steps:
                r.update(decode_step_s=graph_steps[b], decode_tok_s=b / graph_steps[b],
                         fraction_of_roofline=floor / graph_steps[b])
            if b in eager_steps:
                records.append(dict(engine="moetron-eager", model=preset, batch=b, decode_step_s=eager_steps[b]))
            print(json.dumps(r), flush=True)
            records.append(r)
        for b in [int(x) for x in args.idle_batches.split(",") if x]:
            prompts = os.path.join(args.out, f"idle-{b}.jsonl")
            make_prompts(prompts, b, args.prompt, args.steps + 1, 30000)
            for graphs in (True, False):
                mode = [] if graphs else ["--no-graphs"]
                try:
                    untraced = decode_medians(run_moetron(args.moetron, model, prompts, b, f"idle-{b}.h5", mode,
                                                          args.out)).get(b)
                    r = idle_shares(run_moetron(args.moetron, model, prompts, b, f"idle-{b}.h5",
                                                ["--measure-gpu-idle"] + mode, args.out), untraced)
                except RuntimeError as e:
                    r = dict(error=str(e)[-2000:])
                r.update(engine="idle-graphs" if graphs else "idle-eager", model=preset, batch=b)
                print(json.dumps(r), flush=True)
                records.append(r)
        for b in [int(x) for x in args.sampling_batches.split(",") if x]:
            records.append(measure_sampling(args.moetron, model, preset, b, args.prompt, 2 * args.steps, args.out))
        for prompt in [int(x) for x in args.prefill_prompts.split(",") if x]:
            records += measure_prefill(args.moetron, model, preset, cfg, prompt, args.out, peak, args.hf_prefill)
        if args.startup:
            records.append(measure_startup(args.moetron, preset, args.out))
        if args.hf_decode:
            for r in hf_bench("decode", "--model", model, "--batches", args.hf_batches, "--prompt", args.prompt,
                              "--new-tokens", args.new_tokens, "--reps", 2):
                r["model"] = preset
                print(json.dumps(r), flush=True)
                records.append(r)
    meta = dict(device=device, date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                hbm_bytes_per_s=bw, bf16_flops_per_s=peak, prompt=args.prompt, new_tokens=args.new_tokens,
                steps=args.steps)
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump(dict(meta=meta, records=records), f, indent=1)
    write_table(meta, records, os.path.join(args.out, "RESULTS.md"))
    try:
        import h5py, numpy as np
        with h5py.File(os.path.join(args.out, "bench.h5.tmp"), "w") as f:
            for k, v in meta.items():
                f.attrs[k] = v
            keys = sorted({k for r in records for k in r if isinstance(r[k], (int, float))})
            for k in keys:
                f[k] = np.array([np.nan if r.get(k) is None else r.get(k, np.nan) for r in records], dtype=float)
            f["engine"] = np.array([r["engine"] for r in records], dtype=h5py.string_dtype())
            f["model"] = np.array([r["model"] for r in records], dtype=h5py.string_dtype())
        os.replace(os.path.join(args.out, "bench.h5.tmp"), os.path.join(args.out, "bench.h5"))
    except ImportError:
        print("h5py not available: bench.h5 not written (bench.json holds everything)")


if __name__ == "__main__":
    main()
