"""A tiny interpreter for the plain instructions found between MTE instructions.

Every MTE instruction costs an exception round trip out of Unicorn (~8 µs, see the
design notes). glibc tags memory with short loops — `st2g; st2g!; subs; b.hi` — and
straight runs of STG, so after emulating one MTE instruction the CPU keeps going
here while the next instruction is either another MTE instruction or one of the few
plain ones below, and returns to Unicorn at the first anything-else. A tagging loop
then costs one exception instead of one per granule pair.

Each function follows the Arm ARM pseudocode for its instruction class. Only
register-only instructions are interpreted: no memory access happens here, so no
tag check or fault can be missed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from mteemu.machine import encodings as E

if TYPE_CHECKING:
    from mteemu.machine.insn_context import InsnContext

MASK64 = (1 << 64) - 1
NOP = 0xD503201F


def _sext(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


def condition_holds(cond: int, nzcv: int) -> bool:
    """Arm ARM ConditionHolds()."""
    n, z, c, v = nzcv >> 31 & 1, nzcv >> 30 & 1, nzcv >> 29 & 1, nzcv >> 28 & 1
    base = cond >> 1
    result = (z == 1, c == 1, n == 1, v == 1, c == 1 and z == 0, n == v, n == v and z == 0, True)[base]
    if cond & 1 and cond != 0xF:
        result = not result
    return result


def _add_sub_imm(cpu: "InsnContext", word: int) -> None:
    """ADD/ADDS/SUB/SUBS (immediate), CMP/CMN."""
    sf, sub, setflags = word >> 31, word >> 30 & 1, word >> 29 & 1
    imm = (word >> 10 & 0xFFF) << (12 if word >> 22 & 1 else 0)
    rn, rd = word >> 5 & 31, word & 31
    width = 64 if sf else 32
    mask = (1 << width) - 1
    a = cpu.xr(rn, sp=True) & mask
    b = (~imm & mask) if sub else imm
    _finish_add(cpu, rd, a, b, 1 if sub else 0, width, setflags, sp=True)


def _shifted(value: int, kind: int, amount: int, width: int) -> int:
    """Arm ARM ShiftReg(): LSL, LSR, ASR, ROR of a width-bit value."""
    mask = (1 << width) - 1
    value &= mask
    if kind == 0:
        return (value << amount) & mask
    if kind == 1:
        return value >> amount
    if kind == 2:
        return (_sext(value, width) >> amount) & mask
    return ((value >> amount) | (value << (width - amount))) & mask


def _add_sub_reg(cpu: "InsnContext", word: int) -> bool:
    """ADD/ADDS/SUB/SUBS (shifted register), CMP/CMN/NEG (register 31 is XZR here)."""
    sf, sub, setflags = word >> 31, word >> 30 & 1, word >> 29 & 1
    kind, amount = word >> 22 & 3, word >> 10 & 0x3F
    width = 64 if sf else 32
    if kind == 3 or amount >= width:
        return False                                             # reserved encodings
    mask = (1 << width) - 1
    a = cpu.xr(word >> 5 & 31) & mask
    m = _shifted(cpu.xr(word >> 16 & 31), kind, amount, width)
    b = (~m & mask) if sub else m
    _finish_add(cpu, word & 31, a, b, 1 if sub else 0, width, setflags, sp=False)
    return True


def _logical_reg(cpu: "InsnContext", word: int) -> None:
    """AND/ORR/EOR/ANDS (shifted register) and their inverted forms BIC/ORN/EON/BICS, MOV."""
    sf, opc, invert = word >> 31, word >> 29 & 3, word >> 21 & 1
    width = 64 if sf else 32
    mask = (1 << width) - 1
    a = cpu.xr(word >> 5 & 31) & mask
    m = _shifted(cpu.xr(word >> 16 & 31), word >> 22 & 3, word >> 10 & 0x3F, width)
    if invert:
        m = ~m & mask
    result = (a & m, a | m, a ^ m, a & m)[opc]
    if opc == 3:
        cpu.set_nzcv(result >> (width - 1) & 1, int(result == 0), 0, 0)
    cpu.xw(word & 31, result)


def _finish_add(cpu: "InsnContext", rd: int, a: int, b: int, carry_in: int, width: int, setflags: int,
                sp: bool) -> None:
    mask = (1 << width) - 1
    unsigned = a + b + carry_in
    result = unsigned & mask
    if setflags:
        signed = _sext(a, width) + _sext(b, width) + carry_in
        cpu.set_nzcv(result >> (width - 1) & 1, int(result == 0), int(unsigned != result),
                     int(_sext(result, width) != signed))
        cpu.xw(rd, result)                 # Rd 31 is XZR for the flag-setting forms
    else:
        cpu.xw(rd, result, sp=sp)


Op = Callable[["InsnContext", int], Optional[int]]     # (cpu, pc) -> next pc, or None: not ours


def compile_op(word: int) -> Op:
    """The instruction as a function, its fields decoded once (the CPU caches it by PC)."""
    if word & 0x1F800000 == 0x11000000:                          # ADD/SUB (immediate): the hot one
        sf, sub, setflags = word >> 31, word >> 30 & 1, word >> 29 & 1
        imm = (word >> 10 & 0xFFF) << (12 if word >> 22 & 1 else 0)
        rn, rd = word >> 5 & 31, word & 31
        width = 64 if sf else 32
        mask = (1 << width) - 1
        b = (~imm & mask) if sub else imm

        def add_sub_imm(cpu: "InsnContext", pc: int) -> int:
            _finish_add(cpu, rd, cpu.xr(rn, sp=True) & mask, b, sub, width, setflags, sp=True)
            return pc + 4
        return add_sub_imm
    return lambda cpu, pc: step(cpu, word, pc)


def step(cpu: "InsnContext", word: int, pc: int) -> Optional[int]:
    """Execute one plain instruction; the next PC, or None if it is not one of ours."""
    if word & 0x1F800000 == 0x11000000:                          # ADD/SUB (immediate)
        _add_sub_imm(cpu, word)
        return pc + 4
    if word & 0x1F200000 == 0x0B000000:                          # ADD/SUB (shifted register)
        return pc + 4 if _add_sub_reg(cpu, word) else None
    if word & 0x1F000000 == 0x0A000000:                          # logical (shifted register)
        if not word >> 31 and word >> 15 & 1:
            return None                                          # 32-bit with imm6 >= 32: reserved
        _logical_reg(cpu, word)
        return pc + 4
    if word & 0xFF000010 == 0x54000000:                          # B.cond
        if condition_holds(word & 0xF, cpu.nzcv()):
            return (pc + _sext(word >> 5 & 0x7FFFF, 19) * 4) & MASK64
        return pc + 4
    if word & 0xFC000000 == 0x14000000:                          # B
        return (pc + _sext(word & 0x3FFFFFF, 26) * 4) & MASK64
    if word & 0x7E000000 == 0x34000000:                          # CBZ / CBNZ
        value = cpu.xr(word & 31) & (MASK64 if word >> 31 else 0xFFFF_FFFF)
        if (value == 0) != bool(word >> 24 & 1):
            return (pc + _sext(word >> 5 & 0x7FFFF, 19) * 4) & MASK64
        return pc + 4
    if word & 0x7E000000 == 0x36000000:                          # TBZ / TBNZ
        bit = (word >> 31) << 5 | (word >> 19 & 31)
        if (cpu.xr(word & 31) >> bit & 1) == (word >> 24 & 1):
            return (pc + _sext(word >> 5 & 0x3FFF, 14) * 4) & MASK64
        return pc + 4
    if word & E.SYS_XT_MASK == E.MRS_DCZID:                      # MRS Xt, DCZID_EL0
        cpu.xw(word & 31, (cpu.dcz_block // 4).bit_length() - 1)
        return pc + 4
    if word == NOP:
        return pc + 4
    return None
