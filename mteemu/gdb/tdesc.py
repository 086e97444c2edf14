"""The target description mteemu gives GDB, and the register numbering it fixes.

GDB's AArch64 Linux target needs the features named here (gdb/features/aarch64-*.xml
define them; these are written from GDB's manual, "AArch64 Features"): `core` (x0-x30,
sp, pc, cpsr), `fpu` (v0-v31, fpsr, fpcr), `mte` (tag_ctl, the thread's
PR_GET_TAGGED_ADDR_CTRL value) and `pauth` (the PAC bit masks, so GDB strips signed
return addresses when it unwinds). The `mte` feature is what makes GDB turn its memory
tagging support on: the `memory-tag` commands and the tag report on SEGV_MTESERR.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from mteemu.kernel.ptrace import CPSR, PAUTH_CMASK, PAUTH_DMASK, TAG_CTL
from mteemu.machine import arm64 as C


@dataclass(frozen=True)
class Reg:
    name: str
    bits: int
    key: Union[int, str]          # a Unicorn register id, or ptrace.CPSR / ptrace.TAG_CTL


REGS: tuple[Reg, ...] = (
    *(Reg(f"x{i}", 64, C.X_REGS[i]) for i in range(31)),
    Reg("sp", 64, C.REG_SP), Reg("pc", 64, C.REG_PC), Reg("cpsr", 32, CPSR),
    *(Reg(f"v{i}", 128, C.Q_REGS[i]) for i in range(32)),
    Reg("fpsr", 32, C.REG_FPSR), Reg("fpcr", 32, C.REG_FPCR),
    Reg("tag_ctl", 64, TAG_CTL),
    Reg("pauth_dmask", 64, PAUTH_DMASK), Reg("pauth_cmask", 64, PAUTH_CMASK),
)

_TYPES = {"x29": "data_ptr", "x30": "code_ptr", "sp": "data_ptr", "pc": "code_ptr"}

_FPU_TYPES = """
    <vector id="v2d" type="ieee_double" count="2"/><vector id="v2u" type="uint64" count="2"/>
    <vector id="v2i" type="int64" count="2"/><vector id="v4f" type="ieee_single" count="4"/>
    <vector id="v4u" type="uint32" count="4"/><vector id="v4i" type="int32" count="4"/>
    <vector id="v8u" type="uint16" count="8"/><vector id="v8i" type="int16" count="8"/>
    <vector id="v16u" type="uint8" count="16"/><vector id="v16i" type="int8" count="16"/>
    <vector id="v1u" type="uint128" count="1"/><vector id="v1i" type="int128" count="1"/>
    <union id="vnd"><field name="f" type="v2d"/><field name="u" type="v2u"/><field name="s" type="v2i"/></union>
    <union id="vns"><field name="f" type="v4f"/><field name="u" type="v4u"/><field name="s" type="v4i"/></union>
    <union id="vnh"><field name="u" type="v8u"/><field name="s" type="v8i"/></union>
    <union id="vnb"><field name="u" type="v16u"/><field name="s" type="v16i"/></union>
    <union id="vnq"><field name="u" type="v1u"/><field name="s" type="v1i"/></union>
    <union id="aarch64v"><field name="d" type="vnd"/><field name="s" type="vns"/>
      <field name="h" type="vnh"/><field name="b" type="vnb"/><field name="q" type="vnq"/></union>"""


def _reg_xml(n: int, r: Reg) -> str:
    if r.name.startswith("v"):
        kind = "aarch64v"
    elif r.name in ("tag_ctl", "pauth_dmask", "pauth_cmask"):
        kind = "uint64"
    else:
        kind = _TYPES.get(r.name, "int" if r.bits == 32 else "uint64")
    extra = ' group="system" save-restore="no"' if r.name == "tag_ctl" else ""
    return f'    <reg name="{r.name}" bitsize="{r.bits}" type="{kind}" regnum="{n}"{extra}/>'


def target_xml() -> str:
    def feature(name: str, first: int, last: int, types: str = "") -> str:
        regs = "\n".join(_reg_xml(n, REGS[n]) for n in range(first, last))
        return f'  <feature name="org.gnu.gdb.aarch64.{name}">{types}\n{regs}\n  </feature>'
    return "\n".join([
        '<?xml version="1.0"?>',
        '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
        "<target>",
        "  <architecture>aarch64</architecture>",
        "  <osabi>GNU/Linux</osabi>",
        feature("core", 0, 34),
        feature("fpu", 34, 68, _FPU_TYPES),
        feature("mte", 68, 69),
        feature("pauth", 69, 71),
        "</target>",
        ""])
