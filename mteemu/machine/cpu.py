"""The CPU: Unicorn's arm64 core in virtual-TLB mode, and how control leaves it.

Guest virtual addresses are translated by the kernel's page tables through a
UC_HOOK_TLB_FILL callback (Unicorn's UC_TLB_VIRTUAL mode), so every guest page is a
real physical page of the board. The fill sees the full virtual address with its
top byte (the MTE logical tag), so Top Byte Ignore — which Linux enables for user
space — works without touching TCR_EL1 (writing TCR through CP_REG does not rebuild
Unicorn's hflags; see the design notes).

Control leaves the CPU in one of a few ways, each reported as an `Exit`:
  * a syscall handler asked to stop (SVC is handled *inside* the interrupt hook, so a
    syscall that does not block costs no emu_start round trip);
  * a translation was refused (the kernel said SIGSEGV): precise, nothing executed;
  * an undefined instruction (intno 1, EXCP_UDEF) or BRK (intno 7, EXCP_BKPT);
  * a tag check failed (see tagcheck.py), or an MTE instruction (emulated here, see
    mte_insns.py) faulted;
  * the instruction budget ran out (only used while several threads are runnable,
    because Unicorn counts instructions with an internal per-instruction hook that
    costs ~13x on ALU code — measured, see docs/);
  * stop() was called from another host thread (the --timeout watchdog).
"""
from __future__ import annotations

import threading
from typing import Optional

from unicorn import (
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UcError,
)
from unicorn.unicorn_const import UC_ERR_EXCEPTION

from mteemu.machine import debughooks, native, unicorn_exit_checks, unicorn_shim
from mteemu.machine import encodings as E
from mteemu.machine.allochist import AllocHooks
from mteemu.machine.arm64 import (
    ACCESS_READ,
    ACCESS_WRITE,
    REG_PC,
    REG_SP,
    X_REGS,
    Exit,
    ExitKind,
    SyscallHandler,
    Translator,
)
from mteemu.machine.counters import Counters, HotPath
from mteemu.machine.decode import effective_address
from mteemu.machine.emulator import Emulator
from mteemu.machine.engine import Pauth, new_engine
from mteemu.machine.hooks import NO_UNTIL, Hooks, Stops
from mteemu.machine.irg import Irg, NativeIrg
from mteemu.machine.physmem import PAGE_SIZE, PhysMem
from mteemu.machine.syscall_regs import SyscallRegs
from mteemu.machine.tagcheck import MteState, TagChecker
from mteemu.machine.tagstore import TagStore


class Cpu:
    """One arm64 core over the board's physical memory."""

    dcz_block = 64    # DC ZVA / DC GVA block: Unicorn's "max" model has DCZID_EL0.BS = 4

    def __init__(self, physmem: PhysMem, tags: TagStore, translate: Translator, syscall: SyscallHandler) -> None:
        uc = self.uc = new_engine(physmem)
        self.physmem = physmem
        self.tags = tags
        self.native = native.load()
        self.irg: "Irg | NativeIrg" = Irg() if self.native is None else NativeIrg(self.native)
        self.counters = Counters()
        self.checker = TagChecker(physmem, tags, self.native, self.counters)
        self.checker.dcz_block = self.dcz_block
        self.pauth = Pauth(uc, self.invalidate_code)
        self.emulator = Emulator(uc, physmem, tags, self.checker, self.irg, self.counters, translate, self.dcz_block)
        self.sys = SyscallRegs(uc, self.native.syscall_block() if self.native is not None else None,
                               self.native.fast_block() if self.native is not None else None)
        tags.on_change = self._tags_changed
        self._interrupt = threading.Event()
        self.debug: Optional[debughooks.DebugHooks] = None
        self.stops = Stops(uc)
        self.hooks = Hooks(uc, physmem, self.native, self.checker, self.emulator, self.counters, translate, syscall,
                           self.stops, self.flush_tlb, self.dcz_block)
        self.hooks.install()
        self.allocs = AllocHooks(uc, physmem, self.native, translate, self.invalidate_code)
        self.emulator.on_tag_write = self.allocs.tag_write
        self.sync_native()
        # No memory or code hook asks for a stop inside a block yet: no check after each
        # access (unicorn_exit_checks.py) until the tag check or a debugger comes.
        self._exit_checks_flag = unicorn_exit_checks.flag_address(uc)
        unicorn_exit_checks.set_checks(self._exit_checks_flag, False)
        # A PC written by a hook must not leave later hooks of the run with stale PCs.
        self._skip_sync = unicorn_exit_checks.skip_sync_flag_address(uc, self._exit_checks_flag, REG_PC)
        self.hooks.exit_checks_flag, self.hooks.skip_sync = self._exit_checks_flag, self._skip_sync
        if self.native is not None and self._skip_sync is not None:
            self.native.set_skip_sync(self._skip_sync)

    def close(self) -> None:
        """Give the engine back now: uc_close() frees its translation buffer (about 1 GiB
        of address space reserved) and its memory map. The binding would do it only when
        the Uc object is collected, which the hooks' reference cycles put off; a caller
        that boots throw-away CPUs (the --mem search) would run out of address space.
        Nothing may use this CPU afterwards; its native state is freed with it."""
        if self.uc is None:
            return
        unicorn_shim.release(self.uc)
        self.uc = None
        self._exit_checks_flag = self._skip_sync = None
        if self.native is not None:
            self.native.close()
        self.emulator.forget_translations()
        self.hooks.fills.clear()

    def set_pac(self, keys: tuple[int, ...], enabled: int) -> None:
        """The thread's pointer-authentication keys and enabled keys (engine.Pauth)."""
        self.pauth.set_keys(keys, enabled)

    def sync_native(self) -> None:
        """What the C side must know of the thread on the CPU and of the memory manager."""
        if self.native is not None:
            # Under a debugger the MTE instructions are Python's, one at a time (run_ahead).
            self.native.set_insns(self.tags.guarded is None and self.debug is None, self.checker.state.exclude,
                                  self.checker.state.checking)

    def _tags_changed(self, pfn: int) -> None:
        """A page's tags changed: a TLB entry that maps it straight to RAM (unchecked) may
        now be wrong. The native path forgets that page alone; the reference flushes all."""
        if self.native is not None:
            if self.native.is_direct(pfn):
                self.flush_page(pfn)
        elif pfn in self.checker.direct:
            self.flush_tlb()

    def flush_page(self, pfn: int) -> None:
        """Forget one physical page's placement: the C fill cache drops its entries (per-page
        generations), and Unicorn's TLB the virtual pages that map it unchecked — one by
        one through QEMU's tlb_flush_page() where unicorn_tlb.py found it, else all."""
        assert self.native is not None
        if not self.native.flush_page(pfn):
            self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    @property
    def mte(self) -> MteState:
        return self.checker.state

    def set_tco(self, tco: bool) -> None:
        """PSTATE.TCO from the kernel (signal entry and return)."""
        if self.checker.state.tco != tco:
            self.checker.state.tco = tco
            self.flush_tlb()

    def set_mte(self, state: MteState) -> None:
        """Switch tag-check state (another thread, or a prctl); drop stale fast paths."""
        old = self.checker.state
        self.checker.state = state
        self.sync_native()
        if (old.checking, old.tcf_read, old.tcf_write) != (state.checking, state.tcf_read, state.tcf_write):
            self.flush_tlb()

    def stop_for_debugger(self, pc: int) -> None:
        """A breakpoint or watchpoint hit (debughooks.py): leave the CPU before the instruction."""
        self._leave(Exit(ExitKind.DEBUG, pc))

    def _leave(self, exit_: Exit) -> None:
        if self.stops.pending is None:
            self.stops.pending = exit_
        self.uc.emu_stop()

    # -- running ---------------------------------------------------------------
    def run(self, budget: int = 0, seconds: Optional[float] = None) -> Exit:
        """Run from the current PC until something needs the kernel, or (with `seconds`)
        until that much time has passed (an interval timer is due: a BUDGET exit)."""
        self.stops.reset()
        if self._interrupt.is_set():
            return Exit(ExitKind.INTERRUPTED, self.pc)
        self.running = True
        try:
            return self._run(budget, seconds)
        finally:
            self.running = False

    running = False      # inside emu_start: hooks cannot be added or removed

    def _run(self, budget: int, seconds: Optional[float]) -> Exit:
        uc = self.uc
        while True:
            try:
                uc.emu_start(uc.reg_read(REG_PC), NO_UNTIL, count=budget,
                             timeout=0 if seconds is None else max(1, int(seconds * 1e6)))
            except UcError as e:
                if (raised := unicorn_shim.hook_exception(uc)) is not None:
                    # A callback raised (a kernel decision such as "the guest is gone", or a
                    # bug): the binding stored it but emu_start reports only the UcError.
                    raise raised from None
                if self.stops.need_check_hook and self.stops.pending is None and self.checker.mismatch is None:
                    self.hooks.add_check_hook()
                    self.stops.refused = self.stops.fetch_refused = None
                    continue
                # A stop requested by a hook wins over anything refused while stopping.
                if self.stops.pending is None and self.checker.mismatch is None:
                    pc = uc.reg_read(REG_PC)
                    refused = self.stops.refusal_at(pc) if e.errno == UC_ERR_EXCEPTION else None
                    if refused is not None:
                        return Exit(ExitKind.FAULT, pc, fault_page=refused[0], access=refused[1])
                    if e.errno != UC_ERR_EXCEPTION:
                        return Exit(ExitKind.EXCEPTION, uc.reg_read(REG_PC), intno=-e.errno)
            break
        if self.checker.mismatch is not None:
            return self._tag_check_exit()
        if self.stops.pending is not None:
            if self.stops.pending.kind is ExitKind.DEBUG and self.debug is not None:
                self.debug.settle()        # a watchpoint: put back what the access did
            return self.stops.pending
        if self._interrupt.is_set():
            return Exit(ExitKind.INTERRUPTED, self.pc)
        return Exit(ExitKind.BUDGET, self.pc)

    def _tag_check_exit(self) -> Exit:
        """Make a caught mismatch precise (sync) or complete the access first (async)."""
        uc = self.uc
        m = self.checker.mismatch
        assert m is not None
        uc.context_restore(m.ctx)            # the registers as they were before the instruction
        uc.reg_write(REG_PC, m.pc)
        first_pa = None
        if m.write:
            ea = self._footprint_start(m.pc)
            if ea is not None and (ea ^ m.va) & ((1 << 56) - PAGE_SIZE) == 0:
                first_pa = (m.pa & ~(PAGE_SIZE - 1)) | (ea & (PAGE_SIZE - 1))
        self.checker.settle(first_pa)
        self.checker.mismatch = None
        if not m.sync:
            # Finish the faulting instruction alone. Unicorn counts instructions with a
            # code hook that blocks translated during an uncounted run lack (adding it
            # flushes nothing), and a block that starts at m.pc would run on to its end:
            # through a system call that should see this fault pending (a store that
            # begins a block, an SVC after it). Translated code is dropped first, so the step
            # translates a fresh block that counts. (All of it: ctl_remove_cache() looks the
            # PC up through the TLB outside a run, and the run after the step then ended at
            # once, reporting every asynchronous fault right after its store.)
            uc.ctl_flush_tb()
            self.checker.stepping = True
            try:
                uc.emu_start(m.pc, NO_UNTIL, count=1)
            except UcError:
                pass         # the instruction faults for another reason: it will again
            finally:
                self.checker.stepping = False
            self.stops.pending = None
        return Exit(ExitKind.TAG_CHECK, m.pc, access=ACCESS_WRITE if m.write else ACCESS_READ,
                    addr=m.va, mismatch=m)

    def _footprint_start(self, pc: int) -> Optional[int]:
        """The lowest address the instruction at pc accesses (registers as before it)."""
        w = self.emulator.insn_at(pc)
        if w & E.SYS_XT_MASK == E.DC_ZVA:                       # DC ZVA, Xt
            return self.emulator.xr(w & 31) & ~(self.dcz_block - 1)
        return effective_address(w.to_bytes(4, "little"), pc, self.reg_by_name)

    def reg_by_name(self, name: str) -> int:
        """A general register by its assembler name: 'x3', 'w3', 'sp', 'xzr'..."""
        if name in ("sp", "wsp"):
            return self.uc.reg_read(REG_SP)
        if name in ("xzr", "wzr"):
            return 0
        if name in ("fp", "lr"):                 # capstone's aliases of x29 and x30
            return self.uc.reg_read(X_REGS[29 if name == "fp" else 30])
        v = self.uc.reg_read(X_REGS[int(name[1:])])
        return v & 0xFFFF_FFFF if name[0] == "w" else v

    def attach_debugger(self) -> "debughooks.DebugHooks":
        """Breakpoints, watchpoints and single steps for a debugger (debughooks.py)."""
        if self.debug is None:
            self.debug = debughooks.DebugHooks(self)
            self.emulator.run_ahead = 1
            self.sync_native()
            unicorn_exit_checks.set_checks(self._exit_checks_flag, True)   # breakpoints, single steps
            self.invalidate_code()
        return self.debug

    def interrupt(self) -> None:
        """Thread-safe: make the current and every later run() return INTERRUPTED."""
        self._interrupt.set()
        self.uc.emu_stop()

    @property
    def interrupted(self) -> bool:
        """interrupt() was called: every run() returns INTERRUPTED."""
        return self._interrupt.is_set()

    def invalidate_code(self) -> None:
        """Memory was written behind the CPU's back (not by a guest store): translated
        code may be stale. Unicorn keeps translated blocks until told."""
        self.uc.ctl_flush_tb()
        self.emulator.forget_code()

    def flush_tlb(self) -> None:
        """Drop every cached translation (after page tables change or on an mm switch)."""
        self.counters.flushes += 1
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self.checker.forget()
        if self.native is not None:
            self.native.flush_tlb()
            self.sync_native()
        self.emulator.forget_translations()
        self.hooks.fills.clear()
        if self.debug is not None and self.debug.on_flush is not None:
            self.debug.on_flush()       # watched pages may be other pages now

    def seed_irg(self, seed: int) -> None:
        """IRG's generator from the run's seed (the same tags on either path: irg.py)."""
        self.irg.seed(seed)

    def hot_path(self) -> HotPath:
        """Who did the work so far: C or Python (machine/counters.py)."""
        c = self.counters
        n = self.native
        if n is None:
            return HotPath((0, c.python_checks), (0, c.python_insns), (0, c.python_fills), c.flushes, 0, 0)
        page_flushes, grows = n.page_flushes()
        return HotPath((n.stats()[0], c.python_checks), (n.insn_stats()[0], c.python_insns),
                       (n.fill_stats()[0], c.python_fills), c.flushes, page_flushes, grows)

    # -- registers: the kernel's (and a debugger's) way to them; Unicorn stays in here ---------
    def reg(self, reg: int) -> int:
        return self.uc.reg_read(reg)

    def set_reg(self, reg: int, value: int) -> None:
        self.uc.reg_write(reg, value)

    def regs(self, regs: list[int]) -> list[int]:
        return list(self.uc.reg_read_batch(regs))

    def request_stop(self) -> None:
        """Thread-safe: leave emulation soon (a no-op while not emulating)."""
        self.uc.emu_stop()

    @property
    def pc(self) -> int:
        return self.uc.reg_read(REG_PC)

    @pc.setter
    def pc(self, value: int) -> None:
        self.uc.reg_write(REG_PC, value)

    def x(self, n: int) -> int:
        return self.uc.reg_read(X_REGS[n])

    def context_reg(self, ctx, reg: int) -> int:  # noqa: ANN001 - a UcContext
        """A register of a saved context, at its real width: a UcContext alone reads every
        register as 64 bits, so the V registers need the arm64 register class."""
        return unicorn_shim.context_reg(self.uc, ctx, reg)

    def save(self):  # noqa: ANN201 - a UcContext: every register, SIMD included
        return self.uc.context_save()

    def restore(self, ctx) -> None:  # noqa: ANN001
        self.uc.context_restore(ctx)
