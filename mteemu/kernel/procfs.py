"""The files of /proc that describe the emulated machine, not the host: /proc/meminfo
and /proc/vmstat are generated from the board's page allocator when opened (a guest
reading the host's would learn the host's memory, not its own)."""
from __future__ import annotations

import errno
import os
import stat as st
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.kernel.files import OpenFile, fake_stat
from mteemu.kernel.mm.buddy import MigrateType
from mteemu.machine.physmem import PAGE_SIZE
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


def _tag_storage(k: "Kernel", mt: MigrateType) -> tuple[int, int]:
    """(total, free) pages of tag storage onlined as `mt` pageblocks."""
    b = k.alloc.buddy
    if k.alloc.storage is None or b.tag_type is not mt:
        return 0, 0
    return b.tag_storage_total, b.nr_free_tag_storage


def meminfo_fields(k: "Kernel") -> list[tuple[str, int]]:
    """Values in kB, as /proc/meminfo shows them (RFC v1 adds Metadata*, v2/v3 use Cma*)."""
    a, kb = k.alloc, PAGE_SIZE // 1024
    meta, cma = _tag_storage(k, MigrateType.METADATA), _tag_storage(k, MigrateType.CMA)
    swap_total = a.swap.capacity if a.swap else 0
    swap_free = swap_total - (a.swap.used if a.swap else 0)
    pages = [("MemTotal", a.total_pages), ("MemFree", a.free_pages), ("MemAvailable", a.free_pages),
             ("SwapTotal", swap_total), ("SwapFree", swap_free),
             ("PageTables", sum(len(p.mm.pt_pages) for p in k.procs.values() if p.wait_status is None)),
             ("CmaTotal", cma[0]), ("CmaFree", cma[1]), ("MetadataTotal", meta[0]), ("MetadataFree", meta[1])]
    return [(name, n * kb) for name, n in pages]


def vmstat_fields(k: "Kernel") -> list[tuple[str, int]]:
    a = k.alloc
    ev = a.events
    meta, cma = _tag_storage(k, MigrateType.METADATA), _tag_storage(k, MigrateType.CMA)
    names = ("metadata_reserve_success", "metadata_reserve_fail", "metadata_reserve_free",
             "cma_alloc_success", "cma_alloc_fail", "cma_release_success",
             "pgmigrate_success", "pgmigrate_fail", "compact_stall", "compact_fail", "compact_success",
             "pswpin", "pswpout")
    return [("nr_free_pages", a.free_pages), ("nr_free_metadata", meta[1]), ("nr_free_cma", cma[1])] + \
        [(n, ev[n]) for n in names]


def meminfo(k: "Kernel") -> bytes:
    return "".join(f"{name + ':':<16}{value:>8} kB\n" for name, value in meminfo_fields(k)).encode()


def vmstat(k: "Kernel") -> bytes:
    return "".join(f"{name} {value}\n" for name, value in vmstat_fields(k)).encode()


def stats_lines(k: "Kernel") -> list[str]:
    """`mteemu run --stats`: the memory counters at exit, in two lines."""
    mem = " ".join(f"{n}={v}kB" for n, v in meminfo_fields(k) if v or n in ("MemTotal", "MemFree"))
    ev = " ".join(f"{n}={v}" for n, v in vmstat_fields(k) if v)
    return [f"meminfo {mem}", f"vmstat {ev}"]


FILES: dict[str, Callable[["Kernel"], bytes]] = {"/proc/meminfo": meminfo, "/proc/vmstat": vmstat}


def open_generated(k: "Kernel", path: str) -> Optional[GeneratedFile]:
    gen = FILES.get(os.path.normpath(path)) if path.startswith("/proc/") else None
    return None if gen is None else GeneratedFile(path, gen(k))
