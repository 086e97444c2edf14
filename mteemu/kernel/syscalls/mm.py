"""Memory syscalls: brk, mmap and friends (mm/mmap.c, mm/mprotect.c, mm/mremap.c)."""
from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING, Optional

from mteemu.kernel.fs.devfs import MemDevice
from mteemu.kernel.fs.file import fd_path
from mteemu.kernel.fs.hostfile import HostFile
from mteemu.kernel.fs.memfd import MemFd
from mteemu.kernel.fs.namei import on_tmpfs
from mteemu.kernel.mm.addrspace import TASK_SIZE, Mm, untag
from mteemu.kernel.mm.shared import SharedObject
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_MTE, PROT_READ, PROT_WRITE, Vma
from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import Support, Unmodelled, syscall
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine.physmem import PAGE_MASK, PAGE_SIZE

DEV_ZERO = os.makedev(1, 5)      # the memory devices' /dev/zero (drivers/char/mem.c)

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

PROT_SEM, PROT_BTI = 0x8, 0x10
# arm64's arch_validate_prot(): anything else is EINVAL from mprotect (mmap ignores it).
PROT_KNOWN = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_BTI | PROT_MTE
PROT_VMA = PROT_READ | PROT_WRITE | PROT_EXEC | PROT_MTE    # what a VMA remembers
MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 0x1, 0x2, 0x3
MAP_FIXED, MAP_ANONYMOUS, MAP_GROWSDOWN, MAP_NORESERVE = 0x10, 0x20, 0x100, 0x4000
MAP_POPULATE, MAP_FIXED_NOREPLACE = 0x8000, 0x100000
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


def page_up(n: int) -> int:
    return (n + PAGE_SIZE - 1) & PAGE_MASK


def _overcommit_check(k: "KernelApi", length: int) -> None:
    # Heuristic overcommit (vm.overcommit_memory=0): one mapping larger than all of
    # RAM can never be backed, so Linux refuses it with ENOMEM up front.
    if length > k.alloc.total_pages * PAGE_SIZE:
        raise SyscallError(errno.ENOMEM)


@syscall("brk")
def sys_brk(k: "KernelApi", t: Thread, addr: int) -> int:
    mm = t.proc.mm
    new = addr
    if new < mm.brk_start:
        return mm.brk
    old_top, new_top = page_up(mm.brk), page_up(new)
    if new_top > old_top:
        if not mm.vmas.is_free(old_top, new_top) or new_top - mm.brk_start > k.alloc.total_pages * PAGE_SIZE:
            return mm.brk
        heap = mm.vmas.find(old_top - 1) if old_top > mm.brk_start else None
        if heap is not None and heap.name == "[heap]":
            heap.end = new_top
        else:
            mm.map(Vma(old_top, new_top, PROT_READ | PROT_WRITE, name="[heap]", mte_allowed=True))
    elif new_top < old_top:
        mm.unmap(new_top, old_top)
    mm.brk = new
    return mm.brk


@syscall("mmap", support=Support.PARTIAL,
         note=("a private file mapping copies the file page on first touch: later writes to the file "
               "by other means are not seen through it"))
def sys_mmap(k: "KernelApi", t: Thread, addr: int, length: int, prot: int, flags: int, fd: int, off: int) -> int:
    mm = t.proc.mm
    flags &= 0xFFFF_FFFF
    # Unknown prot bits are ignored here: do_mmap() never calls arch_validate_prot(), only
    # mprotect() does (the Linux oracle: mmap(PROT_READ | 0x40) succeeds).
    prot &= 0xFFFF_FFFF & PROT_KNOWN
    # The checks in Linux's order (the oracle compares errnos): offset, descriptor, length,
    # type, a fixed address, the source, then MTE and memory.
    if off & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)      # arm64's sys_mmap(): the offset before anything else
    if not flags & MAP_ANONYMOUS:
        t.proc.fds.get(s32(fd))               # ksys_mmap_pgoff(): EBADF before the length is looked at
    length, shared = _mmap_length_and_kind(length, flags)
    addr = untag(addr)
    fixed = bool(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
    if fixed:
        if addr & (PAGE_SIZE - 1) or addr + length > TASK_SIZE:
            raise SyscallError(errno.EINVAL)
        if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED and not mm.vmas.is_free(addr, addr + length):
            raise SyscallError(errno.EEXIST)
    obj, name, mte_allowed = _mmap_source(k, t, fd, flags, prot, shared, length)
    if prot & PROT_MTE and not mte_allowed:
        raise SyscallError(errno.EINVAL)   # arch_validate_flags(): VM_MTE needs VM_MTE_ALLOWED
    if not shared and prot & PROT_WRITE and not flags & MAP_NORESERVE:
        _overcommit_check(k, length)
    if not fixed:
        found = mm.get_unmapped_area(length, addr)
        if found is None:
            raise SyscallError(errno.ENOMEM)
        addr = found
    vma = Vma(addr, addr + length, prot & PROT_VMA, shared=shared, obj=obj,
              pgoff=off // PAGE_SIZE, name=name, mte_allowed=mte_allowed)
    mm.map(vma)
    _code_mapped(k, mm, vma)
    if flags & MAP_POPULATE:
        # mm_populate(): best effort; it stops where memory runs out (Linux's populate
        # of a huge MAP_NORESERVE mapping ends in reclaim and OOM, not in a hang).
        for page in range(addr, addr + length, PAGE_SIZE):
            if not isinstance(mm.fault(page, 16), tuple) or not k.alloc.free_pages:
                break
    return addr


def _code_mapped(k: "KernelApi", mm: Mm, vma: Vma) -> None:
    """A file's code was mapped: the allocation history looks for an allocator in it."""
    host_fd = getattr(vma.obj, "host_fd", None)
    if vma.prot & PROT_EXEC and host_fd is not None:
        k.allocs.mapped(mm, vma, fd_path(host_fd))


def _mmap_length_and_kind(length: int, flags: int) -> tuple[int, bool]:
    """The length in whole pages, and whether the mapping is shared (EINVAL, ENOMEM)."""
    if not length:
        raise SyscallError(errno.EINVAL)
    length = page_up(length)
    if length == 0 or length > TASK_SIZE:
        raise SyscallError(errno.ENOMEM)
    kind = flags & 0x3
    if kind not in (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE):
        raise SyscallError(errno.EINVAL)
    return length, kind != MAP_PRIVATE


def _mmap_source(k: "KernelApi", t: Thread, fd: int, flags: int, prot: int, shared: bool,
                 length: int) -> tuple[Optional[SharedObject], str, bool]:
    """What the mapping maps: (the shared object or None for private anonymous memory, its
    name, whether PROT_MTE is allowed: anonymous memory, shmem, memfd and tmpfs files)."""
    if flags & MAP_ANONYMOUS:
        return (SharedObject(k.alloc, "/dev/zero (deleted)", size=length) if shared else None), "", True
    f = t.proc.fds.get(s32(fd))
    # do_mmap(): the description's access mode is checked before whether it can be mapped.
    if not f.readable() or (shared and prot & PROT_WRITE and not f.writable()):
        raise SyscallError(errno.EACCES)
    fst = f.stat() if isinstance(f, (HostFile, MemDevice)) else None
    mode = fst.st_mode if fst is not None else 0
    if isinstance(f, MemFd):
        return f.obj, f.path(), True
    if fst is not None and stat.S_ISCHR(mode) and fst.st_rdev == DEV_ZERO:
        # mmap_zero(): a private mapping of /dev/zero is anonymous memory, a shared one
        # is shared anonymous memory (shmem_zero_setup()), as MAP_ANONYMOUS gives.
        return (SharedObject(k.alloc, "/dev/zero (deleted)", size=length) if shared else None), "", True
    if isinstance(f, HostFile) and stat.S_ISREG(mode):
        obj = k.pagecache.object_for(f, want_write=shared and bool(prot & PROT_WRITE))
        return obj, f.path(), on_tmpfs(f.fd)
    # Only regular files have a page cache here: a directory, a FIFO, a pipe, a terminal or
    # another device has no ->mmap (as /dev/null): ENODEV.
    raise SyscallError(errno.ENODEV)


def _range_mapped(addr: int, length: int, overflow: int) -> tuple[int, int]:
    """The range of a call that works on what is mapped there (mprotect, madvise, msync):
    past the end of the address space is only unmapped memory, ENOMEM when the call walks
    it; a length whose page rounding wraps is `overflow` (each call says which)."""
    start = untag(addr)
    if start & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)
    end = start + page_up(length)
    if end >= 1 << 64 or (length and end == start):
        raise SyscallError(overflow)
    return start, end                 # the caller's own checks, then beyond TASK_SIZE: ENOMEM


def _range(addr: int, length: int) -> tuple[int, int]:
    addr = untag(addr)
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(errno.EINVAL)
    end = addr + page_up(length)
    if end > TASK_SIZE or end < addr:
        raise SyscallError(errno.EINVAL)
    return addr, end


@syscall("munmap")
def sys_munmap(k: "KernelApi", t: Thread, addr: int, length: int) -> int:
    if not length:
        raise SyscallError(errno.EINVAL)
    start, end = _range(addr, length)
    t.proc.mm.unmap(start, end)
    return 0


def _covered(mm, start: int, end: int) -> list[Vma]:  # noqa: ANN001
    vmas = mm.vmas.overlapping(start, end)
    pos = start
    for v in vmas:
        if v.start > pos:
            raise SyscallError(errno.ENOMEM)
        pos = v.end
    if pos < end:
        raise SyscallError(errno.ENOMEM)
    return vmas


@syscall("mprotect")
def sys_mprotect(k: "KernelApi", t: Thread, addr: int, length: int, prot: int) -> int:
    start, end = _range_mapped(addr, length, errno.ENOMEM)      # do_mprotect_pkey()
    if start == end:
        return 0                               # before the prot bits are validated
    prot &= 0xFFFF_FFFF
    if prot & ~(PROT_KNOWN | 0x0100_0000 | 0x0200_0000):   # GROWSDOWN/GROWSUP
        raise SyscallError(errno.EINVAL)
    if end > TASK_SIZE:
        raise SyscallError(errno.ENOMEM)
    mm = t.proc.mm
    vmas = _covered(mm, start, end)
    if prot & PROT_MTE and not all(v.mte_allowed for v in vmas):
        raise SyscallError(errno.EINVAL)
    mm.protect(start, end, prot & PROT_VMA)
    return 0


@syscall("mremap")
def sys_mremap(k: "KernelApi", t: Thread, old: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
    mm = t.proc.mm
    old = untag(old)
    if old & (PAGE_SIZE - 1) or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        raise SyscallError(errno.EINVAL)
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        raise SyscallError(errno.EINVAL)
    old_len, new_len = page_up(old_len), page_up(new_len)
    if not new_len:
        raise SyscallError(errno.EINVAL)
    vma = mm.vmas.find(old)
    if vma is None or old + old_len > vma.end:
        raise SyscallError(errno.EFAULT)
    if flags & MREMAP_DONTUNMAP:
        raise SyscallError(errno.EINVAL)
    if flags & MREMAP_FIXED:
        return _mremap_to(mm, vma, old, old_len, new_len, untag(new_addr))
    if new_len <= old_len:
        mm.unmap(old + new_len, old + old_len)
        return old
    if old + old_len == vma.end and mm.vmas.is_free(old + old_len, old + new_len) and old + new_len <= TASK_SIZE:
        vma.end = old + new_len        # grow in place
        return old
    if not flags & MREMAP_MAYMOVE:
        raise SyscallError(errno.ENOMEM)
    dest = mm.get_unmapped_area(new_len)
    if dest is None:
        raise SyscallError(errno.ENOMEM)
    mm.move(old, old + old_len, dest)
    moved = mm.vmas.find(dest)
    assert moved is not None                # just moved there
    moved.end = dest + new_len if moved.end == dest + old_len else moved.end
    return dest


def _mremap_to(mm: Mm, vma: Vma, old: int, old_len: int, new_len: int, new_addr: int) -> int:
    """MREMAP_FIXED: move to new_addr, growing with the VMA's own kind of memory or
    shrinking (mremap_to())."""
    if new_addr & (PAGE_SIZE - 1) or new_addr + new_len > TASK_SIZE:
        raise SyscallError(errno.EINVAL)
    if new_addr < old + old_len and old < new_addr + new_len:
        raise SyscallError(errno.EINVAL)
    mm.move(old, old + min(old_len, new_len), new_addr)
    if new_len > old_len:
        mm.map(Vma(new_addr + old_len, new_addr + new_len, vma.prot, vma.shared, vma.obj,
                   vma.page_index(old) + old_len // PAGE_SIZE, vma.name, mte_allowed=vma.mte_allowed))
    if old_len > new_len:
        mm.unmap(old + new_len, old + old_len)
    return new_addr


MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_FREE, MADV_REMOVE = 8, 9
# 12, 13 (MADV_MERGEABLE, MADV_UNMERGEABLE) are EINVAL: the emulated kernel has no KSM (sysfs.py).
_MADV_ACCEPTED = {0, 1, 2, 3, 10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 100, 101}


@syscall("madvise")
def sys_madvise(k: "KernelApi", t: Thread, addr: int, length: int, advice: int) -> int:
    advice = s32(advice)
    if advice not in (MADV_DONTNEED, MADV_FREE, MADV_REMOVE) and advice not in _MADV_ACCEPTED:
        raise SyscallError(errno.EINVAL)                        # madvise_behavior_valid(): first
    start, end = _range_mapped(addr, length, errno.EINVAL)      # do_madvise()
    if end > TASK_SIZE:
        # The walk reaches [vvar] (VM_PFNMAP) below the stack: DONTNEED/FREE/REMOVE refuse it
        # there (EINVAL), other advice passes and the range's unmapped end is ENOMEM
        # (do_madvise(); both seen with the Linux oracle).
        raise SyscallError(errno.EINVAL if advice in (MADV_DONTNEED, MADV_FREE, MADV_REMOVE) else errno.ENOMEM)
    if end == start:
        return 0
    # do_madvise() walks the range: gaps are skipped and reported as ENOMEM at the end, each
    # mapping gets the advice (or refuses it, and that error ends the walk).
    mm = t.proc.mm
    vmas = mm.vmas.overlapping(start, end)
    pos, gap = start, False
    for v in vmas:
        gap |= v.start > pos
        pos = v.end
        if advice == MADV_REMOVE:
            # madvise_remove(): a hole punched in the backing file, so only a shared,
            # writable mapping of one (shmem included) may; anonymous memory: EINVAL.
            if v.obj is None:
                raise SyscallError(errno.EINVAL)
            if not (v.shared and v.prot & PROT_WRITE):
                raise SyscallError(errno.EACCES)
        if advice in (MADV_DONTNEED, MADV_FREE, MADV_REMOVE):
            # MADV_FREE may drop the pages lazily; dropping them now is one valid outcome.
            mm.discard(max(start, v.start), min(end, v.end))
    if gap or pos < end:
        raise SyscallError(errno.ENOMEM)
    return 0


@syscall("msync")
def sys_msync(k: "KernelApi", t: Thread, addr: int, length: int, flags: int) -> int:
    if flags & ~7 or (flags & 1 and flags & 4):
        raise SyscallError(errno.EINVAL)
    start, end = _range_mapped(addr, length, errno.ENOMEM)      # ksys_msync()
    if end > TASK_SIZE:
        raise SyscallError(errno.ENOMEM)
    if end == start:
        return 0
    for v in _covered(t.proc.mm, start, end):
        if v.shared and v.obj is not None:
            v.obj.writeback(v.page_index(max(start, v.start)), v.page_index(min(end, v.end) - 1))
    return 0


def _ok_if_mapped(t: Thread, addr: int, length: int) -> int:
    start, end = _range(addr & PAGE_MASK, length + (addr & (PAGE_SIZE - 1)))
    _covered(t.proc.mm, start, end)
    return 0


NO_LOCKING = "locked pages are not kept from swap"


@syscall("mlock", support=Support.PARTIAL, note=NO_LOCKING)
def sys_mlock(k: "KernelApi", t: Thread, addr: int, length: int) -> Unmodelled:
    return Unmodelled(_ok_if_mapped(t, addr, length), NO_LOCKING)


@syscall("munlock", support=Support.PARTIAL, note=NO_LOCKING)
def sys_munlock(k: "KernelApi", t: Thread, addr: int, length: int) -> Unmodelled:
    return Unmodelled(_ok_if_mapped(t, addr, length), NO_LOCKING)


@syscall("mincore")
def sys_mincore(k: "KernelApi", t: Thread, addr: int, length: int, vec: int) -> int:
    start, end = _range(addr, length)
    mm = t.proc.mm
    _covered(mm, start, end)
    npages = (end - start) // PAGE_SIZE
    t.proc.mem.check(vec, npages, write=True)
    # Walk whichever is smaller: the range or the page table (a huge sparse mapping).
    out = bytearray(npages)
    lo = start >> 12
    if npages <= len(mm.ptes):
        for i in range(npages):
            pte = mm.ptes.get(lo + i)
            out[i] = pte is not None and pte.present      # swapped out: not resident
    else:
        for vpn, pte in mm.ptes.items():
            if lo <= vpn < lo + npages and pte.present:
                out[vpn - lo] = 1
    t.proc.mem.write(vec, bytes(out))
    return 0
