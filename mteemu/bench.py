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

from mteemu.atomicfile import check_target, write_text
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

        def key(k: str, text: str = text) -> Optional[str]:
            m = re.search(rf"^//\s*{k}:\s*(.*)$", text, re.M)
            return m.group(1).strip() if m else None
        target, insns, accesses = key("target"), key("insns"), key("accesses")
        out.append(Workload(name=key("name") or src.stem, source=src, options=shlex.split(key("options") or ""),
                            target=float(target) if target and target != "none" else None,
                            insns=int(insns) if insns else None, accesses=int(accesses) if accesses else None))
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


def measure_history(w: Workload, exe: Path, runs: int) -> dict:
    """--alloc-history's cost: mteemu without and with it, and qemu-aarch64, alternating."""
    off, on, theirs = [], [], []
    for _ in range(runs):
        off.append(_timed([sys.executable, "-m", "mteemu", "run", *w.options, str(exe)]))
        on.append(_timed([sys.executable, "-m", "mteemu", "run", "--alloc-history", *w.options, str(exe)]))
        theirs.append(_timed(["qemu-aarch64", *w.options, str(exe)]))
    costs = [b / a - 1 for a, b in zip(off, on)]
    m_off, m_on, q = statistics.median(off), statistics.median(on), statistics.median(theirs)
    return {"workload": w.name, "runs": runs, "mteemu_s": m_off, "history_s": m_on, "qemu_s": q,
            "cost": m_on / m_off - 1, "cost_min": min(costs), "cost_max": max(costs),
            "ratio": m_off / q, "history_ratio": m_on / q}


def _history_line(r: dict) -> str:
    return (f"{r['workload']:42s} mteemu {r['mteemu_s']:7.3f} s  with history {r['history_s']:7.3f} s  "
            f"cost {r['cost'] * 100:+5.1f}% ({r['cost_min'] * 100:+.1f}..{r['cost_max'] * 100:+.1f})  "
            f"qemu {r['qemu_s']:7.3f} s  ratios {r['ratio']:.2f}x -> {r['history_ratio']:.2f}x")


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
    ap.add_argument("--alloc-history", action="store_true",
                    help="instead: what --alloc-history costs on the workloads that use glibc's heap tagging")
    ap.add_argument("--allocator", action="store_true",
                    help="instead: the tag-storage page allocator alone on a 64 GiB board (no qemu equivalent)")
    ap.add_argument("--pages", type=int, default=1_000_000, help="pages for --allocator (default 1,000,000)")
    ap.add_argument("--policy", choices=("metadata", "cma"), default="metadata", help="policy for --allocator")
    args = ap.parse_args(argv)
    if args.n < 1:
        raise InputError("-n must be at least 1")
    if args.json:
        check_target(args.json, "--json")
    if args.allocator:
        if args.pages < 1:
            raise InputError("--pages must be at least 1")
        r = allocator_bench(args.pages, args.policy)
        print(f"allocator ({r['policy']}, {r['board_gib']} GiB board): {r['pages']} pages  "
              f"alloc+reserve {r['alloc_per_s']:,.0f}/s  tag {r['tag_per_s']:,.0f}/s  free {r['free_per_s']:,.0f}/s  "
              f"blocks reserved {r['blocks']}  host memory +{r['rss_mib']:.0f} MiB "
              f"(peak RSS {r['peak_rss_mib']:.0f} MiB)")
        if args.json:
            write_text(args.json, json.dumps(r, indent=2) + "\n")
        return 0
    from mteemu.machine import native

    print(f"hot path: {native.describe()}", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in workloads():
            if args.only and args.only not in w.name:
                continue
            if args.alloc_history and "glibc.mem.tagging" not in " ".join(w.options):
                continue
            exe = Path(tmp) / w.source.stem
            subprocess.run(CC + [str(w.source), "-o", str(exe)], check=True)
            r = measure_history(w, exe, args.n) if args.alloc_history else measure(w, exe, args.n)
            r["hot_path"] = native.describe()
            results.append(r)
            print(_history_line(r) if args.alloc_history else _line(r), flush=True)
    if args.json:
        write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


def allocator_bench(pages: int, policy: str) -> dict:
    """Allocate `pages` tagged pages (each reserving its tag block), give each its tags,
    free them all, on a 64 GiB board: the allocator's throughput and what it cost the
    host in memory (its untouched RAM must cost nothing)."""
    import time

    from mteemu.board.model import Board, GiB, MemRegion, TagRegion
    from mteemu.kernel.mm.boot import boot_mm
    from mteemu.machine.physmem import PAGE_SHIFT

    def rss_mib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / (1 << 20)

    data = MemRegion(base=0x8_8000_0000, size=62 * GiB, name="data")
    tags = MemRegion(base=data.end, size=data.size // 32, name="tags")
    board = Board("bench-64g", memory=(data, tags), tag_regions=(TagRegion(tags.base, tags.size, data),))
    before = rss_mib()
    ms = boot_mm(board, policy)
    store, alloc = ms.tags, ms.alloc
    t0 = time.perf_counter()
    got = [alloc.alloc(tagged=True, anon=False) for _ in range(pages)]
    t1 = time.perf_counter()
    for pfn in got:
        alloc.sync_tags(pfn)                      # tags initialised (zeroed) in the tag block
        store.set_range(pfn << PAGE_SHIFT, 16, 5)   # and one granule tagged
    t2 = time.perf_counter()
    blocks = len(alloc.tag_storage.blocks)
    peak = rss_mib()
    for pfn in got:
        alloc.put(pfn)
    t3 = time.perf_counter()
    if alloc.used_pages != 2:                      # the zero page and its tag block remain
        raise AssertionError(f"{alloc.used_pages} pages still in use after freeing everything")
    return {"policy": policy, "board_gib": round((data.size + tags.size) / GiB, 2), "pages": pages,
            "alloc_per_s": pages / (t1 - t0), "tag_per_s": pages / (t2 - t1), "free_per_s": pages / (t3 - t2),
            "blocks": blocks, "rss_mib": peak - before, "peak_rss_mib": peak,
            "seconds": t3 - t0}
