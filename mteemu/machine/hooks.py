"""How Unicorn calls mteemu: the TLB fill (the kernel's page tables, and where a tagged
page is placed: checked through its alias, or straight to RAM), the interrupt hook
(system calls, the MTE instructions Unicorn lacks, faults), and the tag-checking memory
hook added when first needed — in C on the native path (native.py), with these Python
functions as its fallbacks and as the pure-Python reference."""
from __future__ import annotations

from typing import Any, Callable, Optional

from unicorn import UC_HOOK_INTR, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE, UC_HOOK_TLB_FILL, Uc

from mteemu.machine import native, unicorn_exit_checks, unicorn_shim, unicorn_tlb
from mteemu.machine.arm64 import (
    ACCESS_FETCH,
    ACCESS_READ,
    EXCP_BKPT,
    EXCP_DATA_ABORT,
    EXCP_PREFETCH_ABORT,
    EXCP_SWI,
    EXCP_UDEF,
    REG_NZCV,
    REG_PC,
    REG_SP,
    X_REGS,
    Exit,
    ExitKind,
    SyscallHandler,
    Translator,
)
from mteemu.machine.counters import Counters
from mteemu.machine.emulator import Emulator
from mteemu.machine.physmem import PAGE_SIZE, PhysMem
from mteemu.machine.tagcheck import ALIAS_BASE, ALIAS_SHIFT, TagChecker

NO_UNTIL = (1 << 64) - 1    # emu_start's "until" that can never be reached
_UNTIL_PAGE = NO_UNTIL & ~(PAGE_SIZE - 1)


class Stops:
    """Why the hooks stopped the engine, for the run loop (cpu.py) to read."""

    def __init__(self, uc: Any) -> None:
        self.uc = uc
        self.pending: Optional[Exit] = None               # an exit a hook asked for
        self.refused: Optional[tuple[int, int]] = None    # the first data fill refused: (page, access)
        self.fetch_refused: Optional[tuple[int, int]] = None   # the last code fill refused: (page, PC then)
        self.need_check_hook = False                      # a fill needs the tag-checking hook first

    def leave(self, exit_: Exit) -> None:
        if self.pending is None:
            self.pending = exit_
        self.uc.emu_stop()

    def reset(self) -> None:
        self.pending = self.refused = self.fetch_refused = None

    def refusal_at(self, pc: int) -> Optional[tuple[int, int]]:
        """The refused fill that stopped the CPU at pc, if one did: a data access's, or a
        code page's the CPU was really in. QEMU also asks for code pages it can do without
        and goes on when refused: resumed in a child's new address space after exec, it
        looked up pages of code the parent ran (vfork's, malloc's) while the PC was still
        the new program's entry. A fetch that faults is asked for with the PC in that page,
        and stops there; any other refused fetch was such a lookup (heap-tagged programs
        started by vfork or fork + exec died of it, in malloc's first MTE instruction)."""
        if self.refused is not None:
            return self.refused
        if self.fetch_refused is not None:
            page, at = self.fetch_refused
            if not (pc ^ page) & ~(PAGE_SIZE - 1) and not (at ^ page) & ~(PAGE_SIZE - 1):
                return page, ACCESS_FETCH
        return None


class Hooks:
    def __init__(self, uc: Any, physmem: PhysMem, native_lib: "Optional[native.Native]", checker: TagChecker,
                 emulator: Emulator, counters: Counters, translate: Translator, syscall: SyscallHandler,
                 stops: Stops, flush_tlb: Callable[[], None], dcz_block: int) -> None:
        self.uc, self.physmem, self.native, self.checker = uc, physmem, native_lib, checker
        self.emulator, self.counters, self.translate, self.syscall = emulator, counters, translate, syscall
        self.stops, self.flush_tlb, self.dcz_block = stops, flush_tlb, dcz_block
        self.check_hook: Optional[int] = None
        self.fills: dict[tuple[int, int], tuple[int, int]] = {}   # (tagged page, access) -> (paddr, perms)
        self.skip_sync: Optional[int] = None          # set once found (unicorn_exit_checks.py)
        self.exit_checks_flag: Optional[int] = None

    def install(self) -> None:
        if self.native is not None:
            self._install_native()
        else:
            self.uc.hook_add(UC_HOOK_TLB_FILL, self._on_fill)
            self.uc.hook_add(UC_HOOK_INTR, self._on_intr_pure)

    def _install_native(self) -> None:
        """The C interrupt hook runs the MTE instructions it can and hands everything else
        (SVC, faults, what it declines) to `_on_intr`, as the Python path would have seen it."""
        n, uc = self.native, self.uc
        assert n is not None
        translate = self._guarded(self.translate)          # None: refused, or it raised
        n.set_banks([(b.region.base, b.region.end, b.host_address()) for b in self.physmem.banks])
        n.set_cpu(*unicorn_shim.reg_access_functions(),
                  X_REGS, REG_SP, REG_PC, REG_NZCV,
                  lambda vpage, access: -1 if (r := translate(vpage, access)) is None else r[0] | int(r[2]),
                  self._native_intr(),
                  # C could not drop the page alone (more virtual pages map it unchecked
                  # than it keeps, or no tlb_flush_page): everything goes.
                  self._guarded(lambda _pfn: self.flush_tlb()), self.dcz_block)
        found = unicorn_tlb.flush_page_entry(uc)
        if found is not None:
            n.set_unicorn_flush_page(*found)
        flush_all = unicorn_tlb.flush_all_entry()
        if flush_all is not None:
            n.set_unicorn_flush_all(flush_all)
        n.set_fill_fallback(self._guarded(lambda _uch, vaddr, access, entry, _data:
                                          bool(self._on_fill(uc, vaddr, access, entry.contents, None))))
        self._c_hook(UC_HOOK_TLB_FILL, n.fill_hook)
        self._c_hook(UC_HOOK_INTR, n.intr_hook)

    def _native_intr(self) -> Callable:
        """What C calls for every exception it does not handle itself: `_on_intr`, with the
        SVC's path flat (one Python frame before the kernel's: a ctypes callback and each
        frame cost a good part of a cheap system call)."""
        uc, syscall, on_intr, leave = self.uc, self.syscall, self._on_intr, self.stops.leave

        def intr(_uch, intno, _data):  # noqa: ANN001, ANN202
            try:
                if intno != EXCP_SWI:
                    on_intr(uc, intno, None)
                elif syscall():
                    leave(Exit(ExitKind.STOPPED, uc.reg_read(REG_PC)))
            except BaseException as e:  # noqa: BLE001 - as _guarded: stop, run() re-raises
                unicorn_shim.keep_hook_exception(uc, e)
                uc.emu_stop()
        return intr

    def _c_hook(self, kind: int, fn: int, begin: int = 1, end: int = 0) -> int:
        """A hook in C: Unicorn calls it without any Python frame, with the native state."""
        assert self.native is not None and self.native.ctx is not None
        return unicorn_shim.add_c_hook(self.uc, kind, fn, self.native.ctx, begin, end)

    def _guarded(self, fn: Callable) -> Callable:
        """A Python function called from C: an exception stops the CPU and is re-raised by
        run(), exactly as the binding does for its own hooks."""
        def call(*args):  # noqa: ANN002, ANN202
            try:
                return fn(*args)
            except BaseException as e:  # noqa: BLE001 - the binding's own rule: stop, run() re-raises
                unicorn_shim.keep_hook_exception(self.uc, e)
                self.uc.emu_stop()
                return None
        return call

    # -- hooks ---------------------------------------------------------------
    def _on_fill(self, uc: Uc, vaddr: int, access: int, entry, _data) -> bool:  # noqa: ANN001
        # The native path keeps its own fill cache (in C, invalidated page by page); this
        # one is the pure-Python path's, emptied by every flush.
        hit = self.fills.get((vaddr, access)) if self.native is None else None
        if hit is not None:
            # Unicorn's TLB holds 256 pages: a bigger working set refills the same pages
            # over and over. Their translations stay valid until the next flush.
            entry.paddr, entry.perms = hit
            return True
        if vaddr == _UNTIL_PAGE and access == ACCESS_FETCH and uc.reg_read(REG_PC) & ~(PAGE_SIZE - 1) != vaddr:
            # Whenever emulation stops, Unicorn looks up the page of emu_start's "until"
            # address. It is no guest access: refuse it without calling it a fault. (A
            # guest that really jumps there faults like anywhere else outside its memory.)
            return False
        self.counters.python_fills += 1
        result = self.translate(vaddr, access)
        if result is None:
            # Unicorn reports a refused fill as a bare UC_ERR_EXCEPTION; remember why: the
            # first data refusal (the access that really faulted), the last code refusal and
            # where the CPU was (Stops.refusal_at tells a fault from a lookup).
            if access == ACCESS_FETCH:
                self.stops.fetch_refused = (vaddr, uc.reg_read(REG_PC))
            elif self.stops.refused is None:
                self.stops.refused = (vaddr, access)
            return False
        pa, perms, tagged = result
        if self.native is not None:
            self.native.note_page(vaddr, access, pa, perms, tagged)    # its other tags: C places them
        paddr = self.checker.place(vaddr, pa, tagged)
        if paddr != pa and self.check_hook is None:
            # The checking hook is added lazily (its mere presence costs ~1.3x on every
            # access); that cannot happen inside emulation, so refuse and come back.
            self.stops.need_check_hook = True
            return False
        entry.paddr, entry.perms = paddr, perms
        if self.native is None:
            self.fills[(vaddr, access)] = (paddr, perms)
        return True

    def _on_checked_access(self, uc: Uc, access: int, address: int, size: int, _value: int, _data) -> None:  # noqa: ANN001
        self.checker.on_access(uc, access, address, size, self.translate_next, self.emulator.insn_at)

    def translate_next(self, vaddr: int) -> Optional[tuple[int, bool]]:
        res = self.translate(vaddr, ACCESS_READ)
        return None if res is None else (res[0], res[2])

    def _on_intr_pure(self, uc: Uc, intno: int, data) -> None:  # noqa: ANN001
        """The reference path's interrupt hook: `_on_intr`, then the engine's
        skip_sync_pc_on_exit cleared (a PC it wrote must not stale later hooks' PCs)."""
        try:
            self._on_intr(uc, intno, data)
        finally:
            unicorn_exit_checks.clear(self.skip_sync)

    def _on_intr(self, uc: Uc, intno: int, _data) -> None:  # noqa: ANN001
        if intno == EXCP_SWI:
            if self.syscall():
                self.stops.leave(Exit(ExitKind.STOPPED, uc.reg_read(REG_PC)))
            return
        pc = uc.reg_read(REG_PC)
        if intno == EXCP_UDEF:
            checking = self.checker.state.checking
            done = self.emulator.emulate(pc)
            if isinstance(done, Exit):
                self.stops.leave(done)
                return
            if done:
                if checking != self.checker.state.checking:
                    self.flush_tlb()     # MSR TCO turned checking on or off
                return
        # Translation faults never reach here (our fill refuses them); what Unicorn
        # raises as an abort itself is an alignment fault (exclusives, atomics, a
        # misaligned PC).
        kind = {EXCP_UDEF: ExitKind.UNDEFINED, EXCP_BKPT: ExitKind.BREAKPOINT, EXCP_DATA_ABORT: ExitKind.ALIGNMENT,
                EXCP_PREFETCH_ABORT: ExitKind.ALIGNMENT}.get(intno, ExitKind.EXCEPTION)
        if intno == EXCP_PREFETCH_ABORT:
            self.stops.leave(Exit(kind, pc, access=ACCESS_FETCH, addr=pc, intno=intno))
            return
        self.stops.leave(Exit(kind, pc, intno=intno))

    def add_check_hook(self) -> None:
        self.stops.need_check_hook = False
        begin, end = ALIAS_BASE, ALIAS_BASE + (16 << ALIAS_SHIFT) - 1
        if self.native is not None:
            # The C hook, called by Unicorn directly; it hands what it cannot decide to
            # the Python hook through a C function pointer.
            self.native.set_fallback(self._guarded(
                lambda _uch, access, address, size, _value, _data:
                self.checker.on_access(self.uc, access, address, size, self.translate_next,
                                      self.emulator.insn_at)))
            self.check_hook = self._c_hook(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self.native.check_hook, begin, end)
        else:
            self.check_hook = self.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._on_checked_access,
                                                begin=begin, end=end)
        unicorn_exit_checks.set_checks(self.exit_checks_flag, True)   # its stops are precise
        self.uc.ctl_flush_tb()   # code translated before the hook existed would skip it

