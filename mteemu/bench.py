"""`mteemu bench` (and scripts/bench): guest workloads under mteemu and qemu-aarch64 in
the same run, alternating, N runs each; medians, the ratio mteemu/qemu with its spread
(min..max of the per-pair ratios), guest instructions or memory accesses per second
where the workload knows how many it makes, and the issue's target ratio.

The workloads are C programs in mteemu/data/bench/, each with `// name:`, `// target:`,
and optionally `// insns:`, `// accesses:` and `// options:` (run options for both)."""
from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mteemu.atomicfile import write_text
from mteemu.errors import InputError

WORKLOADS_DIR = Path(__file__).resolve().parent / "data" / "bench"
CC = ["aarch64-linux-gnu-gcc", "-static", "-O2", "-march=armv8.5-a+memtag"]


@dataclass
class Workload:
    name: str
    source: Path
    options: list[str]
    target: Optional[float]
    insns: Optional[int]
    accesses: Optional[int]


def workloads() -> list[Workload]:
    out = []
    for src in sorted(WORKLOADS_DIR.glob("*.c")):
        text = src.read_text()

        def key(k: str) -> Optional[str]:
            m = re.search(rf"^//\s*{k}:\s*(.*)$", text, re.M)
            return m.group(1).strip() if m else None
        target = key("target")
        out.append(Workload(name=key("name") or src.stem, source=src, options=shlex.split(key("options") or ""),
                            target=float(target) if target and target != "none" else None,
                            insns=int(key("insns")) if key("insns") else None,
                            accesses=int(key("accesses")) if key("accesses") else None))
    return out


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def measure(w: Workload, exe: Path, runs: int) -> dict:
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_timed([sys.executable, "-m", "mteemu", "run", *w.options, str(exe)]))
        theirs.append(_timed(["qemu-aarch64", *w.options, str(exe)]))
    ratios = [a / b for a, b in zip(ours, theirs)]
    m, q = statistics.median(ours), statistics.median(theirs)
    r = {"workload": w.name, "runs": runs, "mteemu_s": m, "qemu_s": q, "ratio": m / q,
         "ratio_min": min(ratios), "ratio_max": max(ratios), "target": w.target}
    if w.insns:
        r["mteemu_minsn_s"], r["qemu_minsn_s"] = w.insns / m / 1e6, w.insns / q / 1e6
    if w.accesses:
        r["mteemu_macc_s"], r["qemu_macc_s"] = w.accesses / m / 1e6, w.accesses / q / 1e6
    return r


def _line(r: dict) -> str:
    rate = ""
    if "mteemu_minsn_s" in r:
        rate = f"  {r['mteemu_minsn_s']:7.0f} vs {r['qemu_minsn_s']:.0f} Minsn/s"
    elif "mteemu_macc_s" in r:
        rate = f"  {r['mteemu_macc_s']:7.1f} vs {r['qemu_macc_s']:.1f} Macc/s"
    target = f"  target <= {r['target']:g}x" if r["target"] else ""
    return (f"{r['workload']:42s} mteemu {r['mteemu_s']:7.3f} s  qemu {r['qemu_s']:7.3f} s  "
            f"ratio {r['ratio']:6.2f}x ({r['ratio_min']:.2f}..{r['ratio_max']:.2f}){target}{rate}")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="mteemu bench", description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="runs per emulator and workload (default 5)")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--only", help="run only workloads whose name contains this")
    args = ap.parse_args(argv)
    if args.n < 1:
        raise InputError("-n must be at least 1")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in workloads():
            if args.only and args.only not in w.name:
                continue
            exe = Path(tmp) / w.source.stem
            subprocess.run(CC + [str(w.source), "-o", str(exe)], check=True)
            r = measure(w, exe, args.n)
            results.append(r)
            print(_line(r), flush=True)
    if args.json:
        write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0
