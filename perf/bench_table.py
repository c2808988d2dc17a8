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
             "| model | batch | moetron decode tok/s (step ms) | roofline tok/s | fraction | eager step ms | GPU idle in step: graphs / eager | GPU idle between kernels (graphs), untraced estimate | prefill tok/s | HF decode tok/s | speedup vs HF |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    by = {(r["engine"], r["model"], r.get("batch")): r for r in records}
    by = {k: v for k, v in by.items() if k[2] is not None}
    for (engine, model, b), r in sorted(by.items(), key=lambda x: (x[0][1], x[0][2])):
        if engine != "moetron":
            continue
        if "decode_step_s" not in r:
            lines.append(f"| {model} | {b} | not measured | | | | | | | | |")
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
        between = (f"{ig['idle_between_kernels']:.1%}, {ig['idle_untraced_estimate']:.1%}"
                   if "idle_untraced_estimate" in ig else "-")
        lines.append(
            f"| {model} | {b} | {rate:.0f} ({r['decode_step_s'] * 1e3:.2f}) | {r['roofline_tok_s']:.0f} | "
            f"{r['fraction_of_roofline']:.0%} | {eager_ms} | {idle} | {between} | {r['prefill_tok_s']:.0f} | {hf_text} | {speedup} |")
    lines += prefill_lines(records) + sampling_lines(records) + startup_lines(records)
    return lines


def section(rows, columns, done, lead, cells):
    """A table of its own: one line per record, `lead(r)` (the cells naming it) then `cells(r)`,
    or "failed" where the record lacks the key `done`; nothing without records."""
    if not rows:
        return []
    lines = ["", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        named = lead(r)
        filled = cells(r) if done in r else ["failed"] + [""] * (len(columns) - len(named) - 1)
        lines.append("| " + " | ".join(named + filled) + " |")
    return lines


def of_engine(records, engine):
    return [r for r in records if r["engine"] == engine]


def sampling_lines(records):
    """Sampling's cost over greedy decode at the same batch, with the repeats' spread (noise)."""
    return section(
        of_engine(records, "moetron-sampling"),
        ["model", "batch", "greedy step ms", "temperature 0.8, top-p 0.9 step ms", "sampling's cost",
         "spread of repeats (greedy / sampled)"], "greedy_step_s",
        lambda r: [r["model"], str(r["batch"])],
        lambda r: [f"{r['greedy_step_s'] * 1e3:.2f}", f"{r['sampled_step_s'] * 1e3:.2f}", f"{r['sampling_overhead']:+.1%}",
                   f"{r['greedy_spread']:.1%} / {r['sampled_spread']:.1%}"])


def prefill_lines(records):
    """Prompt tokens per second, Moetron against HF, and each as a fraction of the GEMM rate."""
    hf = {(r["model"], r["prompt"]): r for r in of_engine(records, "hf-prefill")}

    def cells(r):
        h = hf.get((r["model"], r["prompt"]), {})
        hr = h.get("prefill_tok_s")
        return [f"{r['prefill_tok_s']:.0f}", f"{r['fraction_of_gemm_rate']:.0%}",
                f"{hr:.0f} ({h['batch']})" if hr else "-", f"{h['fraction_of_gemm_rate']:.0%}" if hr else "-",
                f"{r['prefill_tok_s'] / hr:.2f}x" if hr else "-"]
    return section(
        sorted(of_engine(records, "moetron-prefill"), key=lambda r: (r["model"], r["prompt"])),
        ["model", "prompt tokens", "moetron prefill tok/s", "of bf16 GEMM rate", "HF prefill tok/s (batch)",
         "of bf16 GEMM rate", "speedup vs HF"], "prefill_tok_s",
        lambda r: [r["model"], str(r["prompt"])], cells)


def startup_lines(records):
    """A cold start from a full-size checkpoint on the machine's disk."""
    return section(
        of_engine(records, "moetron-startup"),
        ["model", "checkpoint", "ready in", "weights read", "disk cold read", "of disk rate", "KV cache",
         "decode graphs"], "startup_s",
        lambda r: [r["model"], f"{r['checkpoint_bytes'] / 1e9:.1f} GB in {r['shards']} shards"],
        lambda r: [f"{r['startup_s']:.1f} s", f"{r['weights_s']:.1f} s ({r['weights_read_bytes_per_s'] / 1e9:.2f} GB/s)",
                   f"{r['disk_read_bytes_per_s'] / 1e9:.2f} GB/s", f"{r['fraction_of_disk_rate']:.0%}",
                   f"{r['kv_cache_s']:.2f} s", f"{r['graphs']} in {r['graphs_s']:.2f} s"])


def write_table(meta, records, path):
    with open(path, "w") as f:
        f.write("\n".join(table_lines(meta, records)) + "\n")


if __name__ == "__main__":
    for i, name in enumerate(sys.argv[1:]):
        with open(name) as f:
            data = json.load(f)
        print(("\n" if i else "") + "\n".join(table_lines(data["meta"], data["records"])))



