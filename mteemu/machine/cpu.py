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
  * the instruction budget ran out (only used while several threads are runnable,
    because Unicorn counts instructions with an internal per-instruction hook that
    costs ~13x on ALU code — measured, see docs/);
  * stop() was called from another host thread (the --timeout watchdog).
"""
from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from unicorn import (UC_ARCH_ARM64, UC_CTL_IO_WRITE, UC_CTL_TLB_FLUSH, UC_HOOK_INTR,
                     UC_HOOK_TLB_FILL, UC_MODE_ARM, UC_TLB_VIRTUAL, Uc, UcError)
from unicorn import arm64_const as A
from unicorn.unicorn_const import UC_ERR_EXCEPTION

from mteemu.machine.physmem import PAGE_SIZE, PhysMem

# Unicorn's UC_MEM_READ/WRITE/FETCH, as passed to the TLB fill hook.
ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH = 16, 17, 18
ACCESS_NAMES = {ACCESS_READ: "READ", ACCESS_WRITE: "WRITE", ACCESS_FETCH: "FETCH"}

# QEMU exception numbers that Unicorn passes to UC_HOOK_INTR.
EXCP_UDEF, EXCP_SWI, EXCP_BKPT = 1, 2, 7

_NO_UNTIL = (1 << 64) - 1   # emu_start's "until" that can never be reached
_UNTIL_PAGE = _NO_UNTIL & ~(PAGE_SIZE - 1)

X_REGS = [getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]
Q_REGS = [getattr(A, f"UC_ARM64_REG_Q{i}") for i in range(32)]
REG_SP, REG_PC, REG_NZCV = A.UC_ARM64_REG_SP, A.UC_ARM64_REG_PC, A.UC_ARM64_REG_NZCV
REG_TPIDR = A.UC_ARM64_REG_TPIDR_EL0
REG_FPCR, REG_FPSR = A.UC_ARM64_REG_FPCR, A.UC_ARM64_REG_FPSR
SYSCALL_ARG_REGS = [A.UC_ARM64_REG_X8] + X_REGS[:6]


class ExitKind(enum.Enum):
    STOPPED = "stopped"          # a syscall handler (or the kernel) asked to leave the CPU
    FAULT = "fault"              # a translation was refused
    UNDEFINED = "undefined"      # undefined instruction
    BREAKPOINT = "breakpoint"    # BRK #imm
    BUDGET = "budget"            # the instruction budget ran out
    INTERRUPTED = "interrupted"  # stop() from another host thread
    EXCEPTION = "exception"      # any other CPU exception


@dataclass(frozen=True)
class Exit:
    kind: ExitKind
    pc: int
    fault_page: int = 0          # the refused page, tag bits kept
    access: int = 0              # ACCESS_READ / _WRITE / _FETCH
    intno: int = 0


# translate(vaddr_page_with_tag, access) -> (physical page address, uc perms) or None
Translator = Callable[[int, int], Optional[tuple[int, int]]]
# syscall() -> True to leave the CPU after this SVC
SyscallHandler = Callable[[], bool]


class Cpu:
    """One arm64 core over the board's physical memory."""

    def __init__(self, physmem: PhysMem, translate: Translator, syscall: SyscallHandler) -> None:
        uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        # Order matters: the CPU model and page size must be set before anything
        # initialises the engine (any ctl read does).
        uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)   # LSE atomics etc.; A72 lacks them
        uc.ctl_set_page_size(PAGE_SIZE)            # default is 1 KiB: thrashes the TLB
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        physmem.map_into(uc)
        self.uc = uc
        self.physmem = physmem
        self._translate = translate
        self._syscall = syscall
        self._pending: Optional[Exit] = None
        self._refused: Optional[tuple[int, int]] = None
        self._interrupt = threading.Event()
        uc.hook_add(UC_HOOK_TLB_FILL, self._on_fill)
        uc.hook_add(UC_HOOK_INTR, self._on_intr)

    # -- hooks ---------------------------------------------------------------
    def _on_fill(self, uc: Uc, vaddr: int, access: int, entry, _data) -> bool:  # noqa: ANN001
        if vaddr == _UNTIL_PAGE and access == ACCESS_FETCH:
            # Whenever emulation stops, Unicorn looks up the page of emu_start's "until"
            # address. It is no guest access: refuse it without calling it a fault.
            return False
        result = self._translate(vaddr, access)
        if result is None:
            # Unicorn reports a refused fill as a bare UC_ERR_EXCEPTION; remember why.
            # Keep the first refusal: the access that really faulted.
            if self._refused is None:
                self._refused = (vaddr, access)
            return False
        entry.paddr, entry.perms = result
        return True

    def _on_intr(self, uc: Uc, intno: int, _data) -> None:  # noqa: ANN001
        if intno == EXCP_SWI:
            if self._syscall():
                self._leave(Exit(ExitKind.STOPPED, uc.reg_read(REG_PC)))
            return
        pc = uc.reg_read(REG_PC)
        kind = {EXCP_UDEF: ExitKind.UNDEFINED, EXCP_BKPT: ExitKind.BREAKPOINT}.get(intno, ExitKind.EXCEPTION)
        self._leave(Exit(kind, pc, intno=intno))

    def _leave(self, exit_: Exit) -> None:
        if self._pending is None:
            self._pending = exit_
        self.uc.emu_stop()

    # -- running ---------------------------------------------------------------
    def run(self, budget: int = 0) -> Exit:
        """Run from the current PC until something needs the kernel."""
        self._pending = None
        self._refused = None
        if self._interrupt.is_set():
            return Exit(ExitKind.INTERRUPTED, self.pc)
        uc = self.uc
        try:
            uc.emu_start(uc.reg_read(REG_PC), _NO_UNTIL, count=budget)
        except UcError as e:
            if uc._hook_exception is not None:
                # A callback raised (a kernel decision such as "the guest is gone", or a
                # bug): the binding stored it but emu_start reports only the UcError.
                raise uc._hook_exception from None
            # A stop requested by a hook wins over anything refused while stopping.
            if self._pending is None and e.errno == UC_ERR_EXCEPTION and self._refused is not None:
                page, access = self._refused
                return Exit(ExitKind.FAULT, uc.reg_read(REG_PC), fault_page=page, access=access)
            if self._pending is None and e.errno != UC_ERR_EXCEPTION:
                return Exit(ExitKind.EXCEPTION, uc.reg_read(REG_PC), intno=-e.errno)
        if self._pending is not None:
            return self._pending
        if self._interrupt.is_set():
            return Exit(ExitKind.INTERRUPTED, self.pc)
        return Exit(ExitKind.BUDGET, self.pc)

    def interrupt(self) -> None:
        """Thread-safe: make the current and every later run() return INTERRUPTED."""
        self._interrupt.set()
        self.uc.emu_stop()

    def flush_tlb(self) -> None:
        """Drop every cached translation (after page tables change or on an mm switch)."""
        self.uc.ctl(UC_CTL_TLB_FLUSH, UC_CTL_IO_WRITE)

    # -- registers ---------------------------------------------------------------
    @property
    def pc(self) -> int:
        return self.uc.reg_read(REG_PC)

    @pc.setter
    def pc(self, value: int) -> None:
        self.uc.reg_write(REG_PC, value)

    def x(self, n: int) -> int:
        return self.uc.reg_read(X_REGS[n])

    def set_x(self, n: int, value: int) -> None:
        self.uc.reg_write(X_REGS[n], value & 0xFFFF_FFFF_FFFF_FFFF)

    def syscall_args(self) -> tuple[int, ...]:
        """(x8, x0..x5): the syscall number and its six arguments."""
        return self.uc.reg_read_batch(SYSCALL_ARG_REGS)

    def save(self):  # noqa: ANN201 - a UcContext: every register, SIMD included
        return self.uc.context_save()

    def restore(self, ctx) -> None:  # noqa: ANN001
        self.uc.context_restore(ctx)
