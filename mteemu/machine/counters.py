"""Who did the work: the hot path's counters (`mteemu run --stats`, `mteemu bench`).

The native path counts what it decides in C (`_native.c`'s fast_hits, insns_native,
fill_hits); these count what reached Python, on either path. The Python share is what
issue 24 keeps under 0.1 %: Python is the reference and the exception."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counters:
    python_checks: int = 0      # tag checks made by TagChecker.on_access
    python_insns: int = 0       # MTE instructions executed by mte_insns.py
    python_fills: int = 0       # TLB fills answered by machine/hooks.py's Python fill
    flushes: int = 0            # whole-TLB flushes


@dataclass(frozen=True)
class HotPath:
    """One run's totals: (native, python) pairs."""

    checks: tuple[int, int]
    insns: tuple[int, int]
    fills: tuple[int, int]
    flushes: int
    page_flushes: int
    tlb_grows: int                    # whole flushes made so that Unicorn's TLB could grow

    def line(self) -> str:
        def pair(name: str, p: tuple[int, int]) -> str:
            total = p[0] + p[1]
            share = f" ({100 * p[1] / total:.3g}% Python)" if total else ""
            return f"{name} C={p[0]} Python={p[1]}{share}"
        return (f"hot path {pair('checks', self.checks)}, {pair('mte-insns', self.insns)}, "
                f"{pair('tlb-fills', self.fills)}, flushes={self.flushes} page-flushes={self.page_flushes} "
                f"tlb-grows={self.tlb_grows}")
