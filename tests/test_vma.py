"""Property tests: the VMA list behaves like a page-granular map of the address space."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mteemu.kernel.mm.vma import Vma, VmaList

PAGE = 4096
ops = st.lists(st.tuples(st.sampled_from(["map", "unmap"]), st.integers(0, 63), st.integers(1, 16),
                         st.integers(1, 7)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_vma_list_matches_a_page_model(operations) -> None:
    vmas, model = VmaList(), {}
    for op, first, count, prot in operations:
        start, end = first * PAGE, (first + count) * PAGE
        vmas.carve(start, end)
        for p in range(first, first + count):
            model.pop(p, None)
        if op == "map":
            vmas.insert(Vma(start, end, prot))
            for p in range(first, first + count):
                model[p] = prot
    seen = {}
    prev_end = -1
    for v in vmas:
        assert v.start >= prev_end and v.start < v.end
        prev_end = v.end
        for p in range(v.start // PAGE, v.end // PAGE):
            seen[p] = v.prot
    assert seen == model
    for p in range(0, 80):
        v = vmas.find(p * PAGE + 5)
        assert (v.prot if v else None) == model.get(p)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 8)), max_size=20), st.integers(1, 16))
def test_gap_below_finds_a_free_highest_gap(regions, length) -> None:
    vmas = VmaList()
    for first, count in regions:
        if vmas.is_free(first * PAGE, (first + count) * PAGE):
            vmas.insert(Vma(first * PAGE, (first + count) * PAGE, 3))
    top, floor = 256 * PAGE, 16 * PAGE
    got = vmas.gap_below(top, length * PAGE, floor)
    free_starts = [s for s in range(16, 256 - length + 1) if vmas.is_free(s * PAGE, (s + length) * PAGE)]
    assert got == (max(free_starts) * PAGE if free_starts else None)
