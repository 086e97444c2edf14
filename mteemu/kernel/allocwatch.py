"""Where the program's allocator is, so that its calls are heard (machine/allochist.py).

The entry points are found by symbol: in a statically linked program's own symbol table,
and in every shared object mapped executable that defines both `malloc` and `free` (glibc's
libc.so.6, through its .dynsym) — at the mmap() that maps its code, before any of it
runs. A program that defines its own malloc has that one heard. A stripped static program
has no symbols: only the tag-store fallback is recorded for it.

A history belongs to an address space (`Mm.alloc_history`): threads and vfork share it,
fork copies it (Mm.fork), exec starts a new one (Programs.exec_image calls `new_program`).
The return trampoline is the `ret` after the sigreturn code in the [vdso] stand-in.
"""
from __future__ import annotations

import struct
from functools import lru_cache
from typing import TYPE_CHECKING, Optional

from mteemu.machine.allochist import DEFAULT_TAG_STORES, OPS
from mteemu.report.symbols import file_identity

if TYPE_CHECKING:
    from mteemu.kernel.mm.addrspace import Mm
    from mteemu.kernel.mm.vma import Vma
    from mteemu.machine.cpu import Cpu

TRAMPOLINE_OFFSET = 8          # programs.VDSO_CODE: mov x8, #139; svc #0; ret


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
SHT_SYMTAB, SHT_DYNSYM, PT_LOAD, PF_X, STT_FUNC = 2, 11, 1, 1, 2


@lru_cache(maxsize=32)
def _entry_points(path: str, ident: object) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[int, int, int], ...]]:
    """(allocator name, st_value) of the file's defined functions, and its executable
    PT_LOADs as (p_offset, p_filesz, p_vaddr); empty unless both malloc and free are there.
    Read with struct, not pyelftools: every exec pays for it, and pyelftools took 0.2 s
    over a static glibc program's symbol table (this: a few ms)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        return _parse(data)
    except (OSError, struct.error, IndexError, ValueError):
        return (), ()


def _parse(data: bytes) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[int, int, int], ...]]:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return (), ()                  # ELF64 little-endian only (what arm64 Linux runs)
    h = _EHDR.unpack_from(data)
    phoff, shoff, phentsize, phnum, shentsize, shnum = h[5], h[6], h[9], h[10], h[11], h[12]
    loads = []
    for i in range(phnum):
        p_type, p_flags, p_offset, p_vaddr, _pa, p_filesz, _mem, _al = _PHDR.unpack_from(data, phoff + i * phentsize)
        if p_type == PT_LOAD and p_flags & PF_X:
            loads.append((p_offset, p_filesz, p_vaddr))
    shdrs = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)] if shoff else []
    found: dict[str, int] = {}
    for sh in shdrs:
        if sh[1] in (SHT_SYMTAB, SHT_DYNSYM) and sh[6] < len(shdrs):
            strtab = shdrs[sh[6]]
            _find_symbols(data[sh[4]:sh[4] + sh[5]], data[strtab[4]:strtab[4] + strtab[5]], found)
    if "malloc" not in found or "free" not in found:
        return (), ()
    return tuple(sorted(found.items())), tuple(loads)


def _find_symbols(table: bytes, names: bytes, found: dict[str, int]) -> None:
    """The allocator's defined functions in one symbol table, into `found`."""
    # Every offset whose string is exactly one of the names (a string table shares
    # tails: "free" may be the end of "cfree").
    wanted: dict[int, str] = {}
    for name in OPS:
        key = name.encode() + b"\0"
        pos = names.find(key)
        while pos >= 0:
            wanted[pos] = name
            pos = names.find(key, pos + 1)
    for st_name, st_info, _other, st_shndx, st_value, _size in _SYM.iter_unpack(table[:len(table) // 24 * 24]):
        sym = wanted.get(st_name)
        if sym is not None and st_value and st_shndx and st_info & 0xF == STT_FUNC:
            found.setdefault(sym, st_value)


def entry_points(path: str) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[int, int, int], ...]]:
    """_entry_points, cached by the file's identity (a descriptor's path names other files later)."""
    ident = file_identity(path)
    return _entry_points(path, ident) if ident is not None else ((), ())


class AllocWatch:
    """Gives each address space its history and tells the CPU which addresses to hook."""

    def __init__(self, cpu: "Cpu", calls: int) -> None:
        self.cpu, self.calls = cpu, calls          # calls: events kept; 0: no history

    def new_program(self, mm: "Mm", exe_source: str, bias: int, static: bool) -> None:
        """exec: a new history; a static program's allocator is its own."""
        if mm.alloc_history is not None:
            mm.alloc_history.close()
        mm.alloc_history = None
        if not self.calls:
            return
        mm.alloc_history = self.cpu.allocs.new_history(self.calls, DEFAULT_TAG_STORES)
        if static:
            names, _loads = entry_points(exe_source)
            self._add(mm, {bias + value: OPS[name] for name, value in names})

    def mapped(self, mm: "Mm", vma: "Vma", source: Optional[str]) -> None:
        """mmap() of a file with PROT_EXEC: a shared object whose code defines the allocator."""
        if mm.alloc_history is None or source is None:
            return
        names, loads = entry_points(source)
        off = vma.pgoff * 4096
        for p_offset, p_filesz, p_vaddr in loads:
            if p_offset <= off < p_offset + p_filesz:
                base = vma.start - off - (p_vaddr - p_offset)
                table = {base + value: OPS[name] for name, value in names}
                if table and all(vma.start <= a < vma.end for a in table):
                    self._add(mm, table)
                return

    def _add(self, mm: "Mm", table: dict[int, int]) -> None:
        h = mm.alloc_history
        if not table or h is None:
            return
        merged = {**h.table, **table}
        if len(merged) > 16:
            return                 # more than one allocator mapped: the first ones are heard
        trampoline = mm.sigreturn_trampoline + TRAMPOLINE_OFFSET
        h.set_table(merged, trampoline)
        self.cpu.allocs.watch(set(merged) | {trampoline})
