"""The RFC's races (docs/reference/tag-storage-rfc.md §5, the v1 cover letter), each as threads of
atomic steps against the memory-manager model.

Every scenario puts a *victim* in harm's way: another process's data living in the tag
page that holds the tags of the page the race is about. A fix that fails lets a tag write
land in that page — the machine catches it (a model violation) — and the final check
reads the victim's data and the subject's data and tags back through their page tables.
Where a step depends on which page the allocator returns, the setup arranges it (the
allocator "happens to" return the page whose tag block holds the victim).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable, Optional

from mteemu.kernel.mm import migrate, swap
from mteemu.kernel.mm.addrspace import Pte
from mteemu.kernel.mm.vma import PROT_MTE, PROT_READ, PROT_WRITE
from mteemu.machine.physmem import PAGE_SHIFT, PAGE_SIZE
from mteemu.races.world import World, stg_note

VICTIM = b"victim's data, not to be overwritten by anybody's tags!".ljust(256, b".")
RW_MTE = PROT_READ | PROT_WRITE | PROT_MTE

Ctx = SimpleNamespace
StepFn = Callable[[Ctx], Optional[str]]


@dataclass
class Step:
    thread: int
    label: str
    run: StepFn


@dataclass
class Scenario:
    name: str
    title: str
    guarded_by: tuple[str, ...]            # the fixes that prevent its corruption
    threads: list[str]                     # thread names
    steps: list[list[tuple[str, StepFn]]]  # per thread, in program order
    setup: Callable[[World], Ctx]
    check: Callable[[Ctx], list[str]]      # what is wrong once every step ran
    story: str = ""

    def thread_steps(self) -> list[list[Step]]:
        return [[Step(t, label, fn) for label, fn in steps] for t, steps in enumerate(self.steps)]


@dataclass
class _Victim:
    mm: object
    addr: int
    pfn: int = field(default=0)


def _victim(w: World, tag_index: int) -> _Victim:
    """Another process's page whose memory is tag page `tag_index` (tag storage reused)."""
    mm = w.new_mm("victim (pid 2000)")
    addr = w.map(mm, 1)
    pfn = w.tag_storage_pfn(tag_index)
    w.place(mm, addr, pfn, VICTIM)
    return _Victim(mm, addr, pfn)


def _victim_problems(c: Ctx) -> list[str]:
    got = c.w.read(c.victim.mm, c.victim.addr, len(VICTIM))
    if got is None or got[0] != VICTIM:
        pte = c.victim.mm.ptes.get(c.victim.addr >> PAGE_SHIFT)
        where = f"pfn {pte.pfn:#x}" if pte is not None else "no page"
        return [f"the victim's data at {c.victim.addr:#x} ({where}) was corrupted: it reads "
                f"{(got[0][:24] if got else b'nothing')!r}..."]
    return []


def _expect(c: Ctx, mm: object, addr: int, data: bytes, tag: int, who: str) -> list[str]:
    got = c.w.read(mm, addr, len(data))
    if got is None:
        return [f"{who}: {addr:#x} cannot be read"]
    problems = []
    if got[0] != data:
        problems.append(f"{who}: data at {addr:#x} is {got[0][:16]!r}, expected {data[:16]!r}")
    if got[1] != tag:
        problems.append(f"{who}: the tag of {addr:#x} is {got[1]}, expected {tag}")
    return problems


# -- race A: migration vs mprotect(PROT_MTE) (the copy_highpage case) ----------------------------
def _setup_a(w: World) -> Ctx:
    c = Ctx(w=w)
    c.victim = _victim(w, 5)
    c.d = w.data_pfns_of_block(c.victim.pfn)[0]            # the migration's destination
    c.task = w.new_mm("task (pid 1000)")
    c.addr = w.map(c.task, 1)
    c.s = w.data_pfns_of_block(w.tag_storage_pfn(9))[0]    # the page being migrated
    w.place(c.task, c.addr, c.s, b"S: the task's data")
    w.leave_free(keep=list(w.data_pfns_of_block(w.tag_storage_pfn(30))) + [c.d])
    return c


def _a_alloc(c: Ctx) -> str:
    # migrate_pages(): the target is __GFP_TAGGED only if the source is tagged now.
    if c.s in c.w.alloc.mte_tagged:
        c.d = c.w.alloc.alloc(tagged=True)
        return f"S is tagged already: D = pfn {c.d:#x}, allocated with __GFP_TAGGED (storage reserved)"
    c.w.take(c.d)
    return f"D = pfn {c.d:#x}, no __GFP_TAGGED: its tag block {c.w.alloc.storage.block_of(c.d):#x} is not reserved"


def _a_migrate(c: Ctx) -> str:
    # try_to_migrate() puts migration entries in S's PTEs (an access waits for them to go),
    # copies, and remove_migration_ptes() maps D: one step for the other thread.
    c.w.alloc.copy_highpage(c.d, c.s)
    parked = c.d in c.w.alloc.storage.parked
    migrate.move_users(c.w.alloc, c.s, c.d)
    c.w.alloc.free_to_buddy(c.s)
    pte = c.task.ptes[c.addr >> PAGE_SHIFT]
    return ("S is tagged and D has no storage: S's tags parked under D's pfn; " if parked else "copied; ") + \
        f"D mapped{' fault-on-access' if pte.md_none else ''}; S freed"


def _a_mprotect(c: Ctx) -> str:
    c.task.protect(c.addr, c.addr + PAGE_SIZE, RW_MTE)
    return "the VMA is VM_MTE"


def _a_stg(c: Ctx) -> str:
    ok = c.w.stg(c.task, c.addr, 5)
    return stg_note(ok, f"tag 5 stored in pfn {c.task.ptes[c.addr >> PAGE_SHIFT].pfn:#x}'s tags")


RACE_A = Scenario(
    "race-a", "migration vs mprotect(PROT_MTE): copy_highpage into a page without tag storage",
    ("pfn-tag-save",), ["kcompactd (migrates S)", "task"],
    [[("allocate the destination D", _a_alloc),
      ("unmap S, copy_highpage(D, S), map D in its place", _a_migrate)],
     [("mprotect(PROT_MTE) over S's VMA", _a_mprotect), ("STG #5 to the page (first access)", _a_stg)]],
    _setup_a,
    lambda c: _victim_problems(c) + _expect(c, c.task, c.addr, b"S: the task's data", 5, "task"),
    "T0 migrates page S of a VMA without VM_MTE; its destination D is allocated without "
    "__GFP_TAGGED. T1 makes the VMA VM_MTE and tags S. If copy_highpage() then copies S's "
    "tags, they land in D's tag block, which is not reserved and holds another process's data.")


# -- race B: swap-in restoring tags into a page without tag storage --------------------------------
def _setup_b(w: World) -> Ctx:
    c = Ctx(w=w)
    c.victim = _victim(w, 6)
    c.n = w.data_pfns_of_block(c.victim.pfn)[0]            # the page swap-in will get
    c.parent = w.new_mm("parent (pid 1000)")
    c.addr = w.map(c.parent, 1)
    c.p = w.data_pfns_of_block(w.tag_storage_pfn(11))[0]
    w.place(c.parent, c.addr, c.p, b"P: shared data")
    c.child = c.parent.fork()
    c.child.owner_name = "child (pid 1001)"
    w.mms.append(c.child)
    # The parent's mapping becomes VM_MTE and P gets tags; the child's stays untagged.
    c.parent.protect(c.addr, c.addr + PAGE_SIZE, RW_MTE)
    w.read(c.parent, c.addr)
    w.leave_free(keep=list(w.data_pfns_of_block(w.tag_storage_pfn(31))) + [c.n])
    c.slot = None
    return c


def _b_swap_out(c: Ctx) -> str:
    pte = c.parent.ptes[c.addr >> PAGE_SHIFT]
    if not pte.present:
        return "already in swap"
    swap.swap_out(c.w.alloc, pte.pfn)
    c.slot = pte.swap
    return f"P in swap slot {c.slot}, its tags saved with the entry"


def _b_child_alloc(c: Ctx) -> str:
    pte = c.child.ptes[c.addr >> PAGE_SHIFT]
    if pte.present:
        return "not in swap: nothing to do"
    c.w.take(c.n)
    swap.read_page(c.w.alloc, pte.swap, c.n)
    c.swapping_in = pte.swap
    block = c.w.alloc.storage.block_of(c.n)
    return f"N = pfn {c.n:#x} without __GFP_TAGGED (Y is not VM_MTE): tag block {block:#x} not reserved"


def _b_child_restore(c: Ctx) -> str:
    slot = getattr(c, "swapping_in", None)
    if slot is None:
        return "nothing to do"
    swap.restore_tags(c.w.alloc, slot, c.n)
    return "tags parked under N's pfn" if c.n in c.w.alloc.storage.parked else "tags restored into N"


def _b_child_install(c: Ctx) -> str:
    slot = getattr(c, "swapping_in", None)
    if slot is None:
        return "nothing to do"
    swap.install(c.w.alloc, slot, c.n)
    c.swapping_in = None
    return "N mapped in every PTE that held the entry"


def _b_parent_load(c: Ctx) -> str:
    got = c.w.read(c.parent, c.addr)
    return "loaded" if got else "no translation (VM_FAULT_RETRY)"


RACE_B = Scenario(
    "race-b", "swap-in restoring tags into a page without tag storage",
    ("swap-prepare-restore",), ["kswapd", "child (VMA Y, not VM_MTE)", "parent (VMA X, VM_MTE)"],
    [[("swap P out", _b_swap_out)],
     [("do_swap_page: allocate N, read the data", _b_child_alloc),
      ("arch_swap_restore: the entry's tags", _b_child_restore),
      ("map N", _b_child_install)],
     [("load through X", _b_parent_load)]],
    _setup_b,
    lambda c: _victim_problems(c) + _expect(c, c.child, c.addr, b"P: shared data", 0, "child") +
    _expect(c, c.parent, c.addr, b"P: shared data", 0, "parent"),
    "Page P is tagged in the parent's VM_MTE VMA X and untagged in the child's VMA Y. P goes to "
    "swap with its tags. The child faults it back in: the new page N is untagged, so its tag "
    "block is not reserved, but mainline restores the entry's tags anyway.")


# -- race C: a tag-storage page mapped in a VMA that becomes VM_MTE ---------------------------------
def _setup_c(w: World) -> Ctx:
    c = Ctx(w=w, tagged=False)
    c.task = w.new_mm("task (pid 1000)")
    c.addr = w.map(c.task, 2)
    c.m1 = w.tag_storage_pfn(3)
    c.p1 = w.data_pfns_of_block(c.m1)[0]
    w.place(c.task, c.addr, c.p1, b"P1: data")
    w.place(c.task, c.addr + PAGE_SIZE, c.m1, b"M1: data in tag storage")
    c.victim = _victim(w, 7)
    # M1's data can only move to a page whose tags live in the victim's page.
    w.leave_free(keep=w.data_pfns_of_block(c.victim.pfn), tag_storage=False)
    return c


def _c_mprotect(c: Ctx) -> str:
    c.task.protect(c.addr, c.addr + 2 * PAGE_SIZE, RW_MTE)
    return "both pages fault-on-access" if c.task.ptes[c.addr >> PAGE_SHIFT].md_none else "VM_MTE"


def _c_touch_p1(c: Ctx) -> str:
    got = c.w.read(c.task, c.addr)
    p2 = c.task.ptes[(c.addr + PAGE_SIZE) >> PAGE_SHIFT]
    if got is None:
        return "no translation (VM_FAULT_RETRY)"
    if p2.pfn != c.m1:
        return (f"P1's block M1 reserved: M1's data migrated to P2 = pfn {p2.pfn:#x} (untagged), "
                f"mapped{' fault-on-access' if p2.md_none else ' as a normal Tagged page'}")
    return "loaded"


def _c_stg_m1(c: Ctx) -> str:
    ok = c.w.stg(c.task, c.addr + PAGE_SIZE, 9)
    c.tagged = bool(ok)
    return stg_note(ok, f"tag 9 stored in pfn {c.task.ptes[(c.addr + PAGE_SIZE) >> PAGE_SHIFT].pfn:#x}'s tags")


RACE_C = Scenario(
    "race-c", "a tag-storage page mapped in a VMA that becomes VM_MTE",
    ("set-pte-backstop",), ["task", "task, another thread"],
    [[("mprotect(PROT_MTE) over P1 and M1", _c_mprotect), ("load P1 (reserves M1, migrating its data)", _c_touch_p1)],
     [("STG #9 to the second page (M1's data)", _c_stg_m1)]],
    _setup_c,
    lambda c: _victim_problems(c) + _expect(c, c.task, c.addr, b"P1: data", 0, "task") +
    _expect(c, c.task, c.addr + PAGE_SIZE, b"M1: data in tag storage", 9 if c.tagged else 0, "task"),
    "M1 (a tag storage page) and P1 (whose tags live in M1) are mapped in one VMA, which becomes "
    "VM_MTE. Reserving P1's block migrates M1's data to P2, allocated without __GFP_TAGGED; the "
    "migration installs P2 in the VM_MTE VMA without tag storage.")


# -- a fatal signal during reservation (RFC v1 patch 34) ---------------------------------------------
def _setup_f(w: World) -> Ctx:
    c = Ctx(w=w, killed=False)
    c.victim = _victim(w, 8)
    c.q = w.data_pfns_of_block(c.victim.pfn)[0]            # the page the fault will get
    c.task = w.new_mm("task (pid 1000)")
    c.addr = w.map(c.task, 1, mte=True)
    w.alloc.tag_storage.interrupted = lambda: c.killed
    c.task.pt.ensure(c.addr >> PAGE_SHIFT)
    w.leave_free(keep=list(w.data_pfns_of_block(w.tag_storage_pfn(29))) + [c.q])
    return c


def _f_alloc_reserve(c: Ctx) -> str:
    c.w.take(c.q)
    c.w.alloc.storage.reserve(c.q)
    if c.w.alloc.has_storage(c.q):
        return f"Q = pfn {c.q:#x}, its tag block reserved"
    return f"Q = pfn {c.q:#x}: alloc_contig_range() -> -EINTR (fatal signal), reported as success, no storage"


def _f_install(c: Ctx) -> str:
    if c.killed and c.task.vmas is None:
        return "the process is gone"
    c.task.pt.install(c.addr >> PAGE_SHIFT, Pte(c.q, False))
    pte = c.task.ptes[c.addr >> PAGE_SHIFT]
    return "set_pte_at: " + ("fault-on-access (no storage)" if pte.md_none else "a normal Tagged entry")


def _f_kill(c: Ctx) -> str:
    c.killed = True
    return "SIGKILL pending for the process"


def _f_other_stg(c: Ctx) -> str:
    pte = c.task.ptes.get(c.addr >> PAGE_SHIFT)
    if pte is None:
        return "not mapped yet: the thread waits on the page lock"
    ok = c.w.stg(c.task, c.addr, 3)
    return stg_note(ok, "tag 3 stored")


def _f_check(c: Ctx) -> list[str]:
    problems = _victim_problems(c)
    pte = c.task.ptes.get(c.addr >> PAGE_SHIFT)
    if pte is not None and pte.present and not pte.md_none and not c.w.alloc.has_storage(pte.pfn):
        problems.append(f"task: pfn {pte.pfn:#x} is mapped Tagged without tag storage")
    return problems


FATAL_SIGNAL = Scenario(
    "fatal-signal", "a fatal signal during tag storage reservation",
    ("set-pte-backstop",), ["task, faulting thread", "killer", "task, another thread"],
    [[("fault: allocate Q, reserve its tag storage", _f_alloc_reserve), ("set_pte_at(Q)", _f_install)],
     [("kill(SIGKILL)", _f_kill)],
     [("STG #3 to the page", _f_other_stg)]],
    _setup_f, _f_check,
    "A thread faults on a PROT_MTE page; while its tag block is being taken a fatal signal "
    "arrives, alloc_contig_range() returns -EINTR and the reservation reports success without "
    "storage, so the exit path can run. The page is still mapped; another thread touches it.")


SCENARIOS = {s.name: s for s in (RACE_A, RACE_B, RACE_C, FATAL_SIGNAL)}
