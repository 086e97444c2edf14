"""The allocation history's reference recorder (machine/allochist.PyHistory) and the cause
classification (report/causes.py), in-process: events as the hooks would record them."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mteemu.machine.allochist import KIND_ALLOC, KIND_FREE, KIND_TAGS, OP_NAMES, OPS, TAG_WRITE, Event, PyHistory
from mteemu.report.causes import classify, last_tag_store, regions

HEAP = 0xFFFF_F7E0_0000
TRAMPOLINE = 0x7000_0008


def tagged(addr: int, tag: int) -> int:
    return addr | tag << 56


def alloc(seq: int, addr: int, size: int, tag: int, tid: int = 1) -> Event:
    return Event(seq, OPS["malloc"], KIND_ALLOC, tid, tagged(addr, tag), size, (0x1000, 0x2004))


def free(seq: int, addr: int, tag: int, tid: int = 1) -> Event:
    return Event(seq, OPS["free"], KIND_FREE, tid, tagged(addr, tag), 0, (0x3000, 0x2008))


def no_function(_addr: int) -> None:
    return None


@given(size=st.integers(1, 4096), tag=st.integers(1, 15), new_tag=st.integers(1, 15), data=st.data())
def test_use_after_free_names_the_freed_allocation(size: int, tag: int, new_tag: int, data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, max(16, (size + 15) & ~15) - 1))
    calls = [alloc(1, HEAP, size, tag), free(2, HEAP, tag), alloc(3, HEAP + 0x10000, 64, new_tag)]
    causes = classify(calls, [], tagged(HEAP + offset, tag), tag, no_function, 0)
    assert causes[0].kind == "use-after-free"
    assert (causes[0].offset, causes[0].size, causes[0].relation) == (offset, size, "into")
    assert causes[0].allocated is not None and causes[0].deallocated is not None
    assert causes[0].deallocated.op == "free"


@given(size=st.integers(1, 512).map(lambda n: n * 16), past=st.integers(0, 4095), tag=st.integers(1, 15))
def test_overflow_and_underflow_measure_from_the_edges(size: int, past: int, tag: int) -> None:
    calls = [alloc(1, HEAP + 0x8000, size, tag)]
    over = classify(calls, [], HEAP + 0x8000 + size + past, tag, no_function, 0)
    assert [(c.kind, c.offset, c.relation) for c in over] == [("buffer-overflow", past, "right of")]
    under = classify(calls, [], HEAP + 0x8000 - 1 - past, tag, no_function, 0)
    assert [(c.kind, c.offset, c.relation) for c in under] == [("buffer-underflow", past + 1, "left of")]


def test_nothing_is_invented() -> None:
    calls = [alloc(1, HEAP, 32, 5), free(2, HEAP, 5), alloc(3, HEAP + 64, 32, 6)]
    assert classify(calls, [], HEAP + 0x100000, 5, no_function, 0) == []        # far from everything
    assert classify(calls, [], HEAP + 64, 9, no_function, 0) == []              # no allocation had tag 9


def test_an_overflow_does_not_jump_over_a_live_neighbour() -> None:
    calls = [alloc(1, HEAP, 32, 5), alloc(2, HEAP + 48, 32, 6)]
    assert classify(calls, [], HEAP + 96, 5, no_function, 0) == []


def test_a_second_free_is_a_double_free_of_the_first() -> None:
    calls = [alloc(1, HEAP, 32, 5), free(2, HEAP, 5), free(3, HEAP, 5)]
    causes = classify(calls, [], tagged(HEAP, 5), 5, lambda a: "free" if a == 0x4242 else None, 0x4242)
    assert causes[0].kind == "double-free" and causes[0].size == 32
    assert causes[0].deallocated is not None and causes[0].deallocated.frames[0] == 0x3000


def test_tag_stores_make_regions_and_their_causes() -> None:
    frames = (0x5000, 0x6000, 0x7000)
    stores = [Event(i + 1, TAG_WRITE, KIND_TAGS, 1, tagged(HEAP + 16 * i, 5), 16, (0x5000 + 4 * i, *frames[1:]))
              for i in range(3)]                                     # an unrolled loop: one 48-byte region
    stores.append(Event(4, TAG_WRITE, KIND_TAGS, 1, tagged(HEAP + 48, 3), 16, (0x5100, *frames[1:])))
    assert [(r.start, r.size) for r in regions(stores)] == [(HEAP, 48), (HEAP + 48, 16)]
    causes = classify([], stores, tagged(HEAP + 48, 5), 5, no_function, 0)
    assert [(c.kind, c.offset, c.size, c.source) for c in causes] == [("buffer-overflow", 0, 48, "tag stores")]
    assert last_tag_store(stores, HEAP + 50) is not None
    # Retagged since: a use after the region was retagged.
    retag = stores + [Event(5, TAG_WRITE, KIND_TAGS, 1, tagged(HEAP, 9), 48, (0x5200, *frames[1:]))]
    assert classify([], retag, HEAP + 8, 5, no_function, 0)[0].kind == "use-after-free"


class Regs:
    """x0-x30 of a thread, as the hooks read them."""

    def __init__(self, **values: int) -> None:
        self.x = {int(k[1:]): v for k, v in values.items()}

    def __call__(self, n: int) -> int:
        return self.x.get(n, 0)

    def set_lr(self, v: int) -> None:
        self.x[30] = v


def call(h: PyHistory, tid: int, op: str, result: int, **args: int) -> None:
    """One allocator call through the hooks: entry, then the trampoline."""
    regs = Regs(**args, x30=0x400100)
    h.entered(OPS[op], tid, regs, regs.set_lr, (0x1000, 0x400100), 0x7FFF_0000)
    if h.pending.get(tid) is not None:
        assert regs(30) == TRAMPOLINE                   # the return goes through the trampoline
        regs.x[0] = result
        h.returned(tid, regs, regs.set_lr, lambda _a: None)
    assert regs(30) == 0x400100                         # and comes back to the caller


def test_the_recorder_hears_calls_as_the_allocator_made_them() -> None:
    h = PyHistory(calls=8, tag_stores=4)
    h.set_table({0x1000: OPS["malloc"]}, TRAMPOLINE)
    call(h, 1, "malloc", tagged(HEAP, 3), x0=32)
    call(h, 1, "realloc", tagged(HEAP + 64, 4), x0=tagged(HEAP, 3), x1=100)
    call(h, 2, "calloc", tagged(HEAP + 256, 5), x0=10, x1=10)
    call(h, 2, "free", 0, x0=tagged(HEAP + 256, 5))
    got = [(OP_NAMES[e.op], e.kind, e.tid, e.start, e.size) for e in h.events()]
    assert got == [("malloc", KIND_ALLOC, 1, HEAP, 32), ("realloc", KIND_FREE, 1, HEAP, 0),
                   ("realloc", KIND_ALLOC, 1, HEAP + 64, 100), ("calloc", KIND_ALLOC, 2, HEAP + 256, 100),
                   ("free", KIND_FREE, 2, HEAP + 256, 0)]
    # A call inside another (realloc's malloc) is its caller's; tag stores inside calls are not heard.
    regs = Regs(x0=8, x30=0x400100)
    h.entered(OPS["realloc"], 1, regs, regs.set_lr, (0x1000,), 0x7FFF_0000)
    inner = Regs(x0=8, x30=0x1234)
    h.entered(OPS["malloc"], 1, inner, inner.set_lr, (0x1000,), 0x7FFF_0000 - 0x40)
    assert inner(30) == 0x1234
    h.tag_write(1, 0x5000, tagged(HEAP, 3), 16, lambda: (0x5000, 0))
    assert h.events(tags=True) == []
    # A tail call from a call (realloc(NULL, n) -> malloc, x30 still the trampoline) is its caller's.
    tail = Regs(x0=8, x30=TRAMPOLINE)
    h.entered(OPS["malloc"], 1, tail, tail.set_lr, (0x1000,), 0x7FFF_0000)
    assert tail(30) == TRAMPOLINE and h.pending[1].op == OPS["realloc"]
    # A call left by longjmp: the next call from as high on the stack starts afresh.
    again = Regs(x0=24, x30=0x400200)
    h.entered(OPS["malloc"], 1, again, again.set_lr, (0x1000,), 0x7FFF_0000)
    assert again(30) == TRAMPOLINE and h.pending[1].args[0] == 24


@given(n=st.integers(0, 40), cap=st.integers(0, 16))
def test_the_rings_keep_the_last_events_and_fork_copies_them(n: int, cap: int) -> None:
    h = PyHistory(calls=cap, tag_stores=cap)
    h.set_table({}, TRAMPOLINE)
    for i in range(n):
        call(h, 1, "free", 0, x0=tagged(HEAP + 16 * i, 1))
    kept = h.events()
    expected = [HEAP + 16 * i for i in range(n)][-cap:] if cap else []
    assert [e.start for e in kept] == expected
    child = h.clone()
    call(child, 1, "free", 0, x0=HEAP + 0x9000)
    assert h.events() == kept                           # the parent's history is its own
    child_expected = (expected + [HEAP + 0x9000])[-cap:] if cap else []
    assert [e.start for e in child.events()] == child_expected
