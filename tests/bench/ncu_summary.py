#!/usr/bin/env python3
"""GPU time per kernel from an Nsight Compute CSV, grouped by kernel, largest first.

Usage: ncu_summary.py NCU_CSV [TOP]

NCU_CSV is what `ncu --metrics gpu__time_duration.sum --csv --page raw --log-file NCU_CSV PROGRAM`
writes; with `orbit_bench_cuda --child 1 --reps 1 --profile 1` under `ncu --profile-from-start off`,
that is one ResNet-50 training step. Kernels are grouped by name without their argument list (and,
for Orbit's own kernels, by the kernel's functor); each row gives the total time, the number of
launches and the share of the whole. Standard library only.
"""
import collections
import csv
import re
import sys


def load(path):
    lines = [line for line in open(path, encoding="utf-8", errors="replace") if line.startswith('"')]
    if not lines:
        sys.exit(f"ncu_summary: {path} has no CSV rows (did ncu profile any kernel?)")
    rows = list(csv.reader(lines))
    head = rows[0]
    for col in ("Kernel Name", "gpu__time_duration.sum"):
        if col not in head:
            sys.exit(f"ncu_summary: {path} has no column {col!r} (expected ncu --csv --page raw with "
                     f"--metrics gpu__time_duration.sum); its columns start {head[:6]}")
    k, t = head.index("Kernel Name"), head.index("gpu__time_duration.sum")
    unit = rows[1][t] if len(rows) > 1 else ""
    scale = {"ns": 1e-6, "us": 1e-3, "usecond": 1e-3, "nsecond": 1e-6, "ms": 1.0, "msecond": 1.0}.get(unit)
    if scale is None:
        sys.exit(f"ncu_summary: unknown time unit {unit!r} in {path} (expected ns, us or ms)")
    return [(r[k], float(r[t].replace(",", "")) * scale) for r in rows[2:] if len(r) > t]


def group(name):
    name = re.sub(r"\(.*", "", name).strip()
    m = re.match(r"void orbit::launch_kernel<(.*)>$", name)
    if m:
        return "orbit: " + re.sub(r"^orbit::", "", m.group(1))
    return re.sub(r"^void ", "", re.sub(r"<.*", "", name))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    kernels = load(sys.argv[1])
    total = sum(t for _, t in kernels)
    agg = collections.defaultdict(lambda: [0, 0.0])
    for name, t in kernels:
        g = agg[group(name)]
        g[0] += 1
        g[1] += t
    print(f"{len(kernels)} kernels, {total:.2f} ms of GPU time")
    print(f"{'ms':>9} {'launches':>8} {'share':>6}  kernel")
    for name, (n, t) in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{t:9.3f} {n:8d} {100 * t / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
