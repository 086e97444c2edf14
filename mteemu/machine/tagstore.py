"""Allocation tags, kept where the hardware keeps them: in the board's tag storage.

The allocation tag of the 16-byte granule at physical address PA is a 4-bit nibble at
`tag_base + (PA - mem_base) / 32` (two granules per byte, the lower granule in the low
nibble), inside the tag region the board assigns to PA's memory. There is no side
table: whatever the kernel model does to tag storage is what the CPU sees.

Memory that no tag region covers has no tags: reads give tag 0. Writing its tags is a
model violation (only Tagged pages are tag-written, and the kernel maps a page Tagged only
with tag storage), never silently dropped.
"""
from __future__ import annotations

from typing import Callable, Optional

from mteemu.board.model import Board
from mteemu.errors import ModelViolation
from mteemu.machine.physmem import PAGE_SHIFT, PAGE_SIZE, PhysMem

GRANULE = 16
TAG_BYTES_PER_PAGE = PAGE_SIZE // GRANULE // 2     # 128
_UNIFORM = [bytes([t | t << 4]) * TAG_BYTES_PER_PAGE for t in range(16)]


class _Span:
    """One tag region: the tagged memory [base, end) and a view of its tag bytes."""

    __slots__ = ("base", "end", "tags")

    def __init__(self, base: int, end: int, tags: memoryview) -> None:
        self.base, self.end, self.tags = base, end, tags


class TagStore:
    def __init__(self, board: Board, physmem: PhysMem) -> None:
        # A tag region smaller than 1/32 of its memory (a board that fails validation,
        # run with --force) tags only the start of it.
        self.spans = []
        for tr in board.tag_regions:
            covered = min(tr.tagged.size, tr.size * 32) & ~0xFFF
            self.spans.append(_Span(tr.tagged.base, tr.tagged.base + covered, physmem.view(tr.base, covered // 32)))
        # Called with a pfn after its tags changed (the CPU drops stale fast paths).
        self.on_change: Callable[[int], None] = lambda pfn: None
        # Tag writes are checked against the kernel's reservations when tag storage is
        # reused: `guarded` are the pfns whose storage is reserved; a write for any other
        # page goes to `guard` first (which raises if the write would corrupt data).
        self.guarded: Optional[set[int]] = None
        self.guard: Callable[[int], None] = lambda pfn: None

    def _check(self, pfn: int) -> None:
        if self.guarded is not None and pfn not in self.guarded:
            self.guard(pfn)

    def _span(self, pa: int) -> Optional[_Span]:
        for s in self.spans:
            if s.base <= pa < s.end:
                return s
        return None

    def has_tags(self, pfn: int) -> bool:
        return self._span(pfn << PAGE_SHIFT) is not None

    # -- single granules ----------------------------------------------------------------------
    def get(self, pa: int) -> int:
        s = self._span(pa)
        if s is None:
            return 0
        g = (pa - s.base) >> 4
        return (s.tags[g >> 1] >> ((g & 1) << 2)) & 0xF

    def set_range(self, pa: int, length: int, tag: int) -> None:
        """Give every granule of [pa, pa+length) (granule aligned, one page) the tag.
        Only pages mapped Tagged are tag-written, and those always have tag storage: a
        write for memory without any is the model's bug, never silently dropped."""
        s = self._span(pa)
        if s is None:
            raise ModelViolation(f"tags written for physical address {pa:#x}, which has no tag storage")
        self._check(pa >> PAGE_SHIFT)
        g, end = (pa - s.base) >> 4, (pa + length - s.base) >> 4
        tags = s.tags
        if g & 1 and g < end:
            tags[g >> 1] = (tags[g >> 1] & 0x0F) | tag << 4
            g += 1
        whole = (end - g) >> 1
        if whole:
            tags[g >> 1:(g >> 1) + whole] = bytes([tag | tag << 4]) * whole
            g += whole << 1
        if g < end:
            tags[g >> 1] = (tags[g >> 1] & 0xF0) | tag
        self.on_change(pa >> PAGE_SHIFT)

    # -- whole pages ----------------------------------------------------------------------------
    def page_tags(self, pfn: int) -> Optional[memoryview]:
        """The 128 tag bytes of a page (None: untagged memory)."""
        pa = pfn << PAGE_SHIFT
        s = self._span(pa)
        if s is None:
            return None
        off = (pa - s.base) >> 5
        return s.tags[off:off + TAG_BYTES_PER_PAGE]

    def uniform(self, pfn: int) -> Optional[int]:
        """The tag every granule of the page carries, or None if they differ."""
        tags = self.page_tags(pfn)
        if tags is None:
            return 0
        t = tags[0] & 0xF
        return t if tags == _UNIFORM[t] else None

    def clear_page(self, pfn: int) -> None:
        self.write_page(pfn, _UNIFORM[0])

    def write_page(self, pfn: int, tags: bytes) -> None:
        """Set the page's 128 tag bytes (restoring saved tags)."""
        view = self.page_tags(pfn)
        if view is not None:
            self._check(pfn)
            view[:] = tags
            self.on_change(pfn)

    def copy_page(self, dst: int, src: int) -> None:
        s = self.page_tags(src)
        self.write_page(dst, bytes(s) if s is not None else _UNIFORM[0])

    def mismatch(self, pa: int, length: int, tag: int) -> Optional[int]:
        """The first address in [pa, pa+length) (one page) whose granule's tag is not
        `tag`, or None when all match (an empty range matches)."""
        if length <= 0:
            return None
        s = self._span(pa)
        if s is None:
            return None if tag == 0 else pa
        tags = s.tags
        g, last = (pa - s.base) >> 4, (pa + length - 1 - s.base) >> 4
        if g & 1 or last - g < 8:
            bad = self._first_other(tags, g, min(last, g | 1), tag)
            if bad is not None or last <= (g | 1):
                return None if bad is None else max(pa, s.base + (bad << 4))
            g = (g | 1) + 1
        # Whole tag bytes (two granules each) compared at once (a syscall buffer is
        # checked page by page: a byte at a time would be 256 steps a page).
        whole = (last + 1 - g) >> 1
        if whole and tags[g >> 1:(g >> 1) + whole] != _UNIFORM[tag][:1] * whole:
            other = self._first_other(tags, g, g + 2 * whole - 1, tag)
            assert other is not None          # the bytes differ, so some granule does
            return max(pa, s.base + (other << 4))
        g += 2 * whole
        bad = self._first_other(tags, g, last, tag) if g <= last else None
        return None if bad is None else max(pa, s.base + (bad << 4))

    @staticmethod
    def _first_other(tags: memoryview, g: int, last: int, tag: int) -> Optional[int]:
        """The first granule in [g, last] whose tag is not `tag`."""
        while g <= last:
            if (tags[g >> 1] >> ((g & 1) << 2)) & 0xF != tag:
                return g
            g += 1
        return None
