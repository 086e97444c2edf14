"""Byte-mutation fuzzing of the device-tree reader: every input must end as a board or
a BoardError (one line), never any other exception. Used by the tests (a few thousand
cases) and by scripts/fuzz boards (as many as you like)."""
from __future__ import annotations

import random
from typing import Callable

from mteemu.board import binding, dt, rules
from mteemu.board.build import board_from_layout
from mteemu.errors import BoardError


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        if not b:
            b += bytes([rng.randrange(256)])
        pos = rng.randrange(len(b))
        if op == 0:
            b[pos] = rng.randrange(256)                            # a random byte
        elif op == 1:
            b[pos] ^= 1 << rng.randrange(8)                        # a bit flip
        elif op == 2:
            del b[pos:pos + rng.randint(1, 16)]                    # a hole
        elif op == 3:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4:
            n = rng.randint(1, 64)                                 # a repeated chunk
            b[pos:pos] = b[pos:pos + n]
        else:
            word = rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 1, 2, 3, 0x100000])
            b[pos & ~3:(pos & ~3) + 4] = word.to_bytes(4, "big")   # an interesting big-endian cell
    return bytes(b)


def check(data: bytes, parse: Callable[[bytes], dt.DeviceTree]) -> str:
    """'board', 'findings' or 'rejected'; anything but BoardError propagates (a bug)."""
    try:
        layout = binding.scan(parse(data))
        findings = rules.validate(layout)
        board_from_layout(layout, "fuzz")
        return "findings" if rules.errors(findings) else "board"
    except BoardError:
        return "rejected"


def run(seeds: list[bytes], cases: int, seed: int = 2026) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"board": 0, "findings": 0, "rejected": 0}
    for i in range(cases):
        data = mutate(seeds[i % len(seeds)], rng)
        if data[:4] == dt.DTB_MAGIC:
            counts[check(data, dt.parse_dtb)] += 1
        else:
            counts[check(data, lambda d: dt.parse_dts(d.decode("utf-8", "replace")))] += 1
    return counts
