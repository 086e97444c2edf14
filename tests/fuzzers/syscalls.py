"""A hostile guest, simulated: every syscall number 0-460 with random and boundary
arguments, driven straight into the syscall layer of a live kernel. Each call must
return an errno or have its Linux effect; any Python exception escaping a handler is
a bug. The kernel runs confined (`--root` its scratch directory, stdio private files in it),
so the calls cannot touch anything outside it. It drives the kernel through its public
entry point (Kernel.syscall). Used by the tests (a fixed seed, tens of thousands of calls)
and scripts/fuzz syscalls (as many as you like)."""
from __future__ import annotations

import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Optional, TextIO

from mteemu.board.model import default_board, small_reuse_board
from mteemu.kernel.exits import GuestExit
from mteemu.kernel.kernel import Kernel
from mteemu.kernel.process import State, Thread
from mteemu.kernel.run import RunOptions

MAX_NR = 460
# exit, exit_group: they end the fuzzing process (tested elsewhere); execve(at): replace it.
SKIP = {93, 94, 221, 281}
# Calls that wait for the world outside (stdin, sleeping, pause): run, but never wait.
KERNEL_HALF = 0xFFFF_8000_0000_0000


@dataclass
class Stats:
    calls: int = 0
    ok: int = 0
    errors: dict[int, int] = field(default_factory=dict)    # errno -> count
    blocked: int = 0
    respawns: int = 0


class SyscallFuzzer:
    def __init__(self, program: str, seed: int) -> None:
        self.program = program
        self.rng = random.Random(seed)
        self.dir = tempfile.mkdtemp(prefix="mteemu-syscall-fuzz-")
        self.kernel: Optional[Kernel] = None
        self.thread: Optional[Thread] = None
        self.scratch = 0
        self._diag: Optional[TextIO] = None

    def close(self) -> None:
        """Leave nothing behind: the kernel's open files, the diagnostics file, the scratch folder."""
        self._drop()
        if self._diag is not None:
            self._diag.close()
            self._diag = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _drop(self) -> None:
        """Forget the kernel, giving back what its processes hold on the host (their stdio)."""
        if self.kernel is not None:
            self.kernel.shutdown()
            self.kernel = None

    def _boot(self) -> None:
        cwd = os.getcwd()
        os.chdir(self.dir)
        try:
            # Confined: the guest's root is the scratch folder and its stdio are private
            # files in it, so no call can reach a host file (not even /dev/null).
            diag = self._diag = self._diag or open(os.path.join(self.dir, "diag"), "w")
            # Every other boot: the small board whose tag storage the kernel reuses, with
            # swap and the memory manager's invariants checked.
            seed = self.rng.randrange(1 << 30)
            if seed & 1:
                k = Kernel(small_reuse_board(), RunOptions(seed=seed, swap=16 << 20, check_invariants=True,
                                                           diag=diag, root=self.dir))
            else:
                k = Kernel(default_board(), RunOptions(seed=seed, mem_limit=64 << 20, diag=diag, root=self.dir))
            saved = [os.dup(fd) for fd in (0, 1, 2)]
            private = os.open(os.path.join(self.dir, "stdio"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                for fd in (0, 1, 2):
                    os.dup2(private, fd)          # the guest's stdio, inherited at spawn
                k.spawn(self.program, [self.program.encode()], [b"FUZZ=1"])
            finally:
                for fd, s in zip((0, 1, 2), saved):
                    os.dup2(s, fd)
                    os.close(s)
                os.close(private)
            self.thread = k.sched.runq[0]
            self.kernel = k
            self.scratch = self._call(222, 0, 1 << 16, 3, 0x22, -1 & (2**64 - 1), 0)   # mmap rw, 64 KiB
        finally:
            os.chdir(cwd)

    def _call(self, nr: int, *args: int) -> int:
        return self.kernel.syscall(self.thread, nr, [a & (2**64 - 1) for a in args])

    def _arg(self) -> int:
        r = self.rng
        scratch = self.scratch or 0x1000
        return r.choice([
            0, 1, 2, 3, 0xFFFF_FFFF, 2**64 - 1, 2**63, 2**31, -1, -4096, 4096, 0x7FFF_FFFF,
            r.randrange(64), r.randrange(1 << 16), r.randrange(2**64),
            scratch, scratch + r.randrange(1 << 16), scratch + 1, scratch + (1 << 16) - 1,
            (5 << 56) | scratch, (0xF << 56) | (scratch + 16),              # tagged pointers
            0x1000, 0xDEAD_0000, KERNEL_HALF, KERNEL_HALF + 0x1000, 1 << 48,  # unmapped / kernel half
            r.randrange(1 << 40) << 12,                                       # a huge length
        ]) & (2**64 - 1)

    def run(self, calls: int, stats: Optional[Stats] = None) -> Stats:
        stats = stats or Stats()
        cwd = os.getcwd()
        os.chdir(self.dir)
        try:
            for _ in range(calls):
                if self.kernel is None:
                    self._boot()
                    stats.respawns += 1
                nr = self.rng.randrange(MAX_NR + 1)
                if nr in SKIP:
                    continue
                args = [self._arg() for _ in range(6)]
                stats.calls += 1
                try:
                    result = self._call(nr, *args)
                except GuestExit:
                    self._drop()                  # the fuzzed process killed itself (a signal)
                    continue
                t = self.kernel.sched.current
                if t is None or t.state is State.DEAD:
                    self._drop()
                    continue
                if t.state is State.BLOCKED:
                    stats.blocked += 1
                    self.kernel.sched.abandon_wait(t)   # never wait: the call ends unanswered
                    continue
                # Signals the call raised (kill, tgkill...) are dropped, not delivered.
                t.pending.queue.clear()
                t.proc.pending.queue.clear()
                r = result - 2**64 if result >> 63 else result
                if -4096 < r < 0:
                    stats.errors[-r] = stats.errors.get(-r, 0) + 1
                else:
                    stats.ok += 1
        finally:
            os.chdir(cwd)
        return stats
