"""TagStore.mismatch(), which checks every syscall buffer: the first granule whose
allocation tag differs from the pointer's, by the definition (one granule at a time)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mteemu.board.model import default_board
from mteemu.machine.physmem import PhysMem
from mteemu.machine.tagstore import TagStore

BOARD = default_board()
PHYS = PhysMem(BOARD)
TAGS = TagStore(BOARD, PHYS)
SPAN = TAGS.spans[0]


def by_definition(pa: int, length: int, tag: int) -> int | None:
    for g in range((pa - SPAN.base) >> 4, ((pa + length - 1 - SPAN.base) >> 4) + 1):
        if (SPAN.tags[g >> 1] >> ((g & 1) << 2)) & 0xF != tag:
            return max(pa, SPAN.base + (g << 4))
    return None


@settings(max_examples=500, deadline=None)
@given(tag_bytes=st.one_of(st.binary(min_size=128, max_size=128),
                           st.integers(0, 15).map(lambda t: bytes([t * 0x11]) * 128),
                           st.tuples(st.integers(0, 127), st.integers(0, 255)).map(
                               lambda p: bytes([0x33] * p[0] + [p[1]] + [0x33] * (127 - p[0])))),
       off=st.integers(0, 4095), data=st.data(), tag=st.integers(0, 15))
def test_mismatch_is_the_first_granule_with_another_tag(tag_bytes: bytes, off: int, data, tag: int) -> None:
    page = SPAN.base + 0x5000
    TAGS.page_tags(page >> 12)[:] = tag_bytes
    length = data.draw(st.integers(1, 4096 - off))
    assert TAGS.mismatch(page + off, length, tag) == by_definition(page + off, length, tag)
