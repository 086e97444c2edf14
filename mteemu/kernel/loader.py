"""Load a static arm64 ELF and build the initial stack, as Linux's binfmt_elf does.

Supports ET_EXEC and static-PIE ET_DYN; a program with PT_INTERP (dynamically
linked) is refused. Every structural problem becomes one ElfError line.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Optional

from mteemu.errors import ElfError, InputError
from mteemu.inputs import read_fd
from mteemu.kernel.mm.addrspace import TASK_SIZE, Mm
from mteemu.kernel.mm.vma import PROT_EXEC, PROT_READ, PROT_WRITE, Vma
from mteemu.kernel.sigframe import MINSIGSTKSZ
from mteemu.machine.physmem import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from mteemu.kernel.fs.exefile import ExeFile

EM_AARCH64 = 183
ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_INTERP, PT_PHDR = 1, 3, 6
PF_X, PF_W, PF_R = 1, 2, 4

ELF_ET_DYN_BASE = (2 * TASK_SIZE // 3) & ~0xFFFF   # arm64: where static-PIE programs go
STACK_SIZE = 8 << 20                             # RLIMIT_STACK
MMAP_GAP = 128 << 20                             # mmap_base = STACK_TOP - gap (MIN_GAP)

# AT_* auxiliary vector types
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_EXECFN, AT_MINSIGSTKSZ = 23, 25, 26, 31, 51

# What the emulated CPU (Unicorn's "max" arm64 core) really implements. SVE is left out:
# glibc would pick SVE string routines, and Unicorn's SVE at this level is untested.
# FP ASIMD AES PMULL SHA1 SHA2 CRC32
HWCAP = ((1 << 0) | (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7)
         | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 12) | (1 << 15) | (1 << 16)    # ATOMICS FPHP ASIMDHP RDM LRCPC DCPOP
         | (1 << 20)                                                             # ASIMDDP
         | (1 << 30) | (1 << 31))                                                # PACA PACG (Cpu.set_pac)
HWCAP2_MTE = 1 << 18
HWCAP2 = HWCAP2_MTE

_MACHINES = {3: "x86 (i386)", 62: "x86-64", 40: "32-bit Arm", 243: "RISC-V", 8: "MIPS", 20: "PowerPC",
             21: "PowerPC64", 22: "s390"}


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int


@dataclass(frozen=True)
class ElfImage:
    path: str
    data: bytes
    etype: int
    entry: int
    phoff: int
    phnum: int
    segments: tuple[Segment, ...]
    phdr_vaddr: int | None
    interp: str | None = None       # PT_INTERP: the program interpreter (dynamic linker) it names
    source: object = None           # the held file it was read from (an ExeFile): the mappings' symbols


MAX_PROGRAM = 1 << 30      # bytes: larger ELF files are refused before reading


def read_program(exe: "ExeFile") -> ElfImage:
    """The ELF image of a held program file (named by what the guest calls it)."""
    return replace(parse_elf(exe.name, read_fd(exe.fd, exe.name, "a program", MAX_PROGRAM)), source=exe)


def parse_elf(path: str, data: bytes) -> ElfImage:
    _check_ident(path, data)
    # The ELF64 header and program headers (System V gABI), read with struct: importing
    # pyelftools costs 25 ms of every start, and the loader needs nothing else from it.
    try:
        etype, mnum = struct.unpack_from("<HH", data, 16)
        entry, phoff = struct.unpack_from("<QQ", data, 24)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
        _check_header(path, etype, mnum, phentsize, phnum, phoff, len(data))
        segments, phdr_vaddr, interp = _program_headers(path, data, phoff, phnum)
    except struct.error as e:
        raise ElfError(f"{path}: malformed ELF file ({e})") from None
    if not segments:
        raise ElfError(f"{path}: no loadable segments")
    segments.sort(key=lambda s: s.vaddr)
    for a, b in zip(segments, segments[1:]):
        if a.vaddr + a.memsz > b.vaddr:
            raise ElfError(f"{path}: overlapping segments at {b.vaddr:#x}")
    if not any(s.vaddr <= entry < s.vaddr + s.memsz and s.flags & PF_X for s in segments):
        raise ElfError(f"{path}: entry point {entry:#x} is not in an executable segment")
    return ElfImage(path, data, etype, entry, phoff, phnum, tuple(segments), phdr_vaddr, interp)


def _check_ident(path: str, data: bytes) -> None:
    """e_ident: an ELF, 64-bit, little-endian."""
    if data[:4] != b"\x7fELF":
        raise ElfError(f"{path}: not an ELF file")
    if len(data) < 64:
        raise ElfError(f"{path}: truncated ELF header")
    if data[4] != 2:
        raise ElfError(f"{path}: a 32-bit ELF; mteemu runs 64-bit arm64 (aarch64) programs")
    if data[5] != 1:
        raise ElfError(f"{path}: a big-endian ELF; mteemu runs little-endian arm64 programs")


def _check_header(path: str, etype: int, mnum: int, phentsize: int, phnum: int, phoff: int, size: int) -> None:
    if mnum != EM_AARCH64:
        what = _MACHINES.get(mnum, f"machine {mnum}")
        raise ElfError(f"{path}: an {what} ELF; mteemu runs arm64 (aarch64) programs")
    if etype not in (ET_EXEC, ET_DYN):
        raise ElfError(f"{path}: not an executable (ELF type {etype})")
    if phentsize != 56:
        raise ElfError(f"{path}: bad program header size {phentsize}")
    if phnum == 0 or phnum > 1024 or phoff + 56 * phnum > size:
        raise ElfError(f"{path}: program headers lie outside the file")


def _program_headers(path: str, data: bytes, phoff: int,
                     phnum: int) -> tuple[list[Segment], Optional[int], Optional[str]]:
    """The PT_LOAD segments, PT_PHDR's address and PT_INTERP's path."""
    segments = []
    phdr_vaddr = interp = None
    for i in range(phnum):
        ptype, pflags, poffset, pvaddr, _paddr, pfilesz, pmemsz, _align = \
            struct.unpack_from("<IIQQQQQQ", data, phoff + 56 * i)
        if ptype == PT_INTERP:
            if poffset + pfilesz > len(data) or not 1 < pfilesz <= 4096:
                raise ElfError(f"{path}: malformed PT_INTERP")
            interp = data[poffset:poffset + pfilesz].rstrip(b"\0").decode(errors="replace")
        if ptype == PT_PHDR:
            phdr_vaddr = pvaddr
        if ptype == PT_LOAD:
            seg = Segment(pvaddr, pmemsz, poffset, pfilesz, pflags)
            _check_segment(path, seg, len(data))
            segments.append(seg)
    return segments, phdr_vaddr, interp


def _check_segment(path: str, s: Segment, size: int) -> None:
    if s.offset + s.filesz > size:
        raise ElfError(f"{path}: segment at {s.vaddr:#x} extends past the end of the file")
    if s.filesz > s.memsz:
        raise ElfError(f"{path}: segment at {s.vaddr:#x} has file size larger than memory size")
    if s.vaddr % PAGE_SIZE != s.offset % PAGE_SIZE:
        raise ElfError(f"{path}: segment at {s.vaddr:#x} is misaligned with its file offset")
    if s.vaddr + s.memsz > TASK_SIZE // 2 or s.memsz > (1 << 34):
        raise ElfError(f"{path}: segment at {s.vaddr:#x} does not fit in the user address space")


def _prot(flags: int) -> int:
    return (PROT_READ if flags & PF_R else 0) | (PROT_WRITE if flags & PF_W else 0) | \
           (PROT_EXEC if flags & PF_X else 0)


def poke(mm: Mm, addr: int, data: bytes) -> None:
    """Write into a process's memory ignoring protections (the kernel filling in pages)."""
    pos = 0
    while pos < len(data):
        vpn = (addr + pos) >> PAGE_SHIFT
        off = (addr + pos) & (PAGE_SIZE - 1)
        n = min(len(data) - pos, PAGE_SIZE - off)
        pte = mm.pt.populate(vpn)
        mm.physmem.page(pte.pfn)[off:off + n] = data[pos:pos + n]
        pos += n


@dataclass
class LoadedProgram:
    entry: int
    sp: int
    brk: int
    bias: int = 0                # load bias (static-PIE), for symbolizing addresses
    auxv: bytes = b""            # the auxiliary vector as pushed (/proc/<pid>/auxv)
    arg_range: tuple[int, int] = (0, 0)   # mm->arg_start/arg_end (/proc/<pid>/cmdline)
    env_range: tuple[int, int] = (0, 0)   # mm->env_start/env_end (/proc/<pid>/environ)


def _map_segments(mm: Mm, image: ElfImage, bias: int) -> int:
    """Map and fill an ELF's PT_LOAD segments at bias; the end of the highest one."""
    end = 0
    for s in image.segments:
        start = (bias + s.vaddr) & PAGE_MASK
        stop = (bias + s.vaddr + s.memsz + PAGE_SIZE - 1) & PAGE_MASK
        prot = _prot(s.flags)
        for vma in mm.vmas.overlapping(start, stop):   # segments sharing a page
            mm.protect(vma.start, vma.end, vma.prot | prot)
            start = max(start, vma.end)
        if start < stop:
            mm.map(Vma(start, stop, prot, name=image.path, file=image.source))
        poke(mm, bias + s.vaddr, image.data[s.offset:s.offset + s.filesz])
        end = max(end, bias + s.vaddr + s.memsz)
    return end


def load(mm: Mm, image: ElfImage, argv: list[bytes], envp: list[bytes], execfn: bytes,
         random_bytes: bytes, interp: ElfImage | None = None) -> LoadedProgram:
    """load_elf_binary(): the program (and its interpreter, for a dynamically linked one:
    mapped below the mmap base, entered first, told where the program is by the auxv)."""
    bias = 0
    if image.etype == ET_DYN:
        bias = ELF_ET_DYN_BASE - (image.segments[0].vaddr & PAGE_MASK)
    end = _map_segments(mm, image, bias)
    brk = (end + PAGE_SIZE - 1) & PAGE_MASK
    mm.brk_start = mm.brk = brk

    stack_top = TASK_SIZE
    mm.stack_top = stack_top
    # VM_STACK_FLAGS include VM_MTE_ALLOWED on arm64: the stack may be mprotect(PROT_MTE)ed.
    mm.map(Vma(stack_top - STACK_SIZE, stack_top, PROT_READ | PROT_WRITE, name="[stack]", growsdown=True,
               mte_allowed=True))
    mm.mmap_base = stack_top - MMAP_GAP
    interp_base = 0
    entry = bias + image.entry
    if interp is not None:
        if interp.etype != ET_DYN:
            raise ElfError(f"{interp.path}: the program interpreter must be position independent")
        lo = interp.segments[0].vaddr & PAGE_MASK
        span = ((interp.segments[-1].vaddr + interp.segments[-1].memsz + PAGE_SIZE - 1) & PAGE_MASK) - lo
        base = mm.get_unmapped_area(span)
        if base is None:
            raise ElfError(f"{interp.path}: no room for the program interpreter")
        interp_base = base - lo
        _map_segments(mm, interp, interp_base)
        entry = interp_base + interp.entry

    if image.phdr_vaddr is not None:
        phdr = bias + image.phdr_vaddr
    else:
        phdr = next((bias + s.vaddr + image.phoff - s.offset for s in image.segments
                     if s.offset <= image.phoff < s.offset + s.filesz), 0)

    # Strings at the top: execfn, then envp and argv strings (create_elf_tables order).
    p = stack_top - 8
    blob_strings = []

    def push(data: bytes) -> int:
        nonlocal p
        p -= len(data)
        blob_strings.append((p, data))
        return p

    execfn_addr = push(execfn + b"\0")
    env_addrs = [push(e + b"\0") for e in reversed(envp)][::-1]
    arg_addrs = [push(a + b"\0") for a in reversed(argv)][::-1]
    platform_addr = push(b"aarch64\0")
    p &= ~15
    random_addr = push(random_bytes[:16])
    p &= ~15
    aux = [(AT_MINSIGSTKSZ, MINSIGSTKSZ), (AT_HWCAP, HWCAP), (AT_PAGESZ, PAGE_SIZE), (AT_CLKTCK, 100),
           (AT_PHDR, phdr), (AT_PHENT, 56), (AT_PHNUM, image.phnum), (AT_BASE, interp_base), (AT_FLAGS, 0),
           (AT_ENTRY, bias + image.entry), (AT_UID, os.getuid()), (AT_EUID, os.geteuid()),
           (AT_GID, os.getgid()), (AT_EGID, os.getegid()), (AT_SECURE, 0), (AT_RANDOM, random_addr),
           (AT_HWCAP2, HWCAP2), (AT_EXECFN, execfn_addr), (AT_PLATFORM, platform_addr), (AT_NULL, 0)]
    words = [len(argv)] + arg_addrs + [0] + env_addrs + [0] + [v for kv in aux for v in kv]
    sp = (p - 8 * len(words)) & ~15
    if stack_top - sp > STACK_SIZE // 4:
        raise InputError("arguments and environment are too large for the stack")
    for addr, data in blob_strings:
        poke(mm, addr, data)
    poke(mm, sp, struct.pack(f"<{len(words)}Q", *words))
    arg_range = (arg_addrs[0], arg_addrs[-1] + len(argv[-1]) + 1) if argv else (0, 0)
    env_range = (env_addrs[0], env_addrs[-1] + len(envp[-1]) + 1) if envp else (arg_range[1], arg_range[1])
    auxv = struct.pack(f"<{2 * len(aux)}Q", *[v for kv in aux for v in kv])
    return LoadedProgram(entry=entry, sp=sp, brk=brk, bias=bias, auxv=auxv,
                         arg_range=arg_range, env_range=env_range)
