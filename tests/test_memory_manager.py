"""The memory manager of the RFC, driven directly: random sequences of map / touch / tag /
mprotect(PROT_MTE) / fork / munmap / exit / reclaim to swap / compaction on a board whose
ordinary memory is nearly all taken, so untagged data spills into tag storage and tagged
pages must take it back. After every step the invariants hold; at the end every page
still holds what was written to it, and every tagged granule its tag. Both policies.
Then the command line: kernel log, counters, swap files, and the model-violation stop."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import ROOT, run_mteemu
from hypothesis import given, settings
from hypothesis import strategies as st

from mteemu.errors import ModelViolation
from mteemu.kernel.mm import invariants, migrate, swap
from mteemu.kernel.mm.addrspace import Mm
from mteemu.kernel.mm.fixes import FIXES
from mteemu.kernel.mm.pagealloc import OutOfMemory
from mteemu.kernel.mm.vma import PROT_MTE, PROT_READ, PROT_WRITE, Vma
from mteemu.machine.physmem import PAGE_SHIFT
from mteemu.races.world import BOARD, World

FREE_ORDINARY = 160              # ordinary pages left free; the rest is taken by the kernel


class Model(World):
    """The small board, its ordinary memory nearly all taken, and what each page should hold."""

    def __init__(self, policy: str, fixes: tuple[str, ...] = FIXES, board=None) -> None:
        super().__init__(policy, fixes, board=board or BOARD)
        b = self.alloc.buddy
        free = [p for h, o in sorted(b.free_blocks()) if not b.is_tag_storage(h) for p in range(h, h + (1 << o))]
        self.leave_free(keep=free[:FREE_ORDINARY])
        self.expected: dict[tuple[int, int], tuple[int, int]] = {}   # (mm id, vaddr) -> (value, tag)
        self.counter = 0

    def new_mm(self, name: str = "") -> Mm:
        return super().new_mm(name or f"mm {len(self.mms)}")

    def load(self, mm: Mm, addr: int) -> tuple[int, int]:
        got = self.read(mm, addr, 8)
        assert got is not None, f"no translation for {addr:#x}"
        return int.from_bytes(got[0], "little"), got[1]

    def write(self, mm: Mm, addr: int, tag: int) -> None:
        res = self.fault(mm, addr, True)
        assert res is not None, f"no translation for {addr:#x}"
        pa, _, tagged = res
        self.counter += 1
        self.physmem.view(pa, 8)[:] = self.counter.to_bytes(8, "little")
        if tagged:
            self.tags.set_range(pa, 16, tag)      # STG: only ever into reserved storage
        self.expected[(mm.id, addr)] = (self.counter, tag if tagged else 0)


ops = st.lists(st.tuples(st.sampled_from(["map", "map_mte", "touch", "touch", "touch", "read", "mprotect",
                                          "unmap", "fork", "exit", "reclaim", "compact"]),
                         st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 15)),
               min_size=1, max_size=60)


def run_sequence(policy: str, seq: list, board=None) -> World:
    w = Model(policy, board=board)
    w.new_mm()
    for op, a, b, tag in seq:
        live = [m for m in w.mms if m.vmas is not None]
        mm = live[a % len(live)] if live else w.new_mm()
        vmas = [v for v in mm.vmas if v.name == "test"]
        try:
            if op in ("map", "map_mte"):
                n = 1 + b % 24
                addr = mm.get_unmapped_area(n << PAGE_SHIFT)
                prot = PROT_READ | PROT_WRITE | (PROT_MTE if op == "map_mte" else 0)
                mm.map(Vma(addr, addr + (n << PAGE_SHIFT), prot, name="test", mte_allowed=True))
            elif op in ("touch", "read") and vmas:
                v = vmas[b % len(vmas)]
                addr = v.start + ((b // 7) % ((v.end - v.start) >> PAGE_SHIFT) << PAGE_SHIFT)
                if op == "touch":
                    w.write(mm, addr, tag)
                else:
                    w.load(mm, addr)
            elif op == "mprotect" and vmas:
                v = vmas[b % len(vmas)]
                mm.protect(v.start, v.end, PROT_READ | PROT_WRITE | PROT_MTE)
                for (mid, addr), (value, _) in list(w.expected.items()):
                    if mid == mm.id and v.start <= addr < v.end and not v.prot & PROT_MTE:
                        w.expected[(mid, addr)] = (value, 0)      # tags start at 0
            elif op == "unmap" and vmas:
                v = vmas[b % len(vmas)]
                mm.unmap(v.start, v.end)
                w.expected = {k: x for k, x in w.expected.items() if not (k[0] == mm.id and v.start <= k[1] < v.end)}
            elif op == "fork":
                child = mm.fork()
                w.mms.append(child)
                for (mid, addr), x in list(w.expected.items()):
                    if mid == mm.id:
                        w.expected[(child.id, addr)] = x
            elif op == "exit" and len(live) > 1:
                mm.destroy()
                mm.vmas = None
                w.expected = {k: x for k, x in w.expected.items() if k[0] != mm.id}
            elif op == "reclaim":
                swap.reclaim(w.alloc, 1 + b % 16)
            elif op == "compact":
                migrate.compact(w.alloc, 1 + b % 3)
        except OutOfMemory:
            pass
        invariants.check(w.alloc, op)
    for mm in w.mms:
        if mm.vmas is None:
            continue
        for (mid, addr), (value, tag) in w.expected.items():
            if mid == mm.id:
                assert w.load(mm, addr) == (value, tag), f"{mm.owner_name} at {addr:#x}"
    invariants.check(w.alloc, "the reads")
    return w


@settings(max_examples=40, deadline=None)
@given(ops)
def test_random_sequences_keep_data_tags_and_invariants_metadata(seq) -> None:
    run_sequence("metadata", seq)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_random_sequences_keep_data_tags_and_invariants_cma(seq) -> None:
    run_sequence("cma", seq)


@pytest.mark.slow             # seconds of emulation: not the fast layer
@pytest.mark.parametrize("block_size", [4096, 16384])
def test_a_long_sequence_reuses_tag_storage_and_takes_it_back(block_size: int) -> None:
    """A fixed workload that must go through every mechanism at least once; also with
    4-page tag blocks (a DT block-size of 16 KiB: one block serves 128 data pages)."""
    board = BOARD
    if block_size != 4096:
        tr = BOARD.tag_regions[0]
        board = replace(BOARD, tag_regions=(replace(tr, block_size=block_size),))
    seq = [("map", 0, 23, 1)] * 12 + [("touch", 0, i, 1) for i in range(0, 2000, 3)] + \
        [("reclaim", 0, 15, 1), ("compact", 0, 1, 1), ("map_mte", 0, 23, 1)] + \
        [("touch", 0, i, 1 + i % 15) for i in range(0, 3000, 5)] + [("mprotect", 0, 3, 1)] + \
        [("touch", 0, i, 1 + i % 15) for i in range(1, 600, 7)] + [("fork", 0, 0, 1)] + \
        [("touch", 1, i, 3) for i in range(0, 500, 11)] + [("reclaim", 0, 15, 1)] * 3
    w = run_sequence("metadata", seq, board)
    ev = w.alloc.events
    assert ev["metadata_reserve_success"] and ev["pgmigrate_success"] and ev["pswpout"] and ev["pswpin"]
    assert ev["mprotect_mte"] and ev["compact_stall"]
    bsp = block_size // 4096
    assert ev["metadata_reserve_success"] % bsp == 0          # counted in pages, a block at a time
    assert all((b - w.region.tag_start) % bsp == 0 for b in w.alloc.storage.blocks)


def test_a_tag_write_into_unreserved_storage_holding_data_stops_the_machine() -> None:
    """The machine's side: tags written for a page whose tag block is not reserved, while
    that block is someone's data page, are reported with the pfn, block and victim."""
    w = Model("metadata")
    mm = w.new_mm()
    addr = mm.get_unmapped_area(600 << PAGE_SHIFT)
    mm.map(Vma(addr, addr + (600 << PAGE_SHIFT), PROT_READ | PROT_WRITE, name="test"))
    for i in range(600):
        w.write(mm, addr + (i << PAGE_SHIFT), 0)      # untagged data, spilling into tag storage
    st, region = w.alloc.storage, w.alloc.storage.regions[0]
    victim = next(p.pfn for p in mm.ptes.values() if region.tag_start <= p.pfn < region.tag_end)
    data_pfn = region.mem_start + (victim - region.tag_start) * 32       # a page whose tags live there
    assert st.block_of(data_pfn) == victim and not st.has_storage(data_pfn)
    with pytest.raises(ModelViolation, match=rf"tags of pfn {data_pfn:#x} written into tag block {victim:#x}, "
                                             r"which is not reserved and holds data") as e:
        w.tags.set_range(data_pfn << PAGE_SHIFT, 16, 5)
    assert any(f"pfn {victim:#x}: data of {mm.owner_name} at 0x" in d for d in e.value.details)
    # Through the kernel, the same memory becomes tagged safely: mprotect(PROT_MTE) and a
    # write to every page reserves blocks, moving the data living in them away.
    mm.protect(addr, addr + (600 << PAGE_SHIFT), PROT_READ | PROT_WRITE | PROT_MTE)
    for i in range(0, 600, 3):
        w.write(mm, addr + (i << PAGE_SHIFT), 5)
    invariants.check(w.alloc, "the writes")
    assert w.alloc.events["pgmigrate_success"]
    for (_, a), (value, tag) in w.expected.items():
        assert w.load(mm, a) == (value, tag)


@pytest.mark.slow
def test_the_tag_storage_boot_and_counters_on_the_command_line(guest) -> None:
    dts = str(ROOT / "dts" / "small-v3.dts")
    hello = str(guest("hello"))
    r = run_mteemu(["run", "--dtb", dts, "--kmsg", "--stats", hello])
    err = r.stderr.decode()
    assert r.returncode == 3, err                      # hello's own exit status
    assert "Found MTE tag storage region 0x200000@0x84000000, block size 1 pages" in err
    assert "] MTE tag storage enabled" in err
    assert "MetadataTotal=2048kB" in err and "metadata_reserve_success=1" in err   # the zero page's block
    r = run_mteemu(["run", "--dtb", dts, "--kmsg", "--stats", "--tag-storage-policy", "cma", hello])
    err = r.stderr.decode()
    assert "Found tag storage region 0x84000000-0x841fffff, block size 1 pages" in err
    assert "MTE tag storage region management enabled" in err and "CmaTotal=2048kB" in err
    r = run_mteemu(["run", "--kmsg", hello])           # the default board: a static carve-out
    assert "No MTE tag storage regions detected" in r.stderr.decode()


@pytest.mark.slow
def test_swap_files_are_new_and_removed(guest, tmp_path: Path) -> None:
    hello = str(guest("hello"))
    existing = tmp_path / "mine"
    existing.write_bytes(b"precious")
    r = run_mteemu(["run", "--swap", "8M", "--swap-file", str(existing), hello])
    assert r.returncode == 2 and b"exists" in r.stderr and existing.read_bytes() == b"precious"
    r = run_mteemu(["run", "--swap-file", str(tmp_path / "x"), hello])
    assert r.returncode == 2 and b"--swap-file needs --swap" in r.stderr
    r = run_mteemu(["run", "--swap", "8M", "--swap-file", str(tmp_path / "new"), hello])
    assert r.returncode == 3 and not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_guest_watching_race_free_memory_corrupt_without_the_fixes(guest) -> None:
    """The mprotect workload with fault-on-access and the set_pte_at backstop off. Without
    the invariant checker, a tag write lands in a tag block holding another page's data:
    the run stops (exit 3) naming the pfn, the block and whose data lived there. With it,
    the broken invariant is caught first, right after the mprotect call."""
    binary = str(guest("mm/mprotect"))
    args = ["run", "--dtb", str(ROOT / "dts" / "small-v3.dts"), "--without", "fault-on-access",
            "--without", "set-pte-backstop", binary]
    r = run_mteemu(args, env={"MTEEMU_CHECK_INVARIANTS": "0"})
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "model violation: tags of pfn 0x" in err and "which is not reserved and holds data" in err
    assert "data of pid 1000" in err and "Traceback" not in err
    r = run_mteemu(["run", "--check-invariants"] + args[1:])
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "model violation: invariant broken after a system call: pfn 0x" in err
    assert "is mapped Tagged by pid 1000 (mprotect) at 0x" in err and "without its tag block 0x" in err


@pytest.mark.slow
def test_the_built_in_small_board_is_dts_small_v3() -> None:
    from mteemu.board import info
    from mteemu.board.model import small_reuse_board

    a, b = small_reuse_board(), info.read(str(ROOT / "dts" / "small-v3.dts")).board()
    assert a.memory == b.memory
    assert [(t.base, t.size, t.tagged, t.block_size, t.reusable) for t in a.tag_regions] == \
        [(t.base, t.size, t.tagged, t.block_size, t.reusable) for t in b.tag_regions]


@pytest.mark.parametrize("policy", ["metadata", "cma"])
def test_a_reservation_that_fails(policy: str) -> None:
    """A tag block whose page cannot move (pinned: -EBUSY, every retry) cannot be
    reserved. RFC v1 gives the page back and takes another (metadata_reserve_fail);
    v3 keeps the page without storage, maps it fault-on-access, and on the first access
    moves it to a page that can have its tags (cma_alloc_fail)."""
    w = World(policy)
    victim_mm = w.new_mm("victim")
    vaddr = w.map(victim_mm, 1)
    v = w.tag_storage_pfn(40)
    w.place(victim_mm, vaddr, v, b"pinned victim")
    doomed = w.data_pfns_of_block(v)[1]                    # its tags would live in the victim's page
    spare = w.data_pfns_of_block(w.tag_storage_pfn(80))    # an aligned, free 32-page block elsewhere
    task = w.new_mm("task")
    addr = w.map(task, 1, mte=True)
    task.pt.ensure(addr >> PAGE_SHIFT)
    w.leave_free(keep=[doomed, *spare])                    # the buddy hands out `doomed` first
    st = w.alloc.storage
    with w.alloc.pinned(v):
        assert w.stg(task, addr, 6)
    pfn = task.ptes[addr >> PAGE_SHIFT].pfn
    assert pfn in spare and st.has_storage(pfn) and w.read(task, addr)[1] == 6
    assert not st.has_storage(doomed) and w.alloc.buddy.is_free(doomed)
    assert w.read(victim_mm, vaddr, 13)[0] == b"pinned victim"
    ev = w.alloc.events
    if policy == "metadata":
        assert ev["metadata_reserve_fail"] == 1 and ev["pgmigrate_success"] == 0
    else:
        # Reserved at allocation (fails), again on the fault (fails), then the page moved.
        assert ev["cma_alloc_fail"] == 2 and ev["pgmigrate_success"] == 1
    invariants.check(w.alloc, "the test")


def _healthy_world() -> World:
    """A small world with a tagged page, an untagged one and a kernel page."""
    w = World("metadata")
    mm = w.new_mm("probe")
    addr = w.map(mm, 2, mte=True)
    assert w.fault(mm, addr, True) is not None and w.fault(mm, addr + 4096, True) is not None
    w.stg(mm, addr, 3)
    assert invariants.violations(w.alloc) == []
    return w


@pytest.mark.parametrize("invariant, break_it", [
    (invariants.reverse_map, lambda w: next(iter(w.alloc.mappers.values())).add((next(iter(next(iter(
        w.alloc.mappers.values()))))[0], 0x12345))),
    (invariants.tag_storage_untagged, lambda w: w.alloc.mte_tagged.add(w.tag_storage_pfn())),
    (invariants.tag_blocks_counted, lambda w: w.alloc.storage.blocks.update(
        {b: r + 1 for b, r in w.alloc.storage.blocks.items()})),
    (invariants.free_lists, lambda w: setattr(w.alloc.buddy.zones[0], "nr_free", w.alloc.buddy.zones[0].nr_free + 1)),
    (invariants.one_owner_per_page, lambda w: w.alloc.kernel_pages.add(next(iter(w.alloc.buddy.free_blocks()))[0])),
], ids=lambda v: getattr(v, "__name__", "break"))
def test_each_invariant_catches_its_breakage(invariant, break_it) -> None:
    """One function per invariant: each finds the state it forbids (and is what `check` runs)."""
    w = _healthy_world()
    try:
        break_it(w)
        assert list(invariant(w.alloc)), invariant.__name__
        assert invariant in invariants.INVARIANTS
        with pytest.raises(ModelViolation):
            invariants.check(w.alloc, "the breakage")
    finally:
        w.close()
