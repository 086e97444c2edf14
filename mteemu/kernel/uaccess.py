"""copy_from_user / copy_to_user: the kernel's view of a process's memory.

Accesses go through the same fault handler as the CPU, so a syscall buffer in
not-yet-touched memory is paged in, copy-on-write is broken by kernel writes, and a
bad pointer becomes EFAULT (never a signal), as in Linux.

With MTE, the kernel's own accesses to user memory (LDTR/STTR on hardware) are tag
checked like the program's, but a synchronous tag-check fault inside the kernel
becomes EFAULT through the uaccess fixup rather than a signal. In asynchronous mode
Linux does not check them at all (the fault would surface later, unattributed).
"""
from __future__ import annotations

import errno
import struct

from mteemu.kernel.mm.addrspace import TOP_BYTE_MASK, Fault, Mm
from mteemu.machine.arm64 import ACCESS_READ, ACCESS_WRITE, Translation
from mteemu.machine.physmem import PAGE_SHIFT, PAGE_SIZE


def s32(v: int) -> int:
    """An `int` argument (the low 32 bits of its register, signed)."""
    v &= 0xFFFF_FFFF
    return v - (1 << 32) if v & (1 << 31) else v


def s64(v: int) -> int:
    """A `long` or `loff_t` argument."""
    return v - (1 << 64) if v & (1 << 63) else v


class SyscallError(Exception):
    """A syscall fails with -errno."""

    def __init__(self, err: int) -> None:
        super().__init__(errno.errorcode.get(err, str(err)))
        self.errno = err


def efault() -> SyscallError:
    return SyscallError(errno.EFAULT)


class UserMemory:
    """A process's memory as seen from a syscall."""

    def __init__(self, mm: Mm) -> None:
        self.mm = mm
        # PR_TAGGED_ADDR_ENABLE: without it, a pointer with a non-zero top byte is not
        # a user address (access_ok fails), as Linux's tagged address ABI says.
        self.tagged_addr_abi = False
        # Tag-check uaccess reads / writes (set per syscall from the calling thread).
        self.check_reads = self.check_writes = False
        self._tag = 0
        # (page, access) -> the fault handler's answer and the page's RAM, while no
        # translation of the mm changed (Mm.gen) and no page moved (PageAllocator.remap_gen):
        # a system call's buffers cost a dict lookup a page, as the CPU's accesses a TLB hit.
        self._pages: dict[tuple[int, int], tuple[Translation, memoryview]] = {}
        self._mm_gen = self._remap_gen = -1

    def _untag(self, addr: int) -> int:
        if addr >> 56 and not self.tagged_addr_abi:
            raise efault()
        self._tag = (addr >> 56) & 0xF
        return addr & TOP_BYTE_MASK

    def _lookup(self, addr: int, access: int) -> "tuple[Translation, memoryview] | Fault":
        mm = self.mm
        gen, remap = mm.gen, mm.alloc.remap_gen
        if gen != self._mm_gen or remap != self._remap_gen:
            self._pages.clear()
            self._mm_gen, self._remap_gen = gen, remap
        key = (addr >> PAGE_SHIFT, access)
        hit = self._pages.get(key)
        if hit is not None:
            return hit
        res = self._resolve(addr, access)
        if isinstance(res, Fault):
            return res
        hit = (res, mm.physmem.page(res[0] >> PAGE_SHIFT))
        if mm.gen == gen and mm.alloc.remap_gen == remap:
            self._pages[key] = hit
        return hit

    def _resolve(self, addr: int, access: int) -> "Translation | Fault":
        """The fault handler's answer (a user access: no FOLL_FORCE)."""
        return self.mm.fault(addr, access)

    def _fault(self, addr: int, access: int) -> "Translation | Fault":
        hit = self._lookup(addr, access)
        return hit if isinstance(hit, Fault) else hit[0]

    def _page(self, addr: int, access: int, length: int = 0) -> memoryview:
        hit = self._lookup(addr, access)
        if isinstance(hit, Fault):
            raise efault()
        (pa, _perms, tagged), page = hit
        if tagged and length and (self.check_writes if access == ACCESS_WRITE else self.check_reads):
            if self.mm.alloc.tags.mismatch(pa | (addr & (PAGE_SIZE - 1)), length, self._tag) is not None:
                raise efault()
        return page

    def span(self, addr: int, length: int, write: bool) -> "memoryview | None":
        """[addr, addr+length) as the RAM it is in, when it lies in one page that the
        access may use whole (mapped, and its tags match where they are checked): the
        common small buffer, copied with one slice. None sends the caller to the general
        path (read/write/accessible), which finds the short count or the EFAULT."""
        if addr >> 56 and not self.tagged_addr_abi:
            return None
        off = addr & (PAGE_SIZE - 1)
        if length <= 0 or off + length > PAGE_SIZE:
            return None
        self._tag = (addr >> 56) & 0xF
        addr &= TOP_BYTE_MASK
        access = ACCESS_WRITE if write else ACCESS_READ
        mm = self.mm
        hit = self._pages.get((addr >> PAGE_SHIFT, access)) \
            if mm.gen == self._mm_gen and mm.alloc.remap_gen == self._remap_gen else None
        if hit is None or hit[0][2]:
            try:        # a miss, or tagged memory: the whole way (resolve, check the tags)
                return self._page(addr, access, length)[off:off + length]
            except SyscallError:
                return None
        return hit[1][off:off + length]

    def read(self, addr: int, length: int) -> bytes:
        if length <= 0:
            return b""
        addr = self._untag(addr)
        out = bytearray()
        while length > 0:
            off = addr & (PAGE_SIZE - 1)
            n = min(length, PAGE_SIZE - off)
            out += self._page(addr, ACCESS_READ, n)[off:off + n]
            addr += n
            length -= n
        return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        addr = self._untag(addr)
        pos = 0
        while pos < len(data):
            off = addr & (PAGE_SIZE - 1)
            n = min(len(data) - pos, PAGE_SIZE - off)
            self._page(addr, ACCESS_WRITE, n)[off:off + n] = data[pos:pos + n]
            addr += n
            pos += n

    def accessible(self, addr: int, length: int, write: bool) -> int:
        """How many bytes from addr the kernel can copy before a fault or a tag-check
        mismatch (copy_to/from_user's short count); EFAULT if not even the first."""
        if length <= 0:
            return 0
        start = addr = self._untag(addr)
        end = addr + length
        access = ACCESS_WRITE if write else ACCESS_READ
        while addr < end:
            n = min(end - addr, PAGE_SIZE - (addr & (PAGE_SIZE - 1)))
            try:
                self._page(addr, access, n)
            except SyscallError:
                # Within the page, the granules before the mismatching one were fine.
                res = self._fault(addr, access)
                if isinstance(res, Fault):
                    break
                bad = self.mm.alloc.tags.mismatch(res[0] | (addr & (PAGE_SIZE - 1)), n, self._tag)
                addr = addr if bad is None else (addr & ~(PAGE_SIZE - 1)) | (bad & (PAGE_SIZE - 1))
                break
            addr += n
        if addr == start:
            raise efault()
        return addr - start

    def check(self, addr: int, length: int, write: bool) -> None:
        """Fault in [addr, addr+length) without copying (access_ok + fault-in)."""
        addr = self._untag(addr)
        end = addr + length
        page = addr & ~(PAGE_SIZE - 1)
        while page < end:
            self._page(page, ACCESS_WRITE if write else ACCESS_READ)
            page += PAGE_SIZE

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string (strncpy_from_user); ENAMETOOLONG past limit."""
        addr = self._untag(addr)
        out = bytearray()
        while len(out) < limit:
            off = addr & (PAGE_SIZE - 1)
            chunk = bytes(self._page(addr, ACCESS_READ)[off:])
            nul = chunk.find(b"\0")
            self._page(addr, ACCESS_READ, nul + 1 if nul >= 0 else len(chunk))   # tag check what was read
            if nul >= 0:
                out += chunk[:nul]
                if len(out) >= limit:
                    break
                return bytes(out)
            out += chunk
            addr += len(chunk)
        raise SyscallError(errno.ENAMETOOLONG)

    def read_struct(self, fmt: str, addr: int) -> tuple:
        return struct.unpack(fmt, self.read(addr, struct.calcsize(fmt)))

    def write_struct(self, fmt: str, addr: int, *values: int) -> None:
        self.write(addr, struct.pack(fmt, *values))

    def u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def put_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFF_FFFF).to_bytes(4, "little"))

    def put_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & ((1 << 64) - 1)).to_bytes(8, "little"))

    def read_ptr_array(self, addr: int, limit: int = 1 << 16) -> list[int]:
        """A NULL-terminated array of pointers (argv, envp)."""
        out: list[int] = []
        while True:
            p = self.u64(addr + 8 * len(out))
            if p == 0:
                return out
            out.append(p)
            if len(out) > limit:
                raise SyscallError(errno.E2BIG)


class RemoteMemory(UserMemory):
    """access_remote_vm() with FOLL_FORCE: the kernel reading or writing another process's
    pages (/proc/<pid>/mem, ptrace), without the tagged-address ABI's or MTE's checks; a
    write may go into a private read-only mapping (a debugger's breakpoint)."""

    def __init__(self, mm: Mm) -> None:
        super().__init__(mm)
        self.tagged_addr_abi = True

    def _resolve(self, addr: int, access: int) -> "Translation | Fault":
        return self.mm.fault_forced(addr, access)
