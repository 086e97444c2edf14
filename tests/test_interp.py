"""The plain-instruction interpreter (machine/interp.py) against Unicorn itself: for random
encodings of every class it handles and random register values, running the instruction
natively and interpreting it give the same registers, SP and flags."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_PROT_ALL, Uc
from unicorn import arm64_const as A

from mteemu.machine import interp

X = [getattr(A, f"UC_ARM64_REG_X{i}") for i in range(29)] + [A.UC_ARM64_REG_X29, A.UC_ARM64_REG_X30]
CODE = 0x10000


class FakeCpu:
    """What interp needs from the CPU, over a plain dict of registers."""

    dcz_block = 64

    def __init__(self, regs: list[int], sp: int, nzcv: int) -> None:
        self.regs, self.sp, self.flags = list(regs), sp, nzcv

    def xr(self, n: int, sp: bool = False) -> int:
        return (self.sp if sp else 0) if n == 31 else self.regs[n]

    def xw(self, n: int, value: int, sp: bool = False) -> None:
        if n == 31:
            if sp:
                self.sp = value & (2**64 - 1)
            return
        self.regs[n] = value & (2**64 - 1)

    def nzcv(self) -> int:
        return self.flags

    def set_nzcv(self, n: int, z: int, c: int, v: int) -> None:
        self.flags = n << 31 | z << 30 | c << 29 | v << 28


_uc = None


def native(word: int, regs: list[int], sp: int, nzcv: int) -> tuple[list[int], int, int, int]:
    global _uc
    if _uc is None:
        _uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
        _uc.mem_map(CODE, 0x1000, UC_PROT_ALL)
    uc = _uc
    uc.ctl_remove_cache(CODE, CODE + 0x1000)
    uc.mem_write(CODE, struct.pack("<I", word))
    for r, v in zip(X, regs):
        uc.reg_write(r, v)
    uc.reg_write(A.UC_ARM64_REG_SP, sp)
    uc.reg_write(A.UC_ARM64_REG_NZCV, nzcv)
    uc.emu_start(CODE, CODE + 4, count=1)
    return [uc.reg_read(r) for r in X], uc.reg_read(A.UC_ARM64_REG_SP), \
        uc.reg_read(A.UC_ARM64_REG_NZCV) & 0xF000_0000, uc.reg_read(A.UC_ARM64_REG_PC)


values = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1, 2**31, 2**32 - 1, 0x7FFF_FFFF]))
regs = st.lists(values, min_size=31, max_size=31)


def _check(word: int, r: list[int], sp: int, nzcv: int) -> None:
    cpu = FakeCpu(r, sp, nzcv)
    nxt = interp.step(cpu, word, CODE)
    if nxt is None:
        return                                   # not ours (a reserved form): nothing to compare
    want_regs, want_sp, want_nzcv, want_pc = native(word, r, sp, nzcv)
    assert cpu.regs == want_regs, hex(word)
    assert cpu.sp == want_sp and cpu.flags == want_nzcv and nxt == want_pc, hex(word)


@pytest.mark.slow             # seconds of emulation: not the fast layer
@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1), regs, values, st.integers(0, 15))
def test_add_sub_immediate(bits: int, r: list[int], sp: int, flags: int) -> None:
    _check((bits & ~0x1F800000) | 0x11000000, r, sp & ~15, flags << 28)


@pytest.mark.slow             # seconds of emulation: not the fast layer
@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1), regs, values, st.integers(0, 15))
def test_add_sub_shifted_register(bits: int, r: list[int], sp: int, flags: int) -> None:
    _check((bits & ~0x1F200000) | 0x0B000000, r, sp & ~15, flags << 28)


@pytest.mark.slow             # seconds of emulation: not the fast layer
@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1), regs, values, st.integers(0, 15))
def test_logical_shifted_register(bits: int, r: list[int], sp: int, flags: int) -> None:
    _check((bits & ~0x1F000000) | 0x0A000000, r, sp & ~15, flags << 28)


@pytest.mark.slow             # seconds of emulation: not the fast layer
@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), regs, st.integers(0, 15))
def test_branches(bits: int, r: list[int], flags: int) -> None:
    # B.cond, CBZ/CBNZ, TBZ/TBNZ with small offsets (inside the mapped page).
    small = bits & 0x3F
    for word in (0x54000000 | small << 5 | (bits >> 8) & 0xF,                       # B.cond
                 (bits & 0x81000000) | 0x34000000 | small << 5 | (bits >> 10) & 31,  # CBZ/CBNZ
                 (bits & 0x81F80000) | 0x36000000 | small << 5 | (bits >> 12) & 31):  # TBZ/TBNZ
        _check(word, r, 0x1000, flags << 28)
