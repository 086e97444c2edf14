"""Why a tag-check fault happened, as Android's MTE crash reports say it (Scudo's
getErrorInfo(), source.android.com/docs/security/test/memory-safety/mte-reports): the
candidate causes, most likely first, each with the allocation it concerns and who
allocated and freed it.

From the allocator's calls (machine/allochist.py), replayed in order:

* **use after free**: the address lies in a freed allocation whose tag was the pointer's
  (the memory has been retagged since); a **double free** when the fault is in free()
  itself at the start of that allocation (glibc's free() reads the block it frees, which
  a second free finds retagged);
* **buffer overflow / underflow**: the address lies outside a live allocation whose tag
  is the pointer's, N bytes right of its end or left of its start (within 4 KiB).

Without an allocator (a stripped static program, a bump allocator of its own), the tag
stores are the evidence: the region last tagged with the pointer's tag next to the
address (an overflow or underflow of that region), or covering it and tagged again
since (a use after the region was retagged).

Nothing is invented: a fault far from anything recorded has no cause.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Callable, Optional

from mteemu.machine.allochist import KIND_ALLOC, KIND_FREE, OP_NAMES, Event

GRANULE = 16
NEAR = 4096                   # how far from an allocation an access may still be its overflow
MAX_CAUSES = 4

FREE_FUNCTIONS = {"free", "__libc_free", "cfree"}


@dataclass(frozen=True)
class Trace:
    """One recorded call (or tag store): who and where."""
    op: str                   # "malloc", "free", ..., or "tag store"
    thread: int
    frames: tuple[int, ...]   # pc, lr (0: unknown), return addresses


@dataclass(frozen=True)
class Cause:
    kind: str                 # use-after-free, double-free, buffer-overflow, buffer-underflow
    offset: int               # bytes into / right of / left of the allocation
    relation: str             # "into", "right of", "left of"
    address: int              # the allocation's start (untagged)
    size: int                 # bytes asked for (for a tag-store region: bytes tagged)
    tag: int                  # the allocation's tag
    source: str               # "allocator" or "tag stores"
    allocated: Optional[Trace]
    deallocated: Optional[Trace]

    @property
    def title(self) -> str:
        """Android's words: "Use After Free", "Buffer Overflow"..."""
        return self.kind.replace("-", " ").title()

    def line(self) -> str:
        """The cause as one line: Android's tombstone's `Cause: [MTE]: ...` after the colon."""
        what = "allocation" if self.source == "allocator" else "region tagged by a tag store"
        return f"{self.title}, {self.offset} bytes {self.relation} a {self.size}-byte {what} at {self.address:#x}"


def _trace(e: Event) -> Trace:
    return Trace(OP_NAMES.get(e.op, str(e.op)), e.tid, e.frames)


def _granules(size: int) -> int:
    """Bytes a tag covers for an allocation of `size`: whole granules (at least one)."""
    return max(GRANULE, (size + GRANULE - 1) & ~(GRANULE - 1))


def _replay(calls: list[Event]) -> tuple[dict[int, Event], list[tuple[Optional[Event], Event]]]:
    """The live allocations by start, and the frees in order with the allocation each
    freed (None when it is older than the history)."""
    live: dict[int, Event] = {}
    freed: list[tuple[Optional[Event], Event]] = []
    last_free: dict[int, int] = {}           # start -> index in freed
    for e in calls:
        if e.kind == KIND_ALLOC:
            live[e.start] = e
        elif e.kind == KIND_FREE:
            a = live.pop(e.start, None)
            if a is None and e.start in last_free:
                continue                     # freed again: the first free is the one that counts
            last_free[e.start] = len(freed)
            freed.append((a, e))
    return live, freed


def _allocator_causes(calls: list[Event], addr: int, tag: int, in_free: bool) -> list[tuple[float, Cause]]:
    live, freed = _replay(calls)
    ranked: list[tuple[float, Cause]] = []
    seen: set[int] = set()
    for age, (a, f) in enumerate(reversed(freed)):
        start, size = (a.start, a.size) if a is not None else (f.start, 0)
        if f.start in seen or f.tag != tag or not start <= addr < start + _granules(size):
            continue
        seen.add(f.start)
        double = in_free and addr == start
        kind = "double-free" if double else "use-after-free"
        ranked.append((age / 1e6 - (1 if double else 0), Cause(
            kind, addr - start, "into", start, size, f.tag, "allocator",
            _trace(a) if a is not None else None, _trace(f))))
    starts = sorted(live)
    for a in live.values():
        if a.tag == tag and not _between(starts, a, addr):
            ranked += _outside(a, addr, "allocator")
    return ranked


def _outside(a: Event, addr: int, source: str) -> list[tuple[float, Cause]]:
    """An overflow past the end of `a` or an underflow before its start, when the address
    is within NEAR of it; the nearer, the likelier."""
    end = a.start + a.size
    if end <= addr < end + NEAR:
        return [(1 + (addr - end) / NEAR, Cause("buffer-overflow", addr - end, "right of", a.start, a.size, a.tag,
                                                source, _trace(a), None))]
    if a.start - NEAR <= addr < a.start:
        return [(1 + (a.start - addr) / NEAR, Cause("buffer-underflow", a.start - addr, "left of", a.start, a.size,
                                                    a.tag, source, _trace(a), None))]
    return []


def _between(starts: list[int], a: Event, addr: int) -> bool:
    """Another live allocation starts between allocation `a` and the address: an access
    beyond it is no overflow of `a` (Scudo looks at the neighbouring chunks only)."""
    lo, hi = (a.start, addr) if addr >= a.start else (addr, a.start)
    i = bisect.bisect_right(starts, lo)
    return i < len(starts) and starts[i] < hi and starts[i] != a.start


def regions(stores: list[Event]) -> list[Event]:
    """Tag stores joined into the regions they tagged: a store that continues the previous
    one (the next granules, the same tag, thread and callers: an unrolled tagging loop) is
    part of its region, which keeps the first store's backtrace."""
    out: list[Event] = []
    for e in sorted(stores, key=lambda e: e.seq):
        last = out[-1] if out else None
        if last is not None and last.start + last.size == e.start and last.tag == e.tag \
                and last.tid == e.tid and last.frames[1:] == e.frames[1:]:
            out[-1] = replace(last, size=last.size + e.size, seq=e.seq)
        else:
            out.append(e)
    return out


def _tag_store_causes(stores: list[Event], addr: int, tag: int) -> list[tuple[float, Cause]]:
    """The fallback: regions as the tag stores made them, the newest first."""
    ranked: list[tuple[float, Cause]] = []
    newest = sorted(regions(stores), key=lambda e: -e.seq)
    covering = [e for e in newest if e.start <= addr < e.start + e.size]
    for e in newest:
        if e.tag != tag:
            continue
        if e.start <= addr < e.start + e.size:
            later = next((c for c in covering if c.seq > e.seq and c.tag != tag), None)
            if later is not None:
                ranked.append((0.5, Cause("use-after-free", addr - e.start, "into", e.start, e.size, e.tag,
                                          "tag stores", _trace(e), _trace(later))))
        else:
            ranked += _outside(e, addr, "tag stores")
    return ranked


def classify(calls: list[Event], stores: list[Event], address: int, pointer_tag: int,
             function: Callable[[int], Optional[str]], pc: int) -> list[Cause]:
    """The candidate causes of a fault at `address` (tag bits ignored) through a pointer
    tagged `pointer_tag`, at pc (`function` names the function holding an address): the
    allocator's evidence when there is any, else the tag stores'; most likely first."""
    addr = address & ((1 << 56) - 1)
    ranked = _allocator_causes(calls, addr, pointer_tag, function(pc) in FREE_FUNCTIONS)
    if not ranked:
        ranked = _tag_store_causes(stores, addr, pointer_tag)
    ranked.sort(key=lambda rc: rc[0])
    out: list[Cause] = []
    for _score, cause in ranked:
        if cause not in out:
            out.append(cause)
    return out[:MAX_CAUSES]


def last_tag_store(stores: list[Event], address: int) -> Optional[Trace]:
    """Who last set the tag of the granule holding `address`, when a tag store did."""
    addr = address & ((1 << 56) - 1)
    for e in sorted(stores, key=lambda e: -e.seq):
        if e.start <= addr < e.start + e.size:
            return _trace(e)
    return None
