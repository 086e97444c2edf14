"""Tag checks: the TLB decides which accesses need one, a memory hook performs it.

Unicorn's virtual TLB caches one entry per (logical tag, page): the fill hook sees the
full tagged address, so the tag-check policy lives there (see docs/DESIGN.md):

* untagged page, checks off (TCF NONE or PSTATE.TCO), or every granule of the page
  carrying the pointer's tag -> the real physical page: JIT speed, nothing can fail;
* otherwise -> the same page in *alias window* T (RAM mapped a second time at
  ALIAS_BASE + T << ALIAS_SHIFT), where a memory hook checks each granule the access
  touches against T.

A memory hook cannot stop its own access, only what follows it (measured, see the
design notes). So a mismatch is made precise afterwards: the hook saves the register
context (still the pre-instruction values: writeback happens last) and the bytes the
instruction is about to overwrite, then stops; `settle()` puts registers and memory
back. Writes of the same instruction that came before the mismatching one (the first
half of an STP, earlier bytes of a DC ZVA) are undone from a short log of old bytes.
DC ZVA is the exception: Unicorn zeroes its block with byte stores interleaved with
probes of the same bytes, so the whole block is saved at its first store instead.
A synchronous fault then leaves no architectural trace (Arm ARM: a synchronous Tag
Check Fault is precise). An asynchronous one re-executes the instruction unchecked
and completes it before the fault is reported, as TFSRE0_EL1 does on hardware.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Optional

from unicorn.arm64_const import UC_ARM64_REG_PC

from mteemu.machine import encodings as E
from mteemu.machine.counters import Counters
from mteemu.machine.native import Native
from mteemu.machine.physmem import PAGE_SIZE, PhysMem
from mteemu.machine.tagstore import TagStore

ALIAS_SHIFT = 46                 # 64 TiB per window: board RAM must lie below 2**46
ALIAS_BASE = 1 << 52
ALIAS_MASK = (1 << ALIAS_SHIFT) - 1
UC_MEM_WRITE = 17
_UNDO_LOG = 256                  # writes remembered: more than one instruction ever makes


class Tcf(enum.Enum):
    """What a tag-check fault does (SCTLR_EL1.TCF0 as Linux programs it)."""

    NONE = "none"
    SYNC = "sync"
    ASYNC = "async"


@dataclass
class MteState:
    """The tag-check state of the thread on the CPU."""

    tcf_read: Tcf = Tcf.NONE
    tcf_write: Tcf = Tcf.NONE
    exclude: int = 0             # GCR_EL1.Exclude, from the prctl include mask
    tco: bool = False            # PSTATE.TCO

    @property
    def checking(self) -> bool:
        return not self.tco and (self.tcf_read is not Tcf.NONE or self.tcf_write is not Tcf.NONE)


@dataclass
class Mismatch:
    """A tag-check failure caught by the hook, waiting for settle()."""

    va: int                      # faulting address, logical tag kept
    pa: int
    pc: int
    write: bool
    size: int
    ptr_tag: int
    mem_tag: int
    sync: bool
    ctx: object = None           # the register context before the instruction
    undo: list = None            # type: ignore[assignment]  # (pa, old bytes)


class TagChecker:
    def __init__(self, physmem: PhysMem, tags: TagStore, native: Optional[Native] = None,
                 counters: Optional[Counters] = None) -> None:
        self.physmem = physmem
        self.counters = counters or Counters()
        self.tags = tags
        # The native hot path (_native.c) checks one-granule accesses itself and keeps
        # the undo log; this class stays the reference for everything else.
        self.native = native
        if native is not None:
            native.set_spans([(s.base, s.end, physmem.host_address(s.tags), physmem.host_address_of(s.base))
                              for s in tags.spans])
            native.log_clear()
            # C knows the spans now: buffers are checked against their tags there (a
            # syscall's uaccess, accesses Python checks), the method below its reference.
            tags.mismatch = native.first_mismatch      # type: ignore[method-assign]
        self.state = MteState()
        self.direct: set[int] = set()            # tagged pfns filled straight to RAM
        self.alias_va: dict[int, int] = {}       # alias page -> tagged VA page that filled it
        self.mismatch: Optional[Mismatch] = None
        self.stepping = False                    # re-executing after an async fault
        self._log: deque = deque(maxlen=_UNDO_LOG)
        self._is_dczva: dict[int, bool] = {}     # pc -> the instruction there is DC ZVA
        self._zva: tuple[int, int, bytes] = (-1, -1, b"")   # (pc, block pa, its bytes before)
        self.dcz_block = 64
        # The hot path's shortcut when all tagged RAM is one span (every built-in board).
        span = tags.spans[0] if len(tags.spans) == 1 else None
        self._fast = (span.base, span.end, span.tags, physmem.view(span.base, span.end - span.base)) if span else None

    # -- the fill policy ---------------------------------------------------------------------
    def place(self, vaddr: int, pa: int, tagged: bool) -> int:
        """The physical address to map the (tag, page) of vaddr to."""
        if not tagged or not self.state.checking:
            return pa
        tag = (vaddr >> 56) & 0xF
        pfn = pa >> 12
        if self.tags.uniform(pfn) == tag:
            if self.native is not None:
                self.native.mark_direct(pfn, vaddr)      # C keeps the direct pages (and their VAs)
            else:
                self.direct.add(pfn)
            return pa
        alias = ALIAS_BASE + (tag << ALIAS_SHIFT) + pa
        self.alias_va[alias] = vaddr & ~0xFFF
        if self.native is not None:
            self.native.note_alias(alias, vaddr & ~0xFFF)
        return alias

    def va_of_alias(self, alias_page: int) -> Optional[int]:
        """The tagged virtual page an alias page was filled for (by Python or by C)."""
        va = self.alias_va.get(alias_page)
        if va is None and self.native is not None:
            va = self.native.alias_va(alias_page)
        return va

    def forget(self) -> None:
        """The TLB was flushed: no fast path is cached any more (nor is the code known)."""
        self.direct.clear()
        self.alias_va.clear()
        self._is_dczva.clear()

    # -- the checked path ------------------------------------------------------------------------
    def on_access(self, uc, access: int, address: int, size: int, translate_next, insn_at) -> None:  # noqa: ANN001
        """Memory hook on the alias windows: check every granule the access touches."""
        self.counters.python_checks += 1
        off = address - ALIAS_BASE
        tag = off >> ALIAS_SHIFT
        pa = off & ALIAS_MASK
        write = access == UC_MEM_WRITE
        fast = self._fast
        if fast is not None and (size > 1 or not write) and (pa ^ (pa + size - 1)) >> 4 == 0:
            # One granule (the common case), and not a possible DC ZVA byte store.
            base, end, tags, ram = fast
            if base <= pa < end:
                g = (pa - base) >> 4
                if (tags[g >> 1] >> ((g & 1) << 2)) & 0xF == tag:
                    if write:
                        self._remember(pa, bytes(ram[pa - base:pa - base + size]))
                    return
        self._check(uc, address, pa, tag, size, write, translate_next, insn_at)

    def _check(self, uc, address: int, pa: int, tag: int, size: int, write: bool,  # noqa: ANN001
               translate_next, insn_at) -> None:  # noqa: ANN001
        """Every other access: DC ZVA's whole block, an access crossing into the next page,
        and the mismatch recorded (the CPU stops) when the mode checks it."""
        first = min(size, PAGE_SIZE - (pa & 0xFFF))
        zva_old = None
        if write and size == 1:
            zva = self._dc_zva(uc, pa, insn_at)
            if zva is not None:
                pa, zva_old = zva
                first = size = self.dcz_block                  # check the whole block
        if write:
            self._remember(pa, bytes(self.physmem.view(pa, first)))
        bad_pa = self.tags.mismatch(pa, first, tag)
        bad_va = next_pa = None
        if bad_pa is None and first < size:
            # An unaligned access crossing into the next page (one hook call for both):
            # that page's translation is already in the TLB, ask for it again.
            page_va = self.va_of_alias(address & ~0xFFF)
            res = translate_next(page_va + PAGE_SIZE) if page_va is not None else None
            if res is not None and res[1]:
                next_pa = res[0]
                bad_pa = self.tags.mismatch(next_pa, size - first, tag)
                if bad_pa is not None:
                    bad_va = page_va + PAGE_SIZE + (bad_pa & 0xFFF)     # type: ignore[operator]
        if bad_pa is None or self.stepping or self.mismatch is not None:
            return
        mode = self.state.tcf_write if write else self.state.tcf_read
        if mode is Tcf.NONE:
            return
        self._record(uc, address, pa, first, size, tag, write, mode, (bad_pa, bad_va), zva_old, next_pa)

    def _record(self, uc, address: int, pa: int, first: int, size: int, tag: int, write: bool,  # noqa: ANN001
                mode: Tcf, bad: tuple[int, Optional[int]], zva_old: Optional[bytes], next_pa: Optional[int]) -> None:
        """The mismatch, with what undoes the access's writes, and the CPU stopped."""
        bad_pa, bad_va = bad
        if bad_va is None:
            page_va = self.va_of_alias(address & ~0xFFF) or 0
            # DC ZVA faults at its block, not at the granule that mismatched (the Linux
            # oracle: FAR is the block-aligned address, as QEMU's mte_check_zva() reports).
            bad_va = page_va | ((pa if zva_old is not None else bad_pa) & 0xFFF)
        undo = []
        if zva_old is not None:
            undo.append((pa, zva_old))
        elif write:
            undo.append((pa, bytes(self.physmem.view(pa, first))))
            if next_pa is not None:
                undo.append((next_pa, bytes(self.physmem.view(next_pa, size - first))))
        self.mismatch = Mismatch(va=bad_va, pa=bad_pa, pc=uc.reg_read(UC_ARM64_REG_PC), write=write, size=size,
                                 ptr_tag=tag, mem_tag=self.tags.get(bad_pa), sync=mode is Tcf.SYNC,
                                 ctx=uc.context_save(), undo=undo)
        uc.emu_stop()

    def _dc_zva(self, uc, pa: int, insn_at) -> Optional[tuple[int, bytes]]:  # noqa: ANN001
        """A one-byte store that is DC ZVA (Unicorn reports the zeroing as byte stores): its
        block and the block's bytes before it (to undo), else None."""
        pc = uc.reg_read(UC_ARM64_REG_PC)
        is_zva = self._is_dczva.get(pc)
        if is_zva is None:
            is_zva = self._is_dczva[pc] = insn_at(pc) & E.SYS_XT_MASK == E.DC_ZVA
        if not is_zva:
            return None
        block = pa & ~(self.dcz_block - 1)
        if self._zva[:2] != (pc, block):
            self._zva = (pc, block, bytes(self.physmem.view(block, self.dcz_block)))
        return block, self._zva[2]

    def _remember(self, pa: int, old: bytes) -> None:
        """Log the bytes a write is about to overwrite (one log, wherever it is kept)."""
        if self.native is not None:
            self.native.log_append(pa, old)
        else:
            self._log.append((pa, old))

    def settle(self, first_pa: Optional[int]) -> Mismatch:
        """Undo the memory effects of the interrupted instruction (the caller has put its
        registers back): the bytes it wrote and, given the physical address where its
        footprint starts when known, the writes it made before the mismatching one."""
        m = self.mismatch
        assert m is not None
        restored: set[int] = set()
        for pa, old in m.undo:
            self.physmem.view(pa, len(old))[:] = old
            restored.update(range(pa, pa + len(old)))
        if first_pa is not None and m.write:
            lo, hi = first_pa, m.undo[0][0] if m.undo else m.pa
            # Most recent first: the latest write to a byte is this instruction's.
            log = self.native.log_entries() if self.native is not None else list(self._log)
            for pa, old in reversed(log):
                for i, b in enumerate(old):
                    a = pa + i
                    if lo <= a < hi and a not in restored:
                        self.physmem.view(a, 1)[0] = b
                        restored.add(a)
        self._log.clear()
        if self.native is not None:
            self.native.log_clear()
        return m
