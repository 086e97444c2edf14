"""Signal numbers, dispositions, siginfo, and the pending/blocked bookkeeping."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from mteemu.report.tagfault import TagFaultReport

SIGHUP, SIGINT, SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE = 1, 2, 3, 4, 5, 6, 7, 8
SIGKILL, SIGUSR1, SIGSEGV, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGSTKFLT = 9, 10, 11, 12, 13, 14, 15, 16
SIGCHLD, SIGCONT, SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGXCPU = 17, 18, 19, 20, 21, 22, 23, 24
SIGXFSZ, SIGVTALRM, SIGPROF, SIGWINCH, SIGIO, SIGPWR, SIGSYS = 25, 26, 27, 28, 29, 30, 31
SIGRTMIN, NSIG = 32, 64

NAMES = {v: k for k, v in dict(globals()).items()
         if k.startswith("SIG") and isinstance(v, int) and k not in ("SIGRTMIN",)}

SIG_DFL, SIG_IGN = 0, 1

SA_NOCLDSTOP, SA_NOCLDWAIT, SA_SIGINFO = 0x1, 0x2, 0x4
SA_UNSUPPORTED, SA_EXPOSE_TAGBITS = 0x400, 0x800
SA_RESTORER, SA_ONSTACK, SA_RESTART = 0x04000000, 0x08000000, 0x10000000
SA_NODEFER, SA_RESETHAND = 0x40000000, 0x80000000
SA_KNOWN = (SA_NOCLDSTOP | SA_NOCLDWAIT | SA_SIGINFO | SA_EXPOSE_TAGBITS | SA_RESTORER
            | SA_ONSTACK | SA_RESTART | SA_NODEFER | SA_RESETHAND)

# si_code values
SI_USER, SI_KERNEL, SI_QUEUE, SI_TKILL = 0, 0x80, -1, -6
SEGV_MAPERR, SEGV_ACCERR, SEGV_MTEAERR, SEGV_MTESERR = 1, 2, 8, 9
BUS_ADRALN, BUS_ADRERR = 1, 2
ILL_ILLOPC = 1
TRAP_BRKPT = 1
CLD_EXITED, CLD_KILLED, CLD_DUMPED = 1, 2, 3

_CORE = {SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV, SIGXCPU, SIGXFSZ, SIGSYS}
_IGNORE = {SIGCHLD, SIGURG, SIGWINCH, SIGCONT}
# Job control stops are not modelled: there is no terminal session to stop in.
_STOP = {SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU}
UNBLOCKABLE = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1))
FAULT_SIGNALS = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE}
# setitimer(): ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF and the signal each sends.
ITIMER_SIGNALS = {0: SIGALRM, 1: SIGVTALRM, 2: SIGPROF}


def bit(sig: int) -> int:
    return 1 << (sig - 1)


def name(sig: int) -> str:
    if sig >= SIGRTMIN:
        return f"SIGRT{sig - SIGRTMIN}"
    return NAMES.get(sig, f"signal {sig}")


def default_kills(sig: int) -> bool:
    return sig not in _IGNORE and sig not in _STOP


def default_dumps_core(sig: int) -> bool:
    return sig in _CORE


@dataclass
class SigAction:
    handler: int = SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0

    FMT = "<QQQQ"   # arm64 struct sigaction: handler, flags, restorer, mask

    def pack(self) -> bytes:
        return struct.pack(self.FMT, self.handler, self.flags, self.restorer, self.mask)


@dataclass
class SigInfo:
    signo: int
    code: int = SI_KERNEL
    errno: int = 0
    addr: Optional[int] = None          # SIGSEGV/SIGBUS/SIGILL/SIGTRAP/SIGFPE
    pid: int = 0
    uid: int = 0
    status: int = 0                     # SIGCHLD
    value: int = 0                      # sigqueue
    esr: int = 0                        # for the sigframe's esr_context (faults only)
    report: Optional["TagFaultReport"] = None   # a tag-check fault's report, printed if it kills

    def pack(self, expose_tagbits: bool = False) -> bytes:
        head = struct.pack("<iii", self.signo, self.errno, self.code) + b"\0" * 4
        if self.signo in FAULT_SIGNALS and self.addr is not None:
            addr = self.addr
            if not expose_tagbits and not (self.signo == SIGTRAP and self.code == TRAP_BRKPT):
                # arch_untagged_si_addr(): untagged_addr(), which sign-extends bit 55 — a
                # user address loses its tag, a kernel-half one (0xfff...) stays as it is.
                addr = addr | (0xFF << 56) if addr >> 55 & 1 else addr & ((1 << 56) - 1)
            body = struct.pack("<Q", addr)
        elif self.signo == SIGCHLD:
            body = struct.pack("<iiiqq", self.pid, self.uid, self.status, 0, 0)
        else:
            body = struct.pack("<iiQ", self.pid, self.uid, self.value)
        return (head + body).ljust(128, b"\0")


@dataclass
class Pending:
    """Pending signals: standard signals coalesce, real-time ones queue."""

    queue: dict[int, list[SigInfo]] = field(default_factory=dict)

    @property
    def mask(self) -> int:
        m = 0
        for sig in self.queue:
            m |= bit(sig)
        return m

    def add(self, info: SigInfo) -> None:
        q = self.queue.setdefault(info.signo, [])
        if info.signo >= SIGRTMIN or not q:
            q.append(info)

    def take(self, sig: int) -> SigInfo:
        q = self.queue[sig]
        info = q.pop(0)
        if not q:
            del self.queue[sig]
        return info

    def first(self, blocked: int) -> Optional[int]:
        """Lowest pending unblocked signal (synchronous faults come first in Linux too)."""
        for sig in sorted(self.queue):
            if not bit(sig) & blocked:
                return sig
        return None

    def discard(self, sig: int) -> None:
        self.queue.pop(sig, None)
