"""Mutation fuzzing of the ELF loader: headers, program headers, segment sizes and
offsets pointing outside the file, overlapping segments, entries outside any segment.
Every case must load or end in an ElfError/InputError (one line, exit 2) — never any
other exception. Used by the tests and scripts/fuzz elf."""
from __future__ import annotations

import random
import struct

from mteemu.board.model import default_board
from mteemu.errors import MteEmuError
from mteemu.kernel import loader
from mteemu.kernel.kernel import Kernel
from mteemu.kernel.run import RunOptions

# Offsets of interesting ELF64 header fields: type, machine, entry, phoff, phentsize, phnum.
_HEADER_FIELDS = [(16, 2), (18, 2), (24, 8), (32, 8), (54, 2), (56, 2)]
_PHDR_FIELDS = [(0, 4), (4, 4), (8, 8), (16, 8), (32, 8), (40, 8), (48, 8)]   # type flags off vaddr filesz memsz align
_VALUES = [0, 1, 0xFFFF, 0xFFFF_FFFF, 2**63, 2**64 - 1, 0x1000, 0x40_0000, 0xFFFF_FFFF_F000, 1 << 48]


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    phoff, phnum = struct.unpack_from("<QH", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0:
            off, size = rng.choice(_HEADER_FIELDS)
        elif op in (1, 2) and phnum:
            field, size = rng.choice(_PHDR_FIELDS)
            off = phoff + 56 * rng.randrange(phnum) + field
        elif op == 3:
            cut = rng.randrange(len(b))
            del b[cut:]                                     # truncated
            continue
        else:
            pos = rng.randrange(min(len(b), 4096))          # anywhere in the headers
            b[pos] = rng.randrange(256)
            continue
        if off + size > len(b):
            continue
        value = rng.choice(_VALUES + [rng.randrange(1 << (8 * size))]) & ((1 << (8 * size)) - 1)
        b[off:off + size] = value.to_bytes(size, "little")
    return bytes(b)


def run(elf: bytes, cases: int, seed: int = 2026) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"loaded": 0, "rejected": 0}
    kernel = Kernel(default_board(), RunOptions(mem_limit=64 << 20))
    for _ in range(cases):
        data = mutate(elf, rng)
        try:
            image = loader.parse_elf("fuzz.elf", data)
            mm = kernel.new_mm()
            loader.load(mm, image, [b"fuzz"], [], b"fuzz", bytes(16))
            mm.destroy()
            counts["loaded"] += 1
        except MteEmuError:
            counts["rejected"] += 1
    return counts
