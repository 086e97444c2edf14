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

import ctypes
import enum
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Sequence

from unicorn import (
    UC_ARCH_ARM64,
    UC_CTL_IO_WRITE,
    UC_CTL_TLB_FLUSH,
    UC_HOOK_INTR,
    UC_HOOK_MEM_READ,
    UC_HOOK_MEM_WRITE,
    UC_HOOK_TLB_FILL,
    UC_MODE_ARM,
    UC_TLB_VIRTUAL,
    Uc,
    UcError,
)
from unicorn import arm64_const as A
from unicorn.unicorn_const import UC_ERR_EXCEPTION, UC_ERR_OK
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

from mteemu.machine import debughooks, interp, mte_insns, native, unicorn_exit_checks, unicorn_tlb
from mteemu.machine import encodings as E
from mteemu.machine.counters import Counters, HotPath
from mteemu.machine.decode import effective_address
from mteemu.machine.irg import Irg, NativeIrg
from mteemu.machine.physmem import PAGE_SHIFT, PAGE_SIZE, PhysMem
from mteemu.machine.tagcheck import ALIAS_BASE, ALIAS_SHIFT, Mismatch, MteState, TagChecker
from mteemu.machine.tagstore import TagStore

# Unicorn's UC_MEM_READ/WRITE/FETCH, as passed to the TLB fill hook.
ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH = 16, 17, 18
ACCESS_NAMES = {ACCESS_READ: "READ", ACCESS_WRITE: "WRITE", ACCESS_FETCH: "FETCH"}

# QEMU exception numbers that Unicorn passes to UC_HOOK_INTR.
EXCP_UDEF, EXCP_SWI, EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT, EXCP_BKPT = 1, 2, 3, 4, 7

_NO_UNTIL = (1 << 64) - 1   # emu_start's "until" that can never be reached
RUN_AHEAD = 4096            # instructions interpreted after an MTE one before going back
_UNTIL_PAGE = _NO_UNTIL & ~(PAGE_SIZE - 1)

X_REGS = [getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]
Q_REGS = [getattr(A, f"UC_ARM64_REG_Q{i}") for i in range(32)]
REG_SP, REG_PC, REG_NZCV = A.UC_ARM64_REG_SP, A.UC_ARM64_REG_PC, A.UC_ARM64_REG_NZCV
REG_TPIDR = A.UC_ARM64_REG_TPIDR_EL0
REG_FPCR, REG_FPSR = A.UC_ARM64_REG_FPCR, A.UC_ARM64_REG_FPSR
SYSCALL_ARG_REGS = [A.UC_ARM64_REG_X8] + X_REGS[:6]
MASK64 = (1 << 64) - 1

# System registers by (op0, op1, CRn, CRm, op2), and the bits of them mteemu sets.
SCR_EL3, HCR_EL2, SCTLR_EL1 = (3, 6, 1, 1, 0), (3, 4, 1, 1, 0), (3, 0, 1, 0, 0)
SCR_NS, SCR_RW, SCR_API, SCR_APK = 1 << 0, 1 << 10, 1 << 17, 1 << 16
HCR_RW, HCR_API, HCR_APK = 1 << 31, 1 << 41, 1 << 40
SCTLR_EN_BITS = (1 << 31, 1 << 30, 1 << 27, 1 << 13)       # EnIA, EnIB, EnDA, EnDB
SCTLR_EN_ALL = sum(SCTLR_EN_BITS)
# APIAKeyLo_EL1, APIBKeyLo, APDAKeyLo, APDBKeyLo, APGAKeyLo (each Hi is op2 + 1).
PAC_KEY_REGS = ((3, 0, 2, 1, 0), (3, 0, 2, 1, 2), (3, 0, 2, 2, 0), (3, 0, 2, 2, 2), (3, 0, 2, 3, 0))


class ExitKind(enum.Enum):
    STOPPED = "stopped"          # a syscall handler (or the kernel) asked to leave the CPU
    FAULT = "fault"              # a translation was refused
    UNDEFINED = "undefined"      # undefined instruction
    BREAKPOINT = "breakpoint"    # BRK #imm
    BUDGET = "budget"            # the instruction budget ran out
    INTERRUPTED = "interrupted"  # stop() from another host thread
    EXCEPTION = "exception"      # any other CPU exception
    TAG_CHECK = "tag-check"      # a tag-check fault (sync: nothing executed; async: completed)
    ALIGNMENT = "alignment"      # an unaligned tag store (STG and friends)
    DEBUG = "debug"              # a debugger's breakpoint or watchpoint (debughooks.py), nothing executed


@dataclass(frozen=True)
class Exit:
    kind: ExitKind
    pc: int
    fault_page: int = 0          # the refused page, tag bits kept
    access: int = 0              # ACCESS_READ / _WRITE / _FETCH
    intno: int = 0
    addr: int = 0                # the exact faulting address when the CPU knows it
    mismatch: Optional[Mismatch] = None


class MemFault(Exception):
    """An emulated instruction's translation was refused."""

    def __init__(self, addr: int, access: int) -> None:
        super().__init__(f"fault at {addr:#x}")
        self.addr, self.access = addr, access


class Translation(NamedTuple):
    """What the kernel's page tables say about a virtual page (the TLB fill's answer)."""
    paddr: int                   # the physical page
    perms: int                   # Unicorn's UC_PROT_* bits
    tagged: bool                 # mapped Normal Tagged (PROT_MTE): accesses are tag-checked


# translate(vaddr_page_with_tag, access) -> the page's Translation, or None (refused: a fault)
Translator = Callable[[int, int], Optional[Translation]]
# syscall() -> True to leave the CPU after this SVC
SyscallHandler = Callable[[], bool]


class Cpu:
    """One arm64 core over the board's physical memory."""

    dcz_block = 64    # DC ZVA / DC GVA block: Unicorn's "max" model has DCZID_EL0.BS = 4

    def __init__(self, physmem: PhysMem, tags: TagStore, translate: Translator, syscall: SyscallHandler) -> None:
        # Any: the binding annotates only part of its API (ctl_flush_tb, reg_read_batch...).
        uc: Any = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        # Order matters: the CPU model and page size must be set before anything
        # initialises the engine (any ctl read does).
        uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)   # LSE atomics etc.; A72 lacks them
        uc.ctl_set_page_size(PAGE_SIZE)            # default is 1 KiB: thrashes the TLB
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        physmem.map_into(uc)
        tagged = tuple(r for r in physmem.tagged_regions)
        for tag in range(16):
            physmem.map_into(uc, ALIAS_BASE + (tag << ALIAS_SHIFT), tagged)
        self.uc = uc
        self._enable_pauth()
        self.physmem = physmem
        self.tags = tags
        self.native = native.load()
        self.irg: "Irg | NativeIrg" = Irg() if self.native is None else NativeIrg(self.native)
        self.counters = Counters()
        self.checker = TagChecker(physmem, tags, self.native, self.counters)
        self.checker.dcz_block = self.dcz_block
        self._check_hook: Optional[int] = None
        self._need_hook = False
        # Translations made for emulated instructions, until the next TLB flush (the
        # kernel flushes on every page-table change, as for Unicorn's own TLB).
        self._soft_tlb: dict[tuple[int, int], tuple[int, bool]] = {}
        self._code_pages: dict[int, memoryview] = {}           # code page -> its RAM
        self._fills: dict[tuple[int, int], tuple[int, int]] = {}   # (tagged page, access) -> (paddr, perms)
        self._ops: dict[int, tuple[int, Callable]] = {}        # pc -> (word, decoded op)
        # While instructions are emulated: register values read or written so far
        # (Unicorn's reg_read/reg_write cost microseconds each from Python).
        self._regs: Optional[dict[int, int]] = None
        self._dirty: set[int] = set()
        tags.on_change = self._tags_changed
        self._translate = translate
        self._syscall = syscall
        self._pending: Optional[Exit] = None
        self._refused: Optional[tuple[int, int]] = None
        self._interrupt = threading.Event()
        # Buffers for the syscall path's direct register access (syscall_args, set_x).
        self._arg_ids = (ctypes.c_int * len(SYSCALL_ARG_REGS))(*SYSCALL_ARG_REGS)
        self._arg_values = (ctypes.c_uint64 * len(SYSCALL_ARG_REGS))()
        self._arg_ptrs = (ctypes.c_void_p * len(SYSCALL_ARG_REGS))(
            *(ctypes.addressof(self._arg_values) + 8 * i for i in range(len(SYSCALL_ARG_REGS))))
        self._one = ctypes.c_uint64()
        self._sys = self.native.syscall_block() if self.native is not None else None
        self._fast = self.native.fast_block() if self.native is not None else None
        # Instructions _emulate() may run in one go: a debugger sees every instruction
        # through Unicorn (its breakpoints and single steps are Unicorn's code hooks).
        self.run_ahead = RUN_AHEAD
        self.debug: Optional[debughooks.DebugHooks] = None
        if self.native is not None:
            self._install_native()
        else:
            uc.hook_add(UC_HOOK_TLB_FILL, self._on_fill)
            uc.hook_add(UC_HOOK_INTR, self._on_intr_pure)
        # No memory or code hook asks for a stop inside a block yet: no check after each
        # access (unicorn_exit_checks.py) until the tag check or a debugger comes.
        self._exit_checks_flag = unicorn_exit_checks.flag_address(uc)
        unicorn_exit_checks.set_checks(self._exit_checks_flag, False)
        # A PC written by a hook must not leave later hooks of the run with stale PCs.
        self._skip_sync = unicorn_exit_checks.skip_sync_flag_address(uc, self._exit_checks_flag, REG_PC)
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
        release = getattr(self.uc, "_Uc__finalizer", None)   # weakref.finalize(Uc.release_handle)
        if release is not None:
            release()                                       # closes once; the collector will not again
        self.uc = None
        self._exit_checks_flag = self._skip_sync = None
        if self.native is not None:
            self.native.close()
        self._code_pages.clear()
        self._soft_tlb.clear()
        self._fills.clear()

    # -- pointer authentication (FEAT_PAuth) --------------------------------------------
    def _enable_pauth(self) -> None:
        """Let PAC*/AUT* work at the guest's EL (Unicorn runs it at EL1 of its "max" core).
        QEMU's pauth_check_trap() traps them to EL2 unless HCR_EL2.API, and to EL3 unless
        SCR_EL3.API (Arm ARM D8.x); HCR_EL2 applies only in Non-secure state, so SCR_EL3.NS
        is set, with the RW bits that keep EL2 and EL1 AArch64. The keys (APK) likewise."""
        scr = self._sysreg(SCR_EL3)
        self._sysreg(SCR_EL3, scr | SCR_NS | SCR_RW | SCR_API | SCR_APK)
        self._sysreg(HCR_EL2, HCR_RW | HCR_API | HCR_APK)
        self._pac: tuple[tuple[int, ...], int] = ((), -1)

    def _sysreg(self, enc: tuple[int, int, int, int, int], value: Optional[int] = None) -> int:
        """Read or write a system register by (op0, op1, CRn, CRm, op2)."""
        op0, op1, crn, crm, op2 = enc
        if value is None:
            return self.uc.reg_read(A.UC_ARM64_REG_CP_REG, (crn, crm, op0, op1, op2, 0))
        self.uc.reg_write(A.UC_ARM64_REG_CP_REG, (crn, crm, op0, op1, op2, value))
        return value

    def set_pac(self, keys: tuple[int, ...], enabled: int) -> None:
        """The thread's five 128-bit keys (APIA, APIB, APDA, APDB, APGA) and which of the
        first four are enabled (PR_PAC_APIAKEY... bits, SCTLR_EL1.EnIA/EnIB/EnDA/EnDB), as
        Linux's ptrauth_thread_switch_user() and ptrauth_keys_install_user() set them."""
        if self._pac == (keys, enabled):
            return
        old_enabled = self._pac[1]
        self._pac = (keys, enabled)
        for enc, key in zip(PAC_KEY_REGS, keys):
            self._sysreg(enc, key & 0xFFFF_FFFF_FFFF_FFFF)
            self._sysreg(enc[:4] + (enc[4] + 1,), key >> 64)
        if enabled != old_enabled:
            sctlr = self._sysreg(SCTLR_EL1) & ~SCTLR_EN_ALL
            for bit, en in enumerate(SCTLR_EN_BITS):
                if enabled >> bit & 1:
                    sctlr |= en
            self._sysreg(SCTLR_EL1, sctlr)
            self.invalidate_code()      # PACIASP and friends are translated by the enable bits

    # -- the native hot path (native.py, _native.c) -------------------------------------
    def _install_native(self) -> None:
        """The C interrupt hook runs the MTE instructions it can and hands everything else
        (SVC, faults, what it declines) to `_on_intr`, as the Python path would have seen it."""
        n, uc = self.native, self.uc
        assert n is not None
        translate = self._guarded(self._translate)          # None: refused, or it raised
        n.set_banks([(b.region.base, b.region.end, b.host_address()) for b in self.physmem.banks])
        n.set_cpu(native.address_of(uclib.uc_reg_read), native.address_of(uclib.uc_reg_write),
                  X_REGS, REG_SP, REG_PC, REG_NZCV,
                  lambda vpage, access: -1 if (r := translate(vpage, access)) is None else r[0] | int(r[2]),
                  self._native_intr(),
                  # C could not drop the page alone (more virtual pages map it unchecked
                  # than it keeps, or no tlb_flush_page): everything goes.
                  self._guarded(lambda _pfn: self.flush_tlb()), self.dcz_block)
        self.sync_native()
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
        uc, syscall, on_intr, leave = self.uc, self._syscall, self._on_intr, self._leave

        def intr(_uch, intno, _data):  # noqa: ANN001, ANN202
            try:
                if intno != EXCP_SWI:
                    on_intr(uc, intno, None)
                elif syscall():
                    leave(Exit(ExitKind.STOPPED, uc.reg_read(REG_PC)))
            except BaseException as e:
                if uc._hook_exception is None:
                    uc._hook_exception = e
                uc.emu_stop()
        return intr

    def _c_hook(self, kind: int, fn: int, begin: int = 1, end: int = 0) -> int:
        """uc_hook_add() with a C function: Unicorn calls it without any Python frame."""
        handle = uc_hook_h()
        assert self.native is not None
        status = uclib.uc_hook_add(self.uc._uch, ctypes.byref(handle), kind, ctypes.c_void_p(fn),
                                   ctypes.c_void_p(self.native.ctx),
                                   ctypes.c_uint64(begin), ctypes.c_uint64(end))
        if status != UC_ERR_OK:
            raise UcError(status)
        return handle.value

    def _guarded(self, fn: Callable) -> Callable:
        """A Python function called from C: an exception stops the CPU and is re-raised by
        run(), exactly as the binding does for its own hooks."""
        def call(*args):  # noqa: ANN002, ANN202
            try:
                return fn(*args)
            except BaseException as e:
                if self.uc._hook_exception is None:
                    self.uc._hook_exception = e
                self.uc.emu_stop()
                return None
        return call

    def sync_native(self) -> None:
        """What the C side must know of the thread on the CPU and of the memory manager."""
        if self.native is not None:
            # Under a debugger the MTE instructions are Python's, one at a time (run_ahead).
            self.native.set_insns(self.tags.guarded is None and self.debug is None, self.checker.state.exclude,
                                  self.checker.state.checking)

    # -- hooks ---------------------------------------------------------------
    def _on_fill(self, uc: Uc, vaddr: int, access: int, entry, _data) -> bool:  # noqa: ANN001
        # The native path keeps its own fill cache (in C, invalidated page by page); this
        # one is the pure-Python path's, emptied by every flush.
        hit = self._fills.get((vaddr, access)) if self.native is None else None
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
        result = self._translate(vaddr, access)
        if result is None:
            # Unicorn reports a refused fill as a bare UC_ERR_EXCEPTION; remember why.
            # Keep the first refusal: the access that really faulted.
            if self._refused is None:
                self._refused = (vaddr, access)
            return False
        pa, perms, tagged = result
        if self.native is not None:
            self.native.note_page(vaddr, access, pa, perms, tagged)    # its other tags: C places them
        paddr = self.checker.place(vaddr, pa, tagged)
        if paddr != pa and self._check_hook is None:
            # The checking hook is added lazily (its mere presence costs ~1.3x on every
            # access); that cannot happen inside emulation, so refuse and come back.
            self._need_hook = True
            return False
        entry.paddr, entry.perms = paddr, perms
        if self.native is None:
            self._fills[(vaddr, access)] = (paddr, perms)
        return True

    def _on_checked_access(self, uc: Uc, access: int, address: int, size: int, _value: int, _data) -> None:  # noqa: ANN001
        self.checker.on_access(uc, access, address, size, self._translate_next, self._insn_at)

    def _translate_next(self, vaddr: int) -> Optional[tuple[int, bool]]:
        res = self._translate(vaddr, ACCESS_READ)
        return None if res is None else (res[0], res[2])

    def _insn_at(self, pc: int) -> int:
        """The instruction word at pc (0 if it cannot be fetched)."""
        page = self._code_pages.get(pc & ~(PAGE_SIZE - 1))
        if page is None:
            res = self._translate(pc & ~(PAGE_SIZE - 1), ACCESS_FETCH)
            if res is None:
                return 0
            page = self._code_pages[pc & ~(PAGE_SIZE - 1)] = self.physmem.page(res[0] >> PAGE_SHIFT)
        off = pc & (PAGE_SIZE - 1)
        return int.from_bytes(page[off:off + 4], "little")

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

    def _on_intr_pure(self, uc: Uc, intno: int, data) -> None:  # noqa: ANN001
        """The reference path's interrupt hook: `_on_intr`, then the engine's
        skip_sync_pc_on_exit cleared (a PC it wrote must not stale later hooks' PCs)."""
        try:
            self._on_intr(uc, intno, data)
        finally:
            unicorn_exit_checks.clear(self._skip_sync)

    def _on_intr(self, uc: Uc, intno: int, _data) -> None:  # noqa: ANN001
        if intno == EXCP_SWI:
            if self._syscall():
                self._leave(Exit(ExitKind.STOPPED, uc.reg_read(REG_PC)))
            return
        pc = uc.reg_read(REG_PC)
        if intno == EXCP_UDEF and self._emulate(pc):
            return
        # Translation faults never reach here (our fill refuses them); what Unicorn
        # raises as an abort itself is an alignment fault (exclusives, atomics, a
        # misaligned PC).
        kind = {EXCP_UDEF: ExitKind.UNDEFINED, EXCP_BKPT: ExitKind.BREAKPOINT, EXCP_DATA_ABORT: ExitKind.ALIGNMENT,
                EXCP_PREFETCH_ABORT: ExitKind.ALIGNMENT}.get(intno, ExitKind.EXCEPTION)
        if intno == EXCP_PREFETCH_ABORT:
            self._leave(Exit(kind, pc, access=ACCESS_FETCH, addr=pc, intno=intno))
            return
        self._leave(Exit(kind, pc, intno=intno))

    def _emulate(self, pc: int) -> bool:
        """Run an MTE instruction Unicorn does not know, and the MTE and plain register
        instructions right after it (interp.py); False if pc holds no MTE instruction."""
        word = self._insn_at(pc)
        if not word:
            return False
        checking = self.checker.state.checking
        first = pc
        self._regs, self._dirty = {}, set()
        ops = self._ops
        try:
            for _ in range(self.run_ahead):
                cached = ops.get(pc)
                if cached is None or cached[0] != word:
                    cached = ops[pc] = (word, self._compile(word))
                nxt = cached[1](self, pc)
                if nxt is None:
                    if pc == first:
                        self._regs = None
                        return False
                    break
                pc = nxt
                if checking != self.checker.state.checking:
                    break        # MSR TCO: the TLB policy changes before the next access
                word = self._insn_at(pc)
        except MemFault as f:
            self._write_back(pc)
            self._leave(Exit(ExitKind.FAULT, pc, fault_page=f.addr & ~(PAGE_SIZE - 1), access=f.access, addr=f.addr))
            return True
        except mte_insns.AlignmentFault as f:
            self._write_back(pc)
            self._leave(Exit(ExitKind.ALIGNMENT, pc, access=ACCESS_WRITE, addr=f.addr))
            return True
        except BaseException:
            self._regs = None
            raise
        self._write_back(pc)
        if checking != self.checker.state.checking:
            self.flush_tlb()     # MSR TCO turned checking on or off
        return True

    @staticmethod
    def _compile(word: int):  # noqa: ANN205 - an interp.Op
        """An MTE instruction, or one the interpreter knows; decoded once per PC."""
        if mte_insns.is_mte(word):
            def mte_op(cpu: "Cpu", pc: int) -> Optional[int]:
                if not mte_insns.execute(cpu, word):
                    return None
                cpu.counters.python_insns += 1
                return pc + 4
            return mte_op
        return interp.compile_op(word)

    def _write_back(self, pc: int) -> None:
        """Leave emulation: the registers it changed, and PC, go back to Unicorn."""
        regs, self._regs = self._regs, None
        assert regs is not None                 # only while emulating
        for reg in self._dirty:
            self.uc.reg_write(reg, regs[reg])
        self.uc.reg_write(REG_PC, pc)

    def _reg(self, reg: int) -> int:
        if self._regs is None:
            return self.uc.reg_read(reg)
        value = self._regs.get(reg)
        if value is None:
            value = self._regs[reg] = self.uc.reg_read(reg)
        return value

    def _set_reg(self, reg: int, value: int) -> None:
        if self._regs is None:
            self.uc.reg_write(reg, value)
        else:
            self._regs[reg] = value
            self._dirty.add(reg)

    def nzcv(self) -> int:
        return self._reg(REG_NZCV)

    # -- what mte_insns needs from the core ---------------------------------------------------
    def xr(self, n: int, sp: bool = False) -> int:
        """X<n>; register 31 is SP or XZR, as the instruction's encoding says."""
        if n == 31:
            return self._reg(REG_SP) if sp else 0
        return self._reg(X_REGS[n])

    def xw(self, n: int, value: int, sp: bool = False) -> None:
        if n == 31:
            if sp:
                self._set_reg(REG_SP, value & 0xFFFF_FFFF_FFFF_FFFF)
            return
        self._set_reg(X_REGS[n], value & 0xFFFF_FFFF_FFFF_FFFF)

    def set_nzcv(self, n: int, z: int, c: int, v: int) -> None:
        self._set_reg(REG_NZCV, n << 31 | z << 30 | c << 29 | v << 28)

    def translate_for_tags(self, vaddr: int, write: bool) -> tuple[int, bool]:
        """(physical address, page is tagged) for an emulated access, or MemFault."""
        access = ACCESS_WRITE if write else ACCESS_READ
        key = (vaddr & ~(PAGE_SIZE - 1) & ((1 << 56) - 1), access)
        hit = self._soft_tlb.get(key)
        if hit is None:
            res = self._translate(key[0], access)
            if res is None:
                raise MemFault(vaddr, access)
            hit = self._soft_tlb[key] = (res[0], res[2])
        return hit[0] | (vaddr & (PAGE_SIZE - 1)), hit[1]

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
        if self._pending is None:
            self._pending = exit_
        self.uc.emu_stop()

    # -- running ---------------------------------------------------------------
    def run(self, budget: int = 0, seconds: Optional[float] = None) -> Exit:
        """Run from the current PC until something needs the kernel, or (with `seconds`)
        until that much time has passed (an interval timer is due: a BUDGET exit)."""
        self._pending = None
        self._refused = None
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
                uc.emu_start(uc.reg_read(REG_PC), _NO_UNTIL, count=budget,
                             timeout=0 if seconds is None else max(1, int(seconds * 1e6)))
            except UcError as e:
                if uc._hook_exception is not None:
                    # A callback raised (a kernel decision such as "the guest is gone", or a
                    # bug): the binding stored it but emu_start reports only the UcError.
                    raise uc._hook_exception from None
                if self._need_hook and self._pending is None and self.checker.mismatch is None:
                    self._add_check_hook()
                    self._refused = None
                    continue
                # A stop requested by a hook wins over anything refused while stopping.
                if self._pending is None and self.checker.mismatch is None:
                    if e.errno == UC_ERR_EXCEPTION and self._refused is not None:
                        page, access = self._refused
                        return Exit(ExitKind.FAULT, uc.reg_read(REG_PC), fault_page=page, access=access)
                    if e.errno != UC_ERR_EXCEPTION:
                        return Exit(ExitKind.EXCEPTION, uc.reg_read(REG_PC), intno=-e.errno)
            break
        if self.checker.mismatch is not None:
            return self._tag_check_exit()
        if self._pending is not None:
            if self._pending.kind is ExitKind.DEBUG and self.debug is not None:
                self.debug.settle()        # a watchpoint: put back what the access did
            return self._pending
        if self._interrupt.is_set():
            return Exit(ExitKind.INTERRUPTED, self.pc)
        return Exit(ExitKind.BUDGET, self.pc)

    def _add_check_hook(self) -> None:
        self._need_hook = False
        begin, end = ALIAS_BASE, ALIAS_BASE + (16 << ALIAS_SHIFT) - 1
        if self.native is not None:
            # The C hook, called by Unicorn directly; it hands what it cannot decide to
            # the Python hook through a C function pointer.
            self.native.set_fallback(self._guarded(
                lambda _uch, access, address, size, _value, _data:
                self.checker.on_access(self.uc, access, address, size, self._translate_next, self._insn_at)))
            self._check_hook = self._c_hook(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self.native.check_hook, begin, end)
        else:
            self._check_hook = self.uc.hook_add(UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE, self._on_checked_access,
                                                begin=begin, end=end)
        unicorn_exit_checks.set_checks(self._exit_checks_flag, True)   # its stops are precise
        self.uc.ctl_flush_tb()   # code translated before the hook existed would skip it

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
                uc.emu_start(m.pc, _NO_UNTIL, count=1)
            except UcError:
                pass         # the instruction faults for another reason: it will again
            finally:
                self.checker.stepping = False
            self._pending = None
        return Exit(ExitKind.TAG_CHECK, m.pc, access=ACCESS_WRITE if m.write else ACCESS_READ,
                    addr=m.va, mismatch=m)

    def _footprint_start(self, pc: int) -> Optional[int]:
        """The lowest address the instruction at pc accesses (registers as before it)."""
        w = self._insn_at(pc)
        if w & E.SYS_XT_MASK == E.DC_ZVA:                       # DC ZVA, Xt
            return self.xr(w & 31) & ~(self.dcz_block - 1)
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
            self.run_ahead = 1
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
        self._ops.clear()
        self._code_pages.clear()

    def flush_tlb(self) -> None:
        """Drop every cached translation (after page tables change or on an mm switch)."""
        self.counters.flushes += 1
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)
        self.checker.forget()
        if self.native is not None:
            self.native.flush_tlb()
            self.sync_native()
        self._soft_tlb.clear()
        self._code_pages.clear()
        self._fills.clear()
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

    def set_x(self, n: int, value: int) -> None:
        self._one.value = value & 0xFFFF_FFFF_FFFF_FFFF
        uclib.uc_reg_write(self.uc._uch, X_REGS[n], ctypes.byref(self._one))

    def syscall_args(self) -> tuple[int, ...]:
        """(x8, x0..x5): the syscall number and its six arguments. The native path read
        them before calling the kernel (its syscall block); the reference reads them with
        one uc_reg_read_batch() into buffers made once (the binding's own costs ~15 µs)."""
        if self._sys is not None:
            return struct.unpack_from("7Q", self._sys)
        uclib.uc_reg_read_batch(self.uc._uch, self._arg_ids, self._arg_ptrs, len(SYSCALL_ARG_REGS))
        return tuple(self._arg_values)

    def svc(self, nr: int, args: Sequence[int], kernel: Callable[[], object]) -> None:
        """An SVC made from Python (the syscall fuzzer): the registers set, then the kernel
        called and its result written back, as when C takes the exception."""
        self.set_x(8, nr)
        for i, value in enumerate(args):
            self.set_x(i, value)
        if self._sys is None:
            kernel()
            return
        self._sys[0] = nr & MASK64
        for i in range(6):
            self._sys[1 + i] = self.x(i)
        self._sys[8] = 0
        kernel()
        if self._sys[8]:
            self.set_x(0, self._sys[7])

    def answer_ids(self, pid: int, ppid: int, tid: int) -> None:
        """Let C answer getpid, getppid and gettid itself until disarm_ids() (the native
        path only: the reference makes every call in the kernel)."""
        fast = self._fast
        if fast is not None:
            fast[1], fast[2], fast[3] = pid, ppid, tid
            fast[0] = 1

    def disarm_ids(self) -> None:
        if self._fast is not None:
            self._fast[0] = 0

    def ids_answered(self) -> int:
        """How many getpid/getppid/gettid C answered itself."""
        return self._fast[4] if self._fast is not None else 0

    def syscall_return(self, value: int) -> None:
        """X0 := a system call's result (written back by C when the call returns to it)."""
        if self._sys is not None:
            self._sys[7] = value & MASK64
            self._sys[8] = 1
        else:
            self.set_x(0, value)

    def context_reg(self, ctx, reg: int) -> int:  # noqa: ANN001 - a UcContext
        """A register of a saved context, at its real width: a UcContext alone reads every
        register as 64 bits, so the V registers need the arm64 register class."""
        return ctx._reg_read(reg, self.uc._select_reg_class(reg), None)

    def save(self):  # noqa: ANN201 - a UcContext: every register, SIMD included
        return self.uc.context_save()

    def restore(self, ctx) -> None:  # noqa: ANN001
        self.uc.context_restore(ctx)
