"""The buddy allocator (mm/page_alloc.c): zones, pageblocks with a migratetype, free
lists per order and migratetype, splitting and merging buddies, migratetype fallback
with pageblock stealing, a min watermark — and the pageblock type tag storage is onlined
as: MIGRATE_METADATA (RFC v1: only movable, untagged allocations may take it, and only
as a last resort) or MIGRATE_CMA (RFC v2/v3: movable, untagged allocations use it as
Linux uses CMA, i.e. first whenever it holds over half of the zone's free memory).

Costs never grow with the board: free memory is held as free block heads (a 64 GiB
board starts as 16 Ki order-10 blocks), pageblock types live in a dict filled lazily,
and nothing walks every page.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

MAX_ORDER = 10                      # orders 0..10: up to 4 MiB blocks (MAX_ORDER in Linux 6.5)
PAGEBLOCK_ORDER = 9                 # 2 MiB pageblocks with 4 KiB pages
ZONE_DMA32_END_PFN = 1 << 20        # arm64: ZONE_DMA/DMA32 end at 4 GiB


class OutOfMemory(Exception):
    """No free block of the order asked for, in any zone and fallback."""


class MigrateType(enum.IntEnum):
    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    METADATA = 3                    # tag storage (RFC v1, "mm: Add MIGRATE_METADATA allocation policy")
    CMA = 4                         # tag storage as a CMA area (RFC v2/v3)


TAG_STORAGE_TYPES = (MigrateType.METADATA, MigrateType.CMA)


# Linux's fallbacks[] (without CMA and HIGHATOMIC): where each type looks when its own
# lists are empty. METADATA is never a fallback: only ALLOC_FROM_METADATA reaches it.
FALLBACKS = {
    MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
    MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
    MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
}


@dataclass
class Zone:
    name: str
    start_pfn: int
    end_pfn: int
    # free[order][migratetype] = set of the first pfns of free blocks
    free: list[dict[MigrateType, set[int]]] = field(
        default_factory=lambda: [{mt: set() for mt in MigrateType} for _ in range(MAX_ORDER + 1)])
    managed: int = 0                # pages given to the allocator
    nr_free: int = 0
    nr_free_tag_storage: int = 0    # NR_FREE_METADATA_PAGES / NR_FREE_CMA_PAGES
    watermark_min: int = 0

    def contains(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.end_pfn


class BuddyAllocator:
    def __init__(self, ranges: list[tuple[int, int]], metadata: Sequence[tuple[int, int]] = (),
                 tag_type: MigrateType = MigrateType.METADATA) -> None:
        """ranges: [first pfn, end pfn) of the memory to manage; metadata: the parts of
        it that are tag storage (onlined as `tag_type` pageblocks, as the RFC's boot does)."""
        if tag_type not in TAG_STORAGE_TYPES:
            raise ValueError(f"{tag_type.name} is not a tag storage pageblock type")
        self.tag_type = tag_type
        lo = min((a for a, _ in ranges), default=0)
        hi = max((b for _, b in ranges), default=0)
        self.zones = [Zone("DMA32", lo, min(hi, ZONE_DMA32_END_PFN)),
                      Zone("Normal", max(lo, ZONE_DMA32_END_PFN), max(hi, ZONE_DMA32_END_PFN))]
        self.zones = [z for z in self.zones if z.start_pfn < z.end_pfn]
        self._pageblock_mt: dict[int, MigrateType] = {}
        self._free_order: dict[int, int] = {}           # free block head -> its order
        self._tag_storage_managed = 0                   # totalmetadata_pages / totalcma_pages
        for a, b in metadata:
            for pb in range(a >> PAGEBLOCK_ORDER, (b + (1 << PAGEBLOCK_ORDER) - 1) >> PAGEBLOCK_ORDER):
                self._pageblock_mt[pb] = tag_type
        for a, b in ranges:
            self._online(a, b)
        for z in self.zones:
            # WMARK_MIN, scaled as Linux's min_free_kbytes is for small machines: what only
            # the kernel's own (unmovable) allocations may dip into.
            z.watermark_min = min(z.managed // 256, 1024)

    # -- setup ----------------------------------------------------------------------------------
    def _online(self, start: int, end: int) -> None:
        """Free [start, end) in the largest aligned blocks that fit (memblock_free_all)."""
        pfn = start
        while pfn < end:
            order = MAX_ORDER
            while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end
                             or self._crosses_zone(pfn, order) or self._mixed_types(pfn, order)):
                order -= 1
            zone = self.zone_of(pfn)
            zone.managed += 1 << order
            if self.is_tag_storage(pfn):
                self._tag_storage_managed += 1 << order
            self._free_block(zone, pfn, order)
            pfn += 1 << order

    def _crosses_zone(self, pfn: int, order: int) -> bool:
        return pfn < ZONE_DMA32_END_PFN < pfn + (1 << order)

    def _mixed_types(self, pfn: int, order: int) -> bool:
        if order <= PAGEBLOCK_ORDER:
            return False
        first = pfn >> PAGEBLOCK_ORDER
        types = {self.pageblock_type(pb) for pb in range(first, first + (1 << (order - PAGEBLOCK_ORDER)))}
        return len(types) > 1

    # -- bookkeeping ------------------------------------------------------------------------------------
    def zone_of(self, pfn: int) -> Zone:
        for z in self.zones:
            if z.contains(pfn):
                return z
        raise ValueError(f"pfn {pfn:#x} is not managed memory")

    def pageblock_type(self, pb: int) -> MigrateType:
        return self._pageblock_mt.get(pb, MigrateType.MOVABLE)

    def block_type(self, pfn: int) -> MigrateType:
        return self.pageblock_type(pfn >> PAGEBLOCK_ORDER)

    def _free_block(self, zone: Zone, pfn: int, order: int) -> None:
        mt = self.block_type(pfn)
        zone.free[order][mt].add(pfn)
        self._free_order[pfn] = order
        zone.nr_free += 1 << order
        if mt in TAG_STORAGE_TYPES:
            zone.nr_free_tag_storage += 1 << order

    def _take_block(self, zone: Zone, pfn: int, order: int) -> None:
        mt = self.block_type(pfn)
        zone.free[order][mt].discard(pfn)
        del self._free_order[pfn]
        zone.nr_free -= 1 << order
        if mt in TAG_STORAGE_TYPES:
            zone.nr_free_tag_storage -= 1 << order

    def is_tag_storage(self, pfn: int) -> bool:
        return self.block_type(pfn) in TAG_STORAGE_TYPES

    def is_free(self, pfn: int) -> bool:
        """Whether pfn lies in a free block."""
        return self._free_head(pfn) is not None

    def _free_head(self, pfn: int) -> Optional[tuple[int, int]]:
        for o in range(MAX_ORDER + 1):
            head = pfn & ~((1 << o) - 1)
            if self._free_order.get(head) == o:
                return head, o
        return None

    @property
    def nr_free_tag_storage(self) -> int:
        return sum(z.nr_free_tag_storage for z in self.zones)

    @property
    def tag_storage_total(self) -> int:
        return self._tag_storage_managed

    @property
    def nr_free(self) -> int:
        return sum(z.nr_free for z in self.zones)

    @property
    def managed(self) -> int:
        return sum(z.managed for z in self.zones)

    def free_blocks(self) -> Iterator[tuple[int, int]]:
        """(first pfn, order) of every free block."""
        return iter(self._free_order.items())

    # -- allocation -----------------------------------------------------------------------------------
    def watermark_ok(self, zone: Zone, order: int, allow_tag_storage: bool) -> bool:
        """zone_watermark_ok() at WMARK_MIN: free tag storage counts only for requests
        that may use it (RFC v1 patch 5; Linux does the same for CMA)."""
        free = zone.nr_free - (0 if allow_tag_storage else zone.nr_free_tag_storage)
        return free - (1 << order) >= zone.watermark_min

    def alloc(self, order: int = 0, mt: MigrateType = MigrateType.MOVABLE, allow_tag_storage: bool = False,
              watermark: bool = False) -> int:
        """__alloc_pages(): a block of 2**order pages; the highest zone first. Only
        movable allocations that say so (untagged: ALLOC_FROM_METADATA, ALLOC_CMA) may
        take tag storage: METADATA when nothing else is left; CMA whenever it holds
        more than half of the zone's free memory (__rmqueue's balancing), else last; both
        before ordinary memory below its min watermark.
        `watermark`: refuse to dip below the zone's min watermark (user allocations)."""
        if mt in TAG_STORAGE_TYPES:
            raise ValueError(f"{mt.name} is not an allocation type")
        tag_ok = allow_tag_storage and mt is MigrateType.MOVABLE
        for zone in reversed(self.zones):
            if watermark and not self.watermark_ok(zone, order, tag_ok):
                continue
            # Tag storage first when CMA balancing says so, or when ordinary memory is down
            # to its min watermark: that reserve is for the kernel's unmovable allocations,
            # which cannot use tag storage (Linux gets the same from kswapd and its watermarks).
            low = watermark and not self.watermark_ok(zone, order, False)
            if tag_ok and (low or (self.tag_type is MigrateType.CMA
                                   and zone.nr_free_tag_storage > zone.nr_free // 2)):
                pfn = self._smallest(zone, order, self.tag_type)
                if pfn is not None:
                    return pfn
            pfn = self._rmqueue(zone, order, mt)
            if pfn is None and tag_ok:
                pfn = self._smallest(zone, order, self.tag_type)
            if pfn is not None:
                return pfn
        raise OutOfMemory(f"no free block of order {order} for {mt.name}")

    def _rmqueue(self, zone: Zone, order: int, mt: MigrateType) -> Optional[int]:
        pfn = self._smallest(zone, order, mt)
        if pfn is None:
            pfn = self._fallback(zone, order, mt)
        return pfn

    def _smallest(self, zone: Zone, order: int, mt: MigrateType) -> Optional[int]:
        """__rmqueue_smallest(): the smallest free block of this type, split down."""
        for o in range(order, MAX_ORDER + 1):
            blocks = zone.free[o][mt]
            if blocks:
                pfn = next(iter(blocks))     # O(1); deterministic for a given history
                self._take_block(zone, pfn, o)
                while o > order:             # expand(): give back the upper halves
                    o -= 1
                    self._free_block(zone, pfn + (1 << o), o)
                return pfn
        return None

    def _fallback(self, zone: Zone, order: int, mt: MigrateType) -> Optional[int]:
        """__rmqueue_fallback(): the largest block of a fallback type; a big enough one
        brings its whole pageblock(s) over to the requested type (steal_suitable_fallback)."""
        for o in range(MAX_ORDER, order - 1, -1):
            for other in FALLBACKS[mt]:
                blocks = zone.free[o][other]
                if not blocks:
                    continue
                pfn = next(iter(blocks))     # O(1), like taking the list's head
                if o >= PAGEBLOCK_ORDER // 2 or mt is not MigrateType.MOVABLE:
                    self._steal_pageblocks(zone, pfn, max(o, PAGEBLOCK_ORDER), mt)
                return self._smallest(zone, order, mt) if self.block_type(pfn) is mt else \
                    self._smallest(zone, order, other)
        return None

    def _steal_pageblocks(self, zone: Zone, pfn: int, order: int, mt: MigrateType) -> None:
        """Retype the pageblock(s) of pfn and move their free blocks to mt's lists."""
        start = pfn & ~((1 << order) - 1)
        for pb in range(start >> PAGEBLOCK_ORDER, (start + (1 << order)) >> PAGEBLOCK_ORDER):
            if self.pageblock_type(pb) in TAG_STORAGE_TYPES or not zone.contains(pb << PAGEBLOCK_ORDER):
                continue
            old = self.pageblock_type(pb)
            moved = self._free_blocks_in_pageblock(pb)
            for p, o in moved:
                zone.free[o][old].discard(p)
            self._pageblock_mt[pb] = mt
            for p, o in moved:
                zone.free[o][mt].add(p)

    def _free_blocks_in_pageblock(self, pb: int) -> list[tuple[int, int]]:
        """The free blocks inside pageblock pb, or the one free block enclosing it: a walk
        of at most one pageblock, whatever the size of the board."""
        start = pb << PAGEBLOCK_ORDER
        for o in range(PAGEBLOCK_ORDER, MAX_ORDER + 1):
            head = start & ~((1 << o) - 1)
            if self._free_order.get(head) == o:
                return [(head, o)]
        found, p = [], start
        while p < start + (1 << PAGEBLOCK_ORDER):
            got = self._free_order.get(p)
            if got is None:
                p += 1
            else:
                found.append((p, got))
                p += 1 << got
        return found

    # -- freeing ------------------------------------------------------------------------------------------
    def free(self, pfn: int, order: int = 0) -> None:
        """__free_one_page(): merge with free buddies of the same order while possible."""
        zone = self.zone_of(pfn)
        if pfn in self._free_order:
            raise ValueError(f"double free of pfn {pfn:#x}")
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            # Never across pageblocks of different types: tag storage must stay METADATA.
            if self._free_order.get(buddy) != order or not zone.contains(buddy) \
                    or self.block_type(buddy) != self.block_type(pfn):
                break
            self._take_block(zone, buddy, order)
            pfn = min(pfn, buddy)
            order += 1
        self._free_block(zone, pfn, order)

    def take_free_range(self, start: int, end: int) -> list[int]:
        """Isolate [start, end) (alloc_contig_range's first half): every free page in it
        comes off the free lists — a free block reaching outside is split and its other
        parts stay free. Returns the pages of the range that were not free (in use)."""
        busy = []
        pfn = start
        while pfn < end:
            found = self._free_head(pfn)
            if found is None:
                busy.append(pfn)
                pfn += 1
                continue
            head, o = found
            zone = self.zone_of(head)
            self._take_block(zone, head, o)
            # Give back the parts of [head, head + 2**o) outside [start, end), in aligned blocks.
            lo, hi = max(head, start), min(head + (1 << o), end)
            self._free_range(zone, head, lo)
            self._free_range(zone, hi, head + (1 << o))
            pfn = hi
        return busy

    def _free_range(self, zone: Zone, start: int, end: int) -> None:
        while start < end:
            o = 0
            while o < MAX_ORDER and not start & ((2 << o) - 1) and start + (2 << o) <= end:
                o += 1
            self._free_block(zone, start, o)
            start += 1 << o

