"""What a debugger may do to a traced process, as Linux's ptrace offers it.

The kernel knows a tracer only through the `Tracer` protocol: it asks it at the points
where Linux stops a tracee — the signal-delivery stop (get_signal(): ptrace_signal()),
the trap after a breakpoint, watchpoint or single step, the exit, and the exec — and
never waits for a debugger anywhere else. The debugger's own reach into the tracee is
here too, modelled on arch/arm64/kernel/ptrace.c's register sets (NT_PRSTATUS,
NT_PRFPREG, NT_ARM_TAGGED_ADDR_CTRL) and mte.c's mte_ptrace_copy_tags().
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Iterator, Optional, Protocol

from mteemu.kernel import mte
from mteemu.kernel.mm.addrspace import TOP_BYTE_MASK, Fault
from mteemu.kernel.mm.vma import PROT_MTE
from mteemu.kernel.process import Process, Thread
from mteemu.kernel.signals import SigInfo
from mteemu.kernel.uaccess import RemoteMemory, SyscallError
from mteemu.machine import arm64 as C
from mteemu.machine.physmem import PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

MTE_GRANULE = 16
PSTATE_TCO = 1 << 25
CPSR, TAG_CTL = "cpsr", "tag_ctl"        # registers that are kernel state, not Unicorn's
PAUTH_DMASK, PAUTH_CMASK = "pauth_dmask", "pauth_cmask"
# NT_ARM_PAC_MASK: the bits a PAC occupies. Unicorn's TCR_EL1 has TBI off (see cpu.py), so
# for data and code pointers alike the code fills bits 63:56 and 54:48 of a 48-bit VA.
PAC_MASK = 0xFF7F_0000_0000_0000


class Tracer(Protocol):
    """The kernel's side of a debugger session (the GDB server implements it)."""

    def traces(self, proc: Process) -> bool:
        """Whether stops of this process are the tracer's."""

    def start(self, t: Thread) -> None:
        """Before the program's first instruction (the stop after PTRACE_TRACEME's exec)."""

    def signal_stop(self, t: Thread, info: SigInfo) -> Optional[SigInfo]:
        """A signal is about to be delivered: what to deliver instead (None: nothing)."""

    def budget(self, t: Thread, budget: int) -> int:
        """The instruction budget for t's next run (1 while single-stepping it)."""

    def after_run(self, t: Thread, exit_: C.Exit) -> None:
        """t left the CPU: a breakpoint, watchpoint, step or interrupt may stop it now."""

    def idle(self) -> None:
        """Every thread is blocked: an interrupt request may stop the process now."""

    def exited(self, proc: Process) -> None:
        """The traced process is gone (its wait status is set)."""

    def execed(self, t: Thread) -> None:
        """The traced process runs a new program (reported at the next stop point)."""


class ThreadRegs:
    """A thread's registers, wherever they are: in the CPU while the thread is on it,
    else in its saved context, with writes the kernel has queued (set_regs) on top."""

    def __init__(self, k: "KernelApi", t: Thread) -> None:
        self.k, self.t = k, t
        self._live = k.sched.current is t and t.ctx is None

    def read(self, reg: "int | str") -> int:
        t = self.t
        if reg == CPSR:
            return (self.read(C.REG_NZCV) & 0xF000_0000) | (PSTATE_TCO if t.mte.tco else 0)
        if reg == TAG_CTL:
            return t.tagged_addr_ctrl
        if reg in (PAUTH_DMASK, PAUTH_CMASK):
            return PAC_MASK
        if reg in t.set_regs:
            return t.set_regs[reg]
        assert isinstance(reg, int)
        if self._live:
            return self.k.cpu.reg(reg)
        return self.k.cpu.context_reg(t.ctx, reg)

    def write(self, reg: "int | str", value: int) -> None:
        t, k = self.t, self.k
        if reg == CPSR:
            self.write(C.REG_NZCV, value & 0xF000_0000)
            t.mte.tco = bool(value & PSTATE_TCO)
            if self._live:
                k.cpu.set_tco(t.mte.tco)
            return
        if reg in (PAUTH_DMASK, PAUTH_CMASK):
            raise TraceError(errno.EINVAL)       # NT_ARM_PAC_MASK is read-only
        if reg == TAG_CTL:
            # NT_ARM_TAGGED_ADDR_CTRL: set_tagged_addr_ctrl(), with its checks.
            try:
                mte.check_ctrl(value)
            except SyscallError:
                raise TraceError(errno.EINVAL) from None
            t.tagged_addr_ctrl = value
            t.mte = mte.state_for(value, k.options.mte_tcf_preferred, t.mte)
            if self._live:
                k.cpu.set_mte(t.mte)
            return
        assert isinstance(reg, int)
        if self._live:
            t.set_regs.pop(reg, None)
            k.cpu.set_reg(reg, value)
        else:
            t.set_regs[reg] = value


class TraceError(Exception):
    """A ptrace request failed with this errno."""

    def __init__(self, err: int) -> None:
        super().__init__(errno.errorcode.get(err, str(err)))
        self.errno = err


def read_memory(proc: Process, addr: int, length: int) -> bytes:
    """PTRACE_PEEKDATA over a range: as much as is readable from addr (FOLL_FORCE)."""
    mem = RemoteMemory(proc.mm)
    out = bytearray()
    while length > 0:
        n = min(length, PAGE_SIZE - (addr & (PAGE_SIZE - 1)))
        try:
            out += mem.read(addr, n)
        except SyscallError:
            break
        addr, length = addr + n, length - n
    return bytes(out)


def write_memory(k: "KernelApi", proc: Process, addr: int, data: bytes) -> None:
    """PTRACE_POKEDATA: into a private read-only mapping too, as a debugger writes code."""
    try:
        RemoteMemory(proc.mm).write(addr, data)
    except SyscallError as e:
        raise TraceError(e.errno) from None
    k.cpu.invalidate_code()        # it may have been code


def _tagged_page(proc: Process, addr: int, write: bool) -> int:
    """The physical page behind addr in a PROT_MTE mapping (faulted in, FOLL_FORCE)."""
    vma = proc.mm.vmas.find(addr)
    if vma is None:
        raise TraceError(errno.EIO)
    if not vma.prot & PROT_MTE:
        raise TraceError(errno.EOPNOTSUPP)      # __access_remote_tags(): !VM_MTE
    res = proc.mm.fault_forced(addr, C.ACCESS_WRITE if write else C.ACCESS_READ)
    if isinstance(res, Fault) or not res.tagged:
        raise TraceError(errno.EIO)
    return res[0]


def granules(addr: int, length: int) -> int:
    """How many 16-byte granules [addr, addr+length) touches (at least one)."""
    first = addr & ~(MTE_GRANULE - 1)
    last = (addr + max(length, 1) - 1) & ~(MTE_GRANULE - 1)
    return (last - first) // MTE_GRANULE + 1


def _granule_addresses(proc: Process, addr: int, length: int, write: bool) -> Iterator[int]:
    """The physical address of each granule of [addr, addr+length), each page looked up
    (and faulted in) once."""
    addr &= TOP_BYTE_MASK
    g = addr & ~(MTE_GRANULE - 1)
    page, pa = -1, 0
    for _ in range(granules(addr, length)):
        if g & ~(PAGE_SIZE - 1) != page:
            page = g & ~(PAGE_SIZE - 1)
            pa = _tagged_page(proc, g, write)
        yield pa | (g & (PAGE_SIZE - 1))
        g += MTE_GRANULE


def read_tags(k: "KernelApi", proc: Process, addr: int, length: int) -> bytes:
    """PTRACE_PEEKMTETAGS: one byte per granule of [addr, addr+length)."""
    return bytes(k.tags.get(pa) for pa in _granule_addresses(proc, addr, length, write=False))


def write_tags(k: "KernelApi", proc: Process, addr: int, length: int, tags: bytes) -> None:
    """PTRACE_POKEMTETAGS for a range: fewer tags than granules repeat as a pattern (GDB's
    QMemTags and lldb's memory tag write both ask for that)."""
    if not tags:
        raise TraceError(errno.EINVAL)
    for i, pa in enumerate(_granule_addresses(proc, addr, length, write=True)):
        k.tags.set_range(pa, MTE_GRANULE, tags[i % len(tags)] & 0xF)
