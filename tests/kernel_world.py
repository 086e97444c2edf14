"""A booted kernel with one process, driven in-process: `world.call("openat", ...)` makes a
system call as the process's thread would (Kernel.syscall, the SVC path every guest takes),
without running guest code. The program is the embedded demo; nothing of it runs."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Optional

from mteemu.board.model import default_board
from mteemu.kernel.kernel import Kernel
from mteemu.kernel.process import Thread
from mteemu.kernel.run import RunOptions
from mteemu.kernel.syscalls.numbers import SYSCALL_NUMBERS
from mteemu.kernel.uaccess import s64

DEMO = Path(__file__).resolve().parent.parent / "mteemu" / "data" / "demo.elf"
PROT_RW, MAP_PRIVATE_ANON = 3, 0x22
SCRATCH = 1 << 20


class KernelWorld:
    def __init__(self, root: Path, **options: object) -> None:
        self.diag = io.StringIO()
        self.k = Kernel(default_board(), RunOptions(root=str(root), diag=self.diag, **options))  # type: ignore[arg-type]
        self.k.spawn(str(DEMO), [b"demo"], [b"WORLD=1"])
        init = self.k.tasks.init
        assert init is not None
        self.proc = init
        self.t: Thread = init.threads[0]
        self.scratch = self.call("mmap", 0, SCRATCH, PROT_RW, MAP_PRIVATE_ANON, -1, 0)
        self._free = self.scratch

    def call(self, name: str, *args: int, t: Optional[Thread] = None) -> int:
        """The call's x0, signed (-errno on failure)."""
        return s64(self.k.syscall(t or self.t, SYSCALL_NUMBERS[name], [a & (1 << 64) - 1 for a in args]))

    def put(self, data: bytes) -> int:
        """Bytes in the process's memory (the scratch mapping); their address."""
        addr = self._free
        self._free += (len(data) + 15) & ~15
        assert self._free <= self.scratch + SCRATCH
        self.proc.mem.write(addr, data)
        return addr

    def cstr(self, s: "str | bytes") -> int:
        return self.put(os.fsencode(s) + b"\0")

    def buf(self, size: int) -> int:
        return self.put(bytes(size))

    def read(self, addr: int, size: int) -> bytes:
        return self.proc.mem.read(addr, size)

    def close(self) -> None:
        self.k.discard()
