#!/usr/bin/env python3
"""The benchmark table (markdown) from perf/bench.py's JSON files.

  python3 perf/bench_table.py perf/results/*.json > table.md
"""
import json, sys


def table_lines(meta, records):
    lines = [f"Device: {meta['device']}, {meta['date']}. Measured HBM {meta['hbm_bytes_per_s'] / 1e12:.2f} TB/s "
             f"(copy, read + write), bf16 GEMM {meta['bf16_flops_per_s'] / 1e12:.0f} TFLOP/s. Prompts of "
             f"{meta['prompt']} tokens; median decode step over {meta['steps']} steps at each batch size "
             f"(context about {meta['prompt']}-{meta['prompt'] + meta['new_tokens']}); random bf16 weights. "
             f"HF: transformers generate(), bf16, {meta['new_tokens']} new tokens minus 1.", "",
             "| model | batch | moetron decode tok/s (step ms) | roofline tok/s | fraction | eager step ms | GPU idle in step: graphs / eager | prefill tok/s | HF decode tok/s | speedup vs HF |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by = {(r["engine"], r["model"], r.get("batch")): r for r in records}
    by = {k: v for k, v in by.items() if k[2] is not None}
    for (engine, model, b), r in sorted(by.items(), key=lambda x: (x[0][1], x[0][2])):
        if engine != "moetron":
            continue
        if "decode_step_s" not in r:
            lines.append(f"| {model} | {b} | not measured | | | | | | | |")
            continue
        eager = by.get(("moetron-eager", model, b), {})
        hf = by.get(("hf", model, b), {})
        hf_rate = hf.get("decode_tok_s")
        rate = r["decode_tok_s"]
        hf_text = f"{hf_rate:.0f}" if hf_rate else "-"
        speedup = f"{rate / hf_rate:.1f}x" if hf_rate else "-"
        eager_ms = f"{eager['decode_step_s'] * 1e3:.2f}" if "decode_step_s" in eager else "-"
        ig, ie = by.get(("idle-graphs", model, b), {}), by.get(("idle-eager", model, b), {})
        idle = (f"{ig['idle_within_step']:.1%} / {ie['idle_within_step']:.1%}"
                if "idle_within_step" in ig and "idle_within_step" in ie else "-")
        lines.append(
            f"| {model} | {b} | {rate:.0f} ({r['decode_step_s'] * 1e3:.2f}) | {r['roofline_tok_s']:.0f} | "
            f"{r['fraction_of_roofline']:.0%} | {eager_ms} | {idle} | {r['prefill_tok_s']:.0f} | {hf_text} | {speedup} |")
    return lines


def write_table(meta, records, path):
    with open(path, "w") as f:
        f.write("\n".join(table_lines(meta, records)) + "\n")


if __name__ == "__main__":
    for i, name in enumerate(sys.argv[1:]):
        with open(name) as f:
            data = json.load(f)
        print(("\n" if i else "") + "\n".join(table_lines(data["meta"], data["records"])))



