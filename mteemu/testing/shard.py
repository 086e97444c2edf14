"""Splitting a guest suite over N CI machines: `--shard K/N` selects a deterministic slice.

The same N gives disjoint slices that together hold every test exactly once, on every
machine (the choice depends only on test names and, when given, the durations of an
earlier run — never on the machine, the order of discovery or the clock). With
durations (`mteemu test --json` output) the slices are balanced by time: longest test
first into the currently shortest slice (LPT scheduling), so no two slices differ by
more than the longest test; without, by count (every N-th test in name order).
"""
from __future__ import annotations

import json
import statistics
from typing import Iterable, Optional

from mteemu.errors import InputError
from mteemu.inputs import read_regular


def parse(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N <= 1000; InputError otherwise."""
    k_text, sep, n_text = text.partition("/")
    try:
        k, n = int(k_text), int(n_text)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n <= 1000:
        raise InputError(f"--shard {text}: expected K/N with 1 <= K <= N (e.g. 2/4)")
    return k, n


def load_durations(path: str) -> dict[str, float]:
    """Test name -> seconds, from the JSON `mteemu test --json` writes."""
    try:
        rows = json.loads(read_regular(path, "a durations file (mteemu test --json)", 64 << 20))
        return {str(r["name"]): float(r["seconds"]) for r in rows}
    except (ValueError, TypeError, KeyError) as e:
        raise InputError(f"--durations {path}: not the JSON that mteemu test --json writes ({e})") from None


def assign(names: Iterable[str], n: int, durations: Optional[dict[str, float]] = None) -> dict[str, int]:
    """Every name -> its shard (0 .. n-1)."""
    ordered = sorted(set(names))
    if not durations:
        return {name: i % n for i, name in enumerate(ordered)}
    known = [durations[name] for name in ordered if name in durations]
    default = statistics.median(known) if known else 1.0        # a new test: a typical one
    cost = {name: max(0.0, durations.get(name, default)) for name in ordered}
    loads = [0.0] * n
    out: dict[str, int] = {}
    for name in sorted(ordered, key=lambda x: (-cost[x], x)):
        shard = min(range(n), key=lambda i: (loads[i], i))
        out[name] = shard
        loads[shard] += cost[name]
    return out


def select(names: Iterable[str], k: int, n: int, durations: Optional[dict[str, float]] = None) -> set[str]:
    """The names in shard K of N (1-based)."""
    return {name for name, shard in assign(names, n, durations).items() if shard == k - 1}
