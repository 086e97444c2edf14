"""The arm64 core's vocabulary shared by the CPU, the instruction emulator and the kernel:
Unicorn's register ids and access kinds, and how control leaves the CPU (an Exit)."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

from unicorn import arm64_const as A

from mteemu.machine.tagcheck import Mismatch

# Unicorn's UC_MEM_READ/WRITE/FETCH, as passed to the TLB fill hook.
ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH = 16, 17, 18
ACCESS_NAMES = {ACCESS_READ: "READ", ACCESS_WRITE: "WRITE", ACCESS_FETCH: "FETCH"}

# QEMU exception numbers that Unicorn passes to UC_HOOK_INTR.
EXCP_UDEF, EXCP_SWI, EXCP_PREFETCH_ABORT, EXCP_DATA_ABORT, EXCP_BKPT = 1, 2, 3, 4, 7

X_REGS = [getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]
Q_REGS = [getattr(A, f"UC_ARM64_REG_Q{i}") for i in range(32)]
REG_SP, REG_PC, REG_NZCV = A.UC_ARM64_REG_SP, A.UC_ARM64_REG_PC, A.UC_ARM64_REG_NZCV
REG_TPIDR = A.UC_ARM64_REG_TPIDR_EL0
REG_FPCR, REG_FPSR = A.UC_ARM64_REG_FPCR, A.UC_ARM64_REG_FPSR
SYSCALL_ARG_REGS = [A.UC_ARM64_REG_X8] + X_REGS[:6]
MASK64 = (1 << 64) - 1

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
