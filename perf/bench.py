#!/usr/bin/env python3
"""The benchmark table of the CUDA issue, in one run on the GPU machine:

  python3 perf/bench.py --moetron build/moetron --models olmoe-1b-7b,qwen1.5-moe-a2.7b --out DIR

For each model shape (random bf16 weights: `moetron run --load-format dummy`, and the same shape
with random weights in Hugging Face transformers), at each batch size with 512-token prompts:
Moetron's decode step latency and throughput (CUDA graphs, and eagerly), its prefill
throughput, HF's decode throughput (generate of N tokens minus generate of 1), and each figure
against its roofline: the bytes a decode step must read (attention and dense weights, the
experts a batch hits under uniform routing, the KV cache, the LM head) over the measured HBM
bandwidth, and its FLOPs over the measured bf16 GEMM rate. Writes DIR/bench.json (every
record), DIR/RESULTS.md (the table) and DIR/bench.h5 (when h5py is present).
"""
import argparse, datetime, json, os, re, subprocess, sys, time

import torch

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


def run_moetron(binary, model, batch, prompt, new, graphs, out, measure_idle=False):
    prompts = os.path.join(out, f"prompts-{batch}.jsonl")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_prompts.py"), prompts,
                    str(batch), str(prompt), str(new), "30000"], check=True)
    cmd = [binary, "run", "--model", model, "--load-format", "dummy", "--prompts", prompts,
           "--out", os.path.join(out, f"moetron-{batch}.h5"), "--ignore-eos", "--backend", "cuda",
           "--max-batch", str(max(batch, 1)), "--max-batch-tokens", "16384",
           "--kv-cache-tokens", str(batch * (prompt + new) + 4096)]
    if not graphs:
        cmd.append("--no-graphs")
    if measure_idle:
        cmd.append("--measure-gpu-idle")
    log = subprocess.run(cmd, capture_output=True, text=True)
    if log.returncode != 0:
        return dict(error=log.stderr[-2000:])
    if measure_idle:  # tracing slows kernels down: only the idle shares count from this run
        m = re.search(r"GPU idle within decode steps: median ([\d.]+)% \(p90 ([\d.]+)%\); "
                      r"whole step incl. host: median ([\d.]+)%; (\d+) kernels/step", log.stderr)
        if not m:
            return dict(error="no idle line in the log:\n" + log.stderr[-2000:])
        return dict(idle_within_step=float(m.group(1)) / 100, idle_within_step_p90=float(m.group(2)) / 100,
                    idle_whole_step=float(m.group(3)) / 100, kernels_per_step=int(m.group(4)))
    m = re.search(r"prefill (\d+) tok/s; decode median step ([\d.e+-]+) ms at batch (\d+)", log.stderr)
    if not m:
        return dict(error="no step summary in the log:\n" + log.stderr[-2000:])
    return dict(prefill_tok_s=float(m.group(1)), decode_step_s=float(m.group(2)) / 1e3,
                decode_batch=int(m.group(3)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moetron", required=True)
    ap.add_argument("--models", default="olmoe-1b-7b,qwen1.5-moe-a2.7b")
    ap.add_argument("--batches", default="1,8,32,64,128,256")
    ap.add_argument("--hf-batches", default="1,8,32,64")
    ap.add_argument("--eager-batches", default="1,64")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=32)
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
        context = args.prompt + args.new_tokens // 2
        for b in [int(x) for x in args.batches.split(",")]:
            for graphs in (True, False):
                if not graphs and str(b) not in args.eager_batches.split(","):
                    continue
                t = time.time()
                r = run_moetron(args.moetron, model, b, args.prompt, args.new_tokens, graphs, args.out)
                bytes_, flops = step_cost(cfg, b, context)
                floor = max(bytes_ / (bw / 2), flops / peak)  # bw/2: a copy counts read + write
                r.update(engine="moetron" if graphs else "moetron-eager", model=preset, batch=b,
                         step_bytes=bytes_, step_flops=flops, roofline_step_s=floor,
                         roofline_tok_s=b / floor, wall_s=time.time() - t)
                if "decode_step_s" in r:
                    r["decode_tok_s"] = b / r["decode_step_s"]
                    r["fraction_of_roofline"] = floor / r["decode_step_s"]
                print(json.dumps(r), flush=True)
                records.append(r)
                if str(b) in args.eager_batches.split(","):
                    idle = run_moetron(args.moetron, model, b, args.prompt, args.new_tokens, graphs, args.out,
                                       measure_idle=True)
                    idle.update(engine=("idle-graphs" if graphs else "idle-eager"), model=preset, batch=b)
                    print(json.dumps(idle), flush=True)
                    records.append(idle)
        hf = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "hf_bench.py"),
                             "--model", model, "--batches", args.hf_batches, "--prompt", str(args.prompt),
                             "--new-tokens", str(args.new_tokens)], capture_output=True, text=True)
        for line in hf.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                r["model"] = preset
                print(json.dumps(r), flush=True)
                records.append(r)
        if hf.returncode != 0:
            print("hf_bench failed:", hf.stderr[-2000:], flush=True)
    meta = dict(device=device, date=datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"),
                hbm_bytes_per_s=bw, bf16_flops_per_s=peak, prompt=args.prompt, new_tokens=args.new_tokens)
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
                f[k] = np.array([r.get(k, np.nan) for r in records], dtype=float)
            f["engine"] = np.array([r["engine"] for r in records], dtype=h5py.string_dtype())
            f["model"] = np.array([r["model"] for r in records], dtype=h5py.string_dtype())
        os.replace(os.path.join(args.out, "bench.h5.tmp"), os.path.join(args.out, "bench.h5"))
    except ImportError:
        print("h5py not available: bench.h5 not written (bench.json holds everything)")


def write_table(meta, records, path):
    lines = [f"Device: {meta['device']}, {meta['date']}. Measured HBM {meta['hbm_bytes_per_s'] / 1e12:.2f} TB/s "
             f"(copy, read + write), bf16 GEMM {meta['bf16_flops_per_s'] / 1e12:.0f} TFLOP/s. Prompts of "
             f"{meta['prompt']} tokens, {meta['new_tokens']} new tokens, random bf16 weights.", "",
             "| model | batch | moetron decode tok/s (step ms) | roofline tok/s | fraction | eager step ms | GPU idle in step: graphs / eager | prefill tok/s | HF decode tok/s | speedup vs HF |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by = {(r["engine"], r["model"], r["batch"]): r for r in records}
    for (engine, model, b), r in sorted(by.items(), key=lambda x: (x[0][1], x[0][2])):
        if engine != "moetron":
            continue
        if "error" in r:
            lines.append(f"| {model} | {b} | error | | | | | | | |")
            continue
        eager = by.get(("moetron-eager", model, b), {})
        hf = by.get(("hf", model, b), {})
        hf_rate = hf.get("decode_tok_s")
        rate = r["decode_tok_s"]
        hf_text = f"{hf_rate:.0f}" if hf_rate else "-"
        speedup = f"{rate / hf_rate:.1f}x" if hf_rate else "-"
        eager_ms = eager.get("decode_step_s", float("nan")) * 1e3
        ig, ie = by.get(("idle-graphs", model, b), {}), by.get(("idle-eager", model, b), {})
        idle = (f"{ig['idle_within_step']:.1%} / {ie['idle_within_step']:.1%}"
                if "idle_within_step" in ig and "idle_within_step" in ie else "-")
        lines.append(
            f"| {model} | {b} | {rate:.0f} ({r['decode_step_s'] * 1e3:.2f}) | {r['roofline_tok_s']:.0f} | "
            f"{r['fraction_of_roofline']:.0%} | {eager_ms:.2f} | {idle} | {r['prefill_tok_s']:.0f} | {hf_text} | {speedup} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
