"""The buddy allocator under random allocate/free sequences (hypothesis), checked
against its invariants after every step, and at the scale of a real machine."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mteemu.kernel.mm.buddy import MAX_ORDER, PAGEBLOCK_ORDER, BuddyAllocator, MigrateType, OutOfMemory

MB = 256                                   # pages per MiB


def check(b: BuddyAllocator, allocated: dict[int, tuple[int, MigrateType, bool]]) -> None:
    spans = []
    for pfn, order in b.free_blocks():
        assert pfn % (1 << order) == 0, "free block not aligned to its order"
        zone = b.zone_of(pfn)
        assert zone.contains(pfn + (1 << order) - 1), "free block crosses a zone"
        mt = b.block_type(pfn)
        assert pfn in zone.free[order][mt], "free block on the wrong list"
        types = {b.block_type(p) for p in range(pfn, pfn + (1 << order), 1 << PAGEBLOCK_ORDER)}
        assert len(types) == 1, "free block spans pageblocks of different types"
        spans.append((pfn, pfn + (1 << order), "free"))
    for pfn, (order, mt, meta) in allocated.items():
        spans.append((pfn, pfn + (1 << order), "used"))
        if b.block_type(pfn) is MigrateType.METADATA:
            assert mt is MigrateType.MOVABLE and meta, "tag storage given to a non-movable or tagged allocation"
    spans.sort()
    for (_a0, a1, _), (b0, _b1, _) in zip(spans, spans[1:]):
        assert a1 <= b0, "overlapping blocks"
    free = sum((1 << o) for _, o in b.free_blocks())
    assert free == b.nr_free == sum(z.nr_free for z in b.zones)
    assert free + sum(1 << o for o, _, _ in allocated.values()) == b.managed


ops = st.lists(st.tuples(st.sampled_from(["alloc", "free"]), st.integers(0, 6),
                         st.sampled_from([MigrateType.MOVABLE, MigrateType.UNMOVABLE, MigrateType.RECLAIMABLE]),
                         st.booleans(), st.integers(0, 10**6)), max_size=150)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_random_sequences_keep_the_invariants(seq) -> None:
    # 14 MiB of RAM (not a power of two), the top 2 MiB of it tag storage.
    b = BuddyAllocator([(0x80000, 0x80000 + 14 * MB)], metadata=[(0x80000 + 12 * MB, 0x80000 + 14 * MB)])
    allocated: dict[int, tuple[int, MigrateType, bool]] = {}
    for op, order, mt, meta, pick in seq:
        if op == "alloc":
            try:
                pfn = b.alloc(order, mt, allow_tag_storage=meta)
            except OutOfMemory:
                continue
            allocated[pfn] = (order, mt, meta)
        elif allocated:
            pfn = sorted(allocated)[pick % len(allocated)]
            b.free(pfn, allocated.pop(pfn)[0])
        check(b, allocated)
    for pfn, (order, _, _) in list(allocated.items()):
        b.free(pfn, order)
    check(b, {})
    assert b.nr_free == b.managed


def test_tag_storage_is_the_last_resort() -> None:
    b = BuddyAllocator([(0, 8 * MB)], metadata=[(6 * MB, 8 * MB)])
    got = [b.alloc() for _ in range(6 * MB)]                  # all the ordinary memory
    assert all(b.block_type(p) is not MigrateType.METADATA for p in got)
    for mt in (MigrateType.UNMOVABLE, MigrateType.MOVABLE):
        try:
            b.alloc(0, mt)
            raise AssertionError("allocated beyond ordinary memory without ALLOC_FROM_METADATA")
        except OutOfMemory:
            pass
    p = b.alloc(0, MigrateType.MOVABLE, allow_tag_storage=True)
    assert b.block_type(p) is MigrateType.METADATA
    try:
        b.alloc(0, MigrateType.UNMOVABLE, allow_tag_storage=True)
        raise AssertionError("tag storage given to an unmovable allocation")
    except OutOfMemory:
        pass


def test_fallback_steals_whole_pageblocks() -> None:
    b = BuddyAllocator([(0, 8 * MB)])
    p = b.alloc(0, MigrateType.UNMOVABLE)                     # no UNMOVABLE blocks yet: steal one
    assert b.block_type(p) is MigrateType.UNMOVABLE
    q = b.alloc(0, MigrateType.UNMOVABLE)                     # served from the stolen pageblock
    assert q >> PAGEBLOCK_ORDER == p >> PAGEBLOCK_ORDER


def test_zones_split_at_4_gib() -> None:
    b = BuddyAllocator([(0xF0000, 0x110000)])                 # 3.75 GiB .. 4.25 GiB
    assert [(z.name, z.start_pfn, z.end_pfn) for z in b.zones] == [("DMA32", 0xF0000, 0x100000),
                                                                   ("Normal", 0x100000, 0x110000)]
    assert b.zone_of(b.alloc(MAX_ORDER)).name == "Normal"     # the highest zone first


def test_a_64_gib_board_costs_nothing_per_page() -> None:
    b = BuddyAllocator([(0x80000, 0x80000 + 64 * 1024 * MB)], metadata=[(0x80000 + 62 * 1024 * MB,
                                                                         0x80000 + 64 * 1024 * MB)])
    # 16 Mi pages held as order-10 blocks: 16 Ki of them, and no per-page state.
    assert len(list(b.free_blocks())) <= 64 * 1024 // 4 + 2 * MAX_ORDER
    pages = [b.alloc() for _ in range(100_000)]
    for p in pages:
        b.free(p)
    assert b.nr_free == b.managed == 64 * 1024 * MB
    assert len(list(b.free_blocks())) <= 64 * 1024 // 4 + 2 * MAX_ORDER     # merged back


def test_the_min_watermark_is_kept_for_the_kernel() -> None:
    """User allocations (watermark=True) stop at the zone's min watermark; untagged ones
    go to tag storage before dipping into it; kernel (unmovable) allocations may use it."""
    b = BuddyAllocator([(0, 8 * MB)], metadata=[(6 * MB, 8 * MB)])
    zone = b.zones[0]
    reserve = zone.watermark_min
    assert reserve > 0
    while b.nr_free - b.nr_free_tag_storage > reserve:
        assert not b.is_tag_storage(b.alloc(0, MigrateType.MOVABLE, allow_tag_storage=True, watermark=True))
    p = b.alloc(0, MigrateType.MOVABLE, allow_tag_storage=True, watermark=True)
    assert b.is_tag_storage(p)                                 # the reserve is left alone
    try:
        b.alloc(0, MigrateType.MOVABLE, allow_tag_storage=False, watermark=True)
        raise AssertionError("a tagged allocation dipped below the min watermark")
    except OutOfMemory:
        pass
    assert not b.is_tag_storage(b.alloc(0, MigrateType.UNMOVABLE))   # the kernel may
