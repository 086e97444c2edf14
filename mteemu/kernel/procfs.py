"""The files of /proc that describe the emulated machine, not the host: /proc/meminfo
and /proc/vmstat are generated from the board's page allocator when opened (a guest
reading the host's would learn the host's memory, not its own)."""
from __future__ import annotations

import errno
import os
import stat as st
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.files import OpenFile, fake_stat
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.kernel import Kernel


class GeneratedFile(OpenFile):
    """A read-only snapshot, as seq_file gives one per open."""

    def __init__(self, name: str, content: bytes) -> None:
        super().__init__(os.O_RDONLY)
        self.name, self.content = name, content

    def read(self, n: int) -> bytes:
        data = self.content[self.pos:self.pos + n]
        self.pos += len(data)
        return data

    def pread(self, n: int, off: int) -> bytes:
        return self.content[off:off + n]

    def lseek(self, off: int, whence: int) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: len(self.content)}.get(whence)
        if base is None or base + off < 0:
            raise SyscallError(errno.EINVAL)
        self.pos = base + off
        return self.pos

    def stat(self) -> os.stat_result:
        return fake_stat(st.S_IFREG | 0o444, 0, dev=0x4)     # procfs files report size 0

    def path(self) -> str:
        return self.name


def meminfo(k: "Kernel") -> bytes:
    kb = 4096 // 1024
    total, free = k.alloc.total_pages * kb, k.alloc.free_pages * kb
    lines = [("MemTotal", total), ("MemFree", free), ("MemAvailable", free),
             # Tag storage reused as data (the RFC's counters): none is yet in this model.
             ("MetadataTotal", 0), ("MetadataFree", 0), ("SwapTotal", 0), ("SwapFree", 0)]
    return "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in lines).encode()


def vmstat(k: "Kernel") -> bytes:
    counters = [("nr_free_pages", k.alloc.free_pages), ("nr_free_metadata", 0),
                ("metadata_reserve_success", 0), ("metadata_reserve_fail", 0), ("metadata_reserve_free", 0),
                ("pgmigrate_success", 0), ("pgmigrate_fail", 0), ("pswpin", 0), ("pswpout", 0), ("compact_stall", 0)]
    return "".join(f"{name} {value}\n" for name, value in counters).encode()


FILES: dict[str, Callable[["Kernel"], bytes]] = {"/proc/meminfo": meminfo, "/proc/vmstat": vmstat}


def open_generated(k: "Kernel", path: str) -> Optional[GeneratedFile]:
    gen = FILES.get(os.path.normpath(path)) if path.startswith("/proc/") else None
    return None if gen is None else GeneratedFile(path, gen(k))
