"""Addresses to `function+offset`, from the ELF symbol tables (pyelftools) of the program
and, for a dynamically linked one, of the shared objects mapped in it."""
from __future__ import annotations

import bisect
import os
from functools import lru_cache
from typing import Optional


class Symbolizer:
    def __init__(self, path: str, bias: int) -> None:
        self.bias = bias
        self._starts: list[int] = []
        self._syms: list[tuple[int, int, str]] = []
        try:
            from elftools.elf.elffile import ELFFile
            from elftools.elf.sections import SymbolTableSection

            with open(path, "rb") as f:
                elf = ELFFile(f)
                syms = []
                for sec in elf.iter_sections():
                    if isinstance(sec, SymbolTableSection):
                        for s in sec.iter_symbols():
                            if s["st_info"]["type"] in ("STT_FUNC", "STT_GNU_IFUNC") and s["st_value"] and s.name:
                                syms.append((s["st_value"] + bias, s["st_size"], s.name))
        except Exception:  # noqa: BLE001 - a report without symbols is still a report
            syms = []
        syms.sort()
        self._syms = syms
        self._starts = [s[0] for s in syms]

    def __call__(self, addr: int) -> Optional[str]:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        start, size, name = self._syms[i]
        if size and addr >= start + size:
            return None
        return f"{name}+{addr - start:#x}"


def file_identity(path: str) -> Optional[tuple[int, int, int, int]]:
    """What a cache of a file's contents is keyed by: a descriptor's path (/proc/self/fd/N)
    names other files later. None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def symbolizer(path: str, bias: int) -> Symbolizer:
    """The symbols of the file at `path` (for the kernel, /proc/self/fd/N of a held file),
    cached by the file's identity."""
    return _symbolizer(path, bias, file_identity(path))


@lru_cache(maxsize=8)
def _symbolizer(path: str, bias: int, ident: object) -> Symbolizer:
    return Symbolizer(path, bias)


def for_process(exe: str, bias: int, mappings: list[tuple[int, int, str, int, str]]):  # noqa: ANN201
    """A symbolizer over the program and every file mapped in the process: (start, end,
    name, file page offset, source) per mapping, where `source` is a host path that reads
    the mapped file (the kernel's held descriptor) and `name` is what the guest calls it.
    A shared object's load bias is where its file offset 0 is mapped (its first PT_LOAD:
    vaddr 0 at offset 0, as linkers lay them out); its symbols are shown with its name."""
    bases: dict[str, int] = {}
    for start, _end, _name, pgoff, source in mappings:
        if pgoff == 0 and source != exe:
            bases[source] = min(bases.get(source, start), start)
    main = symbolizer(exe, bias)

    def symbolize(addr: int) -> Optional[str]:
        for start, end, name, _pgoff, source in mappings:
            if start <= addr < end and source in bases:
                found = symbolizer(source, bases[source])(addr)
                return f"{found} ({name.rsplit('/', 1)[-1]})" if found else None
        return main(addr)
    return symbolize
