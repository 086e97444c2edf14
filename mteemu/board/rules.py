"""Validation of a board's tag-storage layout: one function per rule id.

Kernel rules are the boot-time checks of the RFC's tag-storage code (fdt_init_tag_storage,
mte_tag_storage_init, tag_storage_probe; docs/reference/tag-storage-rfc.md §1); Arm
rules are the platform constraints quoted from Arm document 101569 §5.4.6.1 (§7); sanity
rules are what no RFC version checks but a board must get right (§1.4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from mteemu.board import bootchecks
from mteemu.board.binding import NO_MEMORY, Layout, TagNode, reg_problem, safe_ranges, usable_prop
from mteemu.board.dt import Node
from mteemu.board.memmap import fmt_range, fmt_size, window_of, windows_touched

PAGE_SIZE, PAGEBLOCK, MAX_TAG_REGIONS = bootchecks.PAGE_SIZE, bootchecks.PAGEBLOCK, bootchecks.MAX_TAG_REGIONS
block_size_pages = bootchecks.block_size_pages
ZONE_DMA_LIMIT = 1 << 32       # arm64 ZONE_DMA/DMA32 end at 4 GiB when DRAM starts below it
ERROR, WARNING, NOTE = "error", "warning", "note"
GROUPS = ("kernel", "arm", "sanity")


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    node: str
    message: str

    def as_dict(self) -> dict:
        return {"rule": self.rule, "severity": self.severity, "node": self.node, "message": self.message}


Rule = Callable[[Layout], Iterator[Finding]]
RULES: dict[str, Rule] = {}


def rule(rule_id: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[rule_id] = fn
        return fn
    return register


def _tag_span(t: TagNode) -> tuple[int, int] | None:
    r = t.range
    return (r[0], r[0] + r[1]) if r else None


def _tagged_span(layout: Layout, t: TagNode) -> tuple[int, int] | None:
    m = layout.memory_node(t.tagged)
    if m is None or len(m.ranges) != 1 or not m.ranges[0][1]:
        return None
    return m.ranges[0][0], m.ranges[0][0] + m.ranges[0][1]


def _data_ranges(layout: Layout) -> list[tuple[int, int]]:
    """DRAM that holds data: every memory range minus every tag region."""
    tags = sorted(s for s in (_tag_span(t) for t in layout.tags) if s)
    out = []
    for m in layout.memory:
        for addr, size in m.ranges:
            pieces = [(addr, addr + size)]
            for ts, te in tags:
                pieces = [p for a, b in pieces for p in ((a, min(b, ts)), (max(a, te), b)) if p[0] < p[1]]
            out.extend(pieces)
    return sorted(out)


# -- kernel rules ---------------------------------------------------------------------------------
@rule("kernel.max-regions")
def _max_regions(layout: Layout) -> Iterator[Finding]:
    if len(layout.tags) > MAX_TAG_REGIONS:
        yield Finding("kernel.max-regions", ERROR, "/",
                      f"{len(layout.tags)} tag storage regions; the kernel handles at most {MAX_TAG_REGIONS} "
                      "(\"Maximum number of tag storage regions exceeded\") and then ignores all of them")


@rule("kernel.reg")
def _reg(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        problem = reg_problem(t.node)
        if problem:
            yield Finding("kernel.reg", ERROR, t.node.path, f"invalid tag storage node: {problem}")
    for m in layout.memory:
        prop = usable_prop(m.node)
        problem = reg_problem(m.node, prop)
        # Several ranges are fine for memory; size 0 and a missing reg are skipped (kernel.memory).
        if problem and not any(w in problem for w in ("address/size pairs", "size 0", "no '")):
            yield Finding("kernel.reg", ERROR, m.node.path, f"invalid memory node: {problem}")


@rule("kernel.memory")
def _memory(layout: Layout) -> Iterator[Finding]:
    """What early_init_dt_scan_memory() skips: harmless on a board a bootloader completes."""
    for n in layout.disabled_memory:
        status = n.strings("status")[0]
        yield Finding("kernel.memory", WARNING, n.path, f"memory node with status \"{status}\": Linux skips it")
    for m in layout.memory:
        if m.placeholders:
            yield Finding("kernel.memory", WARNING, m.node.path,
                          f"{m.placeholders} range(s) of size 0 in '{usable_prop(m.node)}' (a placeholder a "
                          "bootloader fills in): Linux skips them")
        elif not m.node.has(usable_prop(m.node)):
            yield Finding("kernel.memory", WARNING, m.node.path, "memory node without 'reg': Linux skips it")


@rule("kernel.no-memory")
def _no_memory(layout: Layout) -> Iterator[Finding]:
    if not layout.usable:
        yield Finding("kernel.no-memory", WARNING, "/", NO_MEMORY + "; mteemu cannot run this board")


@rule("kernel.disabled-memory")
def _disabled_memory(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        if t.tagged is not None and t.tagged in layout.disabled_memory:
            yield Finding("kernel.disabled-memory", ERROR, t.node.path,
                          f"'{t.tagged_prop}' names {t.tagged.path}, a disabled memory node: Linux never adds that "
                          "memory, so these tags belong to nothing")
        span = _tag_span(t)
        if span is None:
            continue
        for n in layout.disabled_memory:
            for a, sz in _ranges_of(n):
                if a < span[1] and span[0] < a + sz:
                    yield Finding("kernel.disabled-memory", ERROR, t.node.path,
                                  f"tag region {fmt_range(*span)} lies in {fmt_range(a, a + sz)} of {n.path}, a "
                                  "disabled memory node: Linux does not have that memory")


@rule("kernel.disabled-tag-storage")
def _disabled_tags(layout: Layout) -> Iterator[Finding]:
    for n in layout.disabled_tags:
        yield Finding("kernel.disabled-tag-storage", NOTE, n.path,
                      f"tag storage with status \"{n.strings('status')[0]}\": ignored, as Linux ignores it")


@rule("kernel.reserved-overlap")
def _reserved_overlap(layout: Layout) -> Iterator[Finding]:
    """Tag storage is handed to the page allocator; firmware's memory never may be
    (__reserved_mem_check_root / memblock: Linux prints "OVERLAP DETECTED" for the first)."""
    reserved = layout.reserved()
    for t in layout.tags:
        span = _tag_span(t)
        if span is None:
            continue
        for what, a, b in reserved:
            if a < span[1] and span[0] < b:
                kind = "the no-map reserved-memory region" if what.startswith("/") else "the"
                yield Finding("kernel.reserved-overlap", ERROR, t.node.path,
                              f"tag region {fmt_range(*span)} overlaps {kind} {what} {fmt_range(a, b)}: that "
                              "memory belongs to firmware, and tag storage would hand it to the page allocator")


def _ranges_of(n: Node) -> list[tuple[int, int]]:
    """A memory node's non-empty ranges (none if its cells are malformed: kernel.reg says so)."""
    return [r for r in safe_ranges(n, usable_prop(n)) if r[1]]


@rule("kernel.pageblock-align")
def _pageblock(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        span = _tag_span(t)
        if span and bootchecks.unaligned(span[0], span[1] - span[0]):
            yield Finding("kernel.pageblock-align", ERROR, t.node.path,
                          f"tag storage region {fmt_range(*span)} (size {span[1] - span[0]:#x}) is not aligned "
                          f"to the pageblock size {PAGEBLOCK:#x} (2 MiB with 4 KiB pages)")


@rule("kernel.tagged-memory")
def _tagged_memory(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        prop = t.tagged_prop
        if not t.node.has(prop):
            yield Finding("kernel.tagged-memory", ERROR, t.node.path, f"missing '{prop}' property (a phandle "
                          "of the memory node whose tags this region holds)")
        elif t.tagged is None:
            yield Finding("kernel.tagged-memory", ERROR, t.node.path,
                          f"'{prop}' phandle {t.node.u32(prop)} does not name any node")
        elif t.tagged in layout.disabled_memory:
            continue            # kernel.disabled-memory says why
        elif layout.memory_node(t.tagged) is None:
            yield Finding("kernel.tagged-memory", ERROR, t.node.path,
                          f"'{prop}' names {t.tagged.path}, which is not a memory node (device_type = \"memory\" "
                          "under the root)")
        else:
            problem = reg_problem(t.tagged, usable_prop(t.tagged))
            if problem:
                yield Finding("kernel.tagged-memory", ERROR, t.node.path,
                              f"the tagged memory node {t.tagged.path} has no usable range: {problem}")


@rule("kernel.size-ratio")
def _size_ratio(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        span, data = _tag_span(t), _tagged_span(layout, t)
        if not span or not data:
            continue
        tag_size, data_size = span[1] - span[0], data[1] - data[0]
        if bootchecks.ratio_wrong(tag_size, data_size):
            # v3 dropped the check (its schema only states the rule): a warning there.
            sev = ERROR if t.binding in ("v1", "v2") else WARNING
            yield Finding("kernel.size-ratio", sev, t.node.path,
                          f"tag storage {fmt_range(*span)} ({fmt_size(tag_size)}) x 32 = {fmt_size(tag_size * 32)} "
                          f"does not cover exactly the tagged memory {fmt_range(*data)} ({fmt_size(data_size)}); "
                          f"it must be {_size_of(data_size / 32)}")


def _size_of(n: float) -> str:
    return fmt_size(int(n)) if n == int(n) else f"{n:g} bytes"


@rule("kernel.block-size")
def _block_size(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        if not t.block_size:
            yield Finding("kernel.block-size", ERROR, t.node.path, "invalid or missing 'block-size' property "
                          "(u32, bytes)")


@rule("kernel.block-multiple")
def _block_multiple(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        span = _tag_span(t)
        if not span or not t.block_size:
            continue
        pages = (span[1] - span[0]) // PAGE_SIZE
        bsp = block_size_pages(t.block_size)
        if bootchecks.not_whole_blocks(span[1] - span[0], t.block_size):
            yield Finding("kernel.block-multiple", ERROR, t.node.path,
                          f"tag storage region size {span[1] - span[0]:#x} ({pages} pages) is not a multiple of "
                          f"the block size {t.block_size:#x} ({bsp} pages: the least common multiple of the "
                          "page and the block)")


@rule("kernel.outside-dram")
def _outside_dram(layout: Layout) -> Iterator[Finding]:
    # memblock: the memory nodes, plus (v1/v2) the tag regions the nodes add themselves.
    spans = [(a, a + s) for m in layout.memory for a, s in m.ranges if s]
    spans += [s for t in layout.tags if t.binding in ("v1", "v2") for s in [_tag_span(t)] if s]
    if not spans:
        return
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    for t in layout.tags:
        span = _tag_span(t)
        if span and (span[0] < start or span[1] > end):
            yield Finding("kernel.outside-dram", ERROR, t.node.path,
                          f"tag region {fmt_range(*span)} lies outside addressable DRAM {fmt_range(start, end)}")


@rule("kernel.zone-span")
def _zone_span(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        span = _tag_span(t)
        if not span or not span[0] < ZONE_DMA_LIMIT < span[1]:
            continue
        block = block_size_pages(t.block_size or PAGE_SIZE) * PAGE_SIZE
        aligned = (ZONE_DMA_LIMIT - span[0]) % block == 0
        if t.binding == "v3" and aligned:
            yield Finding("kernel.zone-span", NOTE, t.node.path,
                          f"tag region {fmt_range(*span)} spans ZONE_DMA and ZONE_NORMAL (boundary "
                          f"{ZONE_DMA_LIMIT:#x}); v3 splits it there into two regions")
        elif t.binding == "v3":
            yield Finding("kernel.zone-span", ERROR, t.node.path,
                          f"tag region {fmt_range(*span)} spans two zones and the zone boundary {ZONE_DMA_LIMIT:#x} "
                          f"is not block aligned, so v3 cannot split it")
        elif not aligned:
            yield Finding("kernel.zone-span", ERROR, t.node.path,
                          f"tag region {fmt_range(*span)} has a tag block whose pages fall in two zones "
                          f"(boundary {ZONE_DMA_LIMIT:#x}): \"Tag block pages in different zones\"")


@rule("kernel.reserved-memory")
def _reserved_memory(layout: Layout) -> Iterator[Finding]:
    v3 = [t for t in layout.tags if t.binding == "v3"]
    for t in layout.tags:
        if t.binding == "unknown":
            yield Finding("kernel.reserved-memory", ERROR, t.node.path,
                          "an arm,mte-tag-storage node must be a child of /reserved-memory (v3), or a root child "
                          "named metadata@... (v1) or tag-storage@... (v2); the kernel does not look here")
    for t in v3:
        if not t.reusable:
            yield Finding("kernel.reserved-memory", ERROR, t.node.path,
                          "missing 'reusable': tag storage must be reusable reserved memory (v3 binding)")
        span = _tag_span(t)
        if span and not any(a <= span[0] and span[1] <= a + s for m in layout.memory for a, s in m.ranges):
            yield Finding("kernel.reserved-memory", ERROR, t.node.path,
                          f"tag storage {fmt_range(*span)} is not described by a memory node (v3 requires one)")


# -- Arm platform rules -------------------------------------------------------------------------------
def _tag_spans(layout: Layout) -> list[tuple[int, int]]:
    return sorted(s for s in (_tag_span(t) for t in layout.tags) if s)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


@rule("arm.straddle")
def _straddle(layout: Layout) -> Iterator[Finding]:
    spans = _tag_spans(layout)
    if not spans:
        return
    start, end = spans[0][0], max(e for _, e in spans)
    if window_of(start, end):
        return
    touched = windows_touched(start, end)
    names = ", ".join(w[0] for w in touched) or "none"
    outside = [s for s in spans if window_of(*s) is None]
    why = (f"its parts lie in {len(touched)} windows ({names})" if len(touched) > 1
           else f"{fmt_range(*outside[0])} lies outside every DRAM window" if outside
           else f"it spans {names} and beyond")
    yield Finding("arm.straddle", ERROR, "/",
                  f"the tag storage of this DRAM ({fmt_range(start, end)}) must lie within one window of the Arm "
                  f"memory map, but {why} (Arm 101569 5.4.6.1: \"The tag region in the physical address space "
                  f"cannot straddle multiple regions of a memory map\")")


@rule("arm.below-data")
def _below_data(layout: Layout) -> Iterator[Finding]:
    spans = _tag_spans(layout)
    if not spans:
        return
    lowest = spans[0][0]
    above = [d for d in _data_ranges(layout) if d[1] > lowest]
    if above:
        d = above[-1]
        yield Finding("arm.below-data", ERROR, "/",
                      f"DRAM data {fmt_range(max(d[0], lowest), d[1])} lies above tag storage starting at "
                      f"{lowest:#x}; the tag region must sit above the data region within DRAM (Arm 101569 "
                      "5.4.6.1)")


@rule("arm.interleaved")
def _interleaved(layout: Layout) -> Iterator[Finding]:
    merged = _merged(_tag_spans(layout))
    if len(merged) < 2:
        return
    data = _data_ranges(layout)
    gaps = [(merged[i][1], merged[i + 1][0]) for i in range(len(merged) - 1)]
    between = [g for g in gaps if any(d[0] < g[1] and g[0] < d[1] for d in data)]
    detail = (f"DRAM data sits between its parts ({', '.join(fmt_range(*g) for g in between)})" if between
              else f"it is split into {len(merged)} separate pieces")
    yield Finding("arm.interleaved", ERROR, "/",
                  f"tag storage must be one contiguous region, but {detail} (Arm 101569 5.4.6.1: \"The tag "
                  "region cannot be interleaved with the data region\")")


# -- sanity rules -------------------------------------------------------------------------------------------
@rule("sanity.overlap")
def _overlap(layout: Layout) -> Iterator[Finding]:
    tags = [(t, s) for t in layout.tags if (s := _tag_span(t)) is not None]
    for i, (a, sa) in enumerate(tags):
        for b, sb in tags[i + 1:]:
            if sa[0] < sb[1] and sb[0] < sa[1]:
                yield Finding("sanity.overlap", ERROR, b.node.path,
                              f"tag region {fmt_range(*sb)} overlaps tag region {fmt_range(*sa)} of {a.node.path}")
    for t, s in tags:
        for m in layout.memory:
            if m.node is t.tagged:
                continue        # reported by sanity.self-tagging
            for addr, size in m.ranges:
                inside = addr <= s[0] and s[1] <= addr + size
                if s[0] < addr + size and addr < s[1] and not (t.binding == "v3" and inside):
                    yield Finding("sanity.overlap", ERROR, t.node.path,
                                  f"tag region {fmt_range(*s)} overlaps memory {fmt_range(addr, addr + size)} of "
                                  f"{m.node.path}" + ("" if t.binding != "v3" else
                                                      " without being wholly described by it"))


@rule("sanity.self-tagging")
def _self_tagging(layout: Layout) -> Iterator[Finding]:
    for t in layout.tags:
        s, d = _tag_span(t), _tagged_span(layout, t)
        if s and d and s[0] < d[1] and d[0] < s[1]:
            yield Finding("sanity.self-tagging", ERROR, t.node.path,
                          f"tag region {fmt_range(*s)} lies inside the memory {fmt_range(*d)} whose tags it holds: "
                          "memory cannot hold its own tags")


def validate(layout: Layout, groups: tuple[str, ...] = GROUPS) -> list[Finding]:
    findings: list[Finding] = []
    for rule_id, fn in RULES.items():
        if rule_id.split(".")[0] in groups:
            findings.extend(fn(layout))
    return findings


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == ERROR]

