"""Pages shared by every mapping of one object (Linux's page cache and shmem).

One SharedObject backs all MAP_SHARED mappings of a host file (keyed by device and
inode, so two mmaps of the same file see each other's writes), a memfd, or a
MAP_SHARED|MAP_ANONYMOUS region inherited across fork. Dirty pages of a host file
are written back at msync, munmap and exit (and before the guest reads the file
with read(2), to stay coherent); the host file is never extended by writeback.
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from mteemu.kernel.mm.pagealloc import PageAllocator
from mteemu.machine.physmem import PAGE_SHIFT, PAGE_SIZE


class SharedObject:
    def __init__(self, alloc: PageAllocator, name: str, host_fd: Optional[int] = None,
                 size: int = 0) -> None:
        self.alloc = alloc
        self.name = name
        self.host_fd = host_fd          # owned: closed on release
        self._size = size               # for objects without a host file
        self.pages: dict[int, int] = {}
        self.dirty: set[int] = set()
        self.users = 0                  # VMAs and open file descriptions holding it
        self.key: Optional[tuple[int, int]] = None   # (st_dev, st_ino) for host files

    @property
    def tracks_dirty(self) -> bool:
        return self.host_fd is not None

    @property
    def size(self) -> int:
        if self.host_fd is not None:
            return os.fstat(self.host_fd).st_size
        return self._size

    def page(self, idx: int) -> int:
        pfn = self.pages.get(idx)
        if pfn is None:
            pfn = self.alloc.alloc(anon=False)
            self.alloc.set_owner(pfn, self, idx)
            if self.host_fd is not None:
                data = os.pread(self.host_fd, PAGE_SIZE, idx << PAGE_SHIFT)
                self.alloc.physmem.page(pfn)[:len(data)] = data
            self.pages[idx] = pfn
        return pfn

    def writeback(self, first: int = 0, last: Optional[int] = None) -> None:
        if self.host_fd is None or not self.dirty:
            return
        size = self.size
        for idx in sorted(self.dirty):
            if idx < first or (last is not None and idx > last):
                continue
            off = idx << PAGE_SHIFT
            n = min(PAGE_SIZE, size - off)
            if n > 0:
                os.pwrite(self.host_fd, self.alloc.physmem.page(self.pages[idx])[:n], off)
            self.dirty.discard(idx)

    def refresh(self, offset: int, length: int) -> None:
        """The host file changed under us (write(2)): reload the cached pages it touched."""
        if self.host_fd is None:
            return
        for idx in range(offset >> PAGE_SHIFT, (offset + length + PAGE_SIZE - 1) >> PAGE_SHIFT):
            pfn = self.pages.get(idx)
            if pfn is not None:
                data = os.pread(self.host_fd, PAGE_SIZE, idx << PAGE_SHIFT)
                page = self.alloc.physmem.page(pfn)
                page[:len(data)] = data
                page[len(data):] = bytes(PAGE_SIZE - len(data))

    # -- memfd-style byte access (no host file) ------------------------------
    def read(self, offset: int, length: int) -> bytes:
        length = max(0, min(length, self._size - offset))
        out = bytearray()
        while length > 0:
            idx, off = offset >> PAGE_SHIFT, offset & (PAGE_SIZE - 1)
            n = min(length, PAGE_SIZE - off)
            pfn = self.pages.get(idx)
            out += self.alloc.physmem.page(pfn)[off:off + n] if pfn is not None else bytes(n)
            offset += n
            length -= n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            idx, off = (offset + pos) >> PAGE_SHIFT, (offset + pos) & (PAGE_SIZE - 1)
            n = min(len(data) - pos, PAGE_SIZE - off)
            self.alloc.physmem.page(self.page(idx))[off:off + n] = data[pos:pos + n]
            pos += n
        self._size = max(self._size, offset + len(data))

    def truncate(self, size: int) -> None:
        for idx in [i for i in self.pages if (i << PAGE_SHIFT) >= size]:
            self.alloc.put(self.pages.pop(idx))
        tail = size & (PAGE_SIZE - 1)
        pfn = self.pages.get(size >> PAGE_SHIFT)
        if tail and pfn is not None:
            self.alloc.physmem.page(pfn)[tail:] = bytes(PAGE_SIZE - tail)
        self._size = size

    # -- lifetime ------------------------------------------------------------
    def hold(self) -> None:
        self.users += 1

    def drop(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.writeback()
            for pfn in self.pages.values():
                self.alloc.put(pfn)
            self.pages.clear()
            if self.host_fd is not None:
                os.close(self.host_fd)
                self.host_fd = None
            if self.on_release is not None:
                self.on_release(self)

    # Set by the page-cache registry to forget the object.
    on_release: Optional[Callable[["SharedObject"], object]] = None
