#!/usr/bin/env python3
"""Per-kernel table from an Nsight Compute CSV (`ncu --csv --page raw --metrics
gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum ...`): launches, total and
mean time, DRAM bytes and the rate each kernel reached, sorted by total time.

    perf/ncu_summary.py NCU.csv [--hbm-tbs 4.25] [--steps N]

--steps divides the totals by the number of decode steps profiled (per-step figures);
--hbm-tbs gives the HBM rate that the last column compares against."""
import argparse
import csv
import sys
from collections import defaultdict


def number(text):
    return float(text.replace(",", "")) if text not in ("", "n/a") else 0.0


def kernel_label(demangled):
    """A kernel's name without return type, namespaces, template and call arguments."""
    name = demangled.replace("(anonymous namespace)::", "").replace("<unnamed>::", "")
    name = name[5:] if name.startswith("void ") else name
    name = name.split("(")[0].split("<")[0]
    return name.rsplit("::", 1)[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--hbm-tbs", type=float, default=4.25, help="HBM rate in TB/s (default 4.25, H200)")
    ap.add_argument("--steps", type=float, default=1.0, help="decode steps the profile covers")
    args = ap.parse_args()
    with open(args.csv, newline="") as f:
        lines = [l for l in f if l.startswith('"')]  # ncu prints its own log lines first
    rows = list(csv.DictReader(lines))
    if not rows:
        sys.exit(f"ncu_summary.py: {args.csv}: no kernel rows")
    units = rows[0]  # the --page raw CSV's second line gives the units
    scale_t = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(units.get("gpu__time_duration.sum", "nsecond"), 1e-3)
    scale_b = {"byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}
    by_name = defaultdict(lambda: [0, 0.0, 0.0])
    for r in rows[1:]:
        name = kernel_label(r.get("Kernel Name", "?"))
        t_us = number(r["gpu__time_duration.sum"]) * scale_t
        b = sum(number(r[m]) * scale_b.get(units.get(m, "byte"), 1.0)
                for m in ("dram__bytes_read.sum", "dram__bytes_write.sum") if m in r)
        acc = by_name[name]
        acc[0] += 1
        acc[1] += t_us
        acc[2] += b
    total_t = sum(v[1] for v in by_name.values())
    total_b = sum(v[2] for v in by_name.values())
    print(f"{(len(rows) - 1) / args.steps:g} launches, {total_t / args.steps:.1f} us and {total_b / args.steps / 1e6:.2f} MB "
          f"of DRAM traffic per step ({args.steps:g} steps); kernels run back to back under ncu, "
          f"so gaps are not counted")
    print(f"{'kernel':48} {'launch/step':>11} {'us/step':>9} {'us/launch':>9} {'MB/step':>9} {'GB/s':>7} {'of HBM':>6}")
    for name, (n, t, b) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
        rate = b / (t * 1e-6) / 1e9 if t > 0 else 0.0
        print(f"{name[:48]:48} {n / args.steps:11.1f} {t / args.steps:9.1f} {t / n:9.2f} "
              f"{b / args.steps / 1e6:9.2f} {rate:7.0f} {rate / (args.hbm_tbs * 1e3):6.0%}")


if __name__ == "__main__":
    main()
