"""The arm64 rt_sigframe, laid out as Linux's arch/arm64/kernel/signal.c builds it.

    struct rt_sigframe { struct siginfo info; struct ucontext uc; }       // 128 + 4560
    struct ucontext   { u64 uc_flags; u64 uc_link; stack_t uc_stack;     // at +128
                        sigset_t uc_sigmask; u8 __unused[120];
                        struct sigcontext uc_mcontext; }                 // at +304 (16-aligned)
    struct sigcontext { u64 fault_address; u64 regs[31]; u64 sp, pc, pstate;
                        u8 __reserved[4096] (16-aligned) }                // records: fpsimd, esr, end

Below the frame's top sits a frame record {fp, lr} so that unwinders walk through
the signal, and x29 points at it, as setup_return() does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

SIGINFO_SIZE = 128
UC_OFF = SIGINFO_SIZE
UC_STACK_OFF = UC_OFF + 16
UC_SIGMASK_OFF = UC_OFF + 40
MCONTEXT_OFF = UC_OFF + 176
SC_FAULT_ADDR = MCONTEXT_OFF
SC_REGS = MCONTEXT_OFF + 8
SC_SP = SC_REGS + 31 * 8
SC_PC = SC_SP + 8
SC_PSTATE = SC_PC + 8
SC_RESERVED = MCONTEXT_OFF + 288
RESERVED_SIZE = 4096
FRAME_SIZE = SC_RESERVED + RESERVED_SIZE      # sizeof(struct rt_sigframe) = 4688

FPSIMD_MAGIC, FPSIMD_SIZE = 0x46508001, 528
ESR_MAGIC, ESR_SIZE = 0x45535201, 16

# Linux's signal_minsigstksz for this frame: frame + frame record + 16 (AT_MINSIGSTKSZ).
MINSIGSTKSZ = FRAME_SIZE + 16 + 16

PSTATE_NZCV_MASK = 0xF000_0000
PSTATE_TCO = 1 << 25         # PSR_TCO_BIT: saved and restored with the frame


@dataclass
class CpuState:
    """Everything a signal frame saves and rt_sigreturn restores."""

    x: list[int]          # x0..x30
    sp: int
    pc: int
    pstate: int           # NZCV (and, with MTE, TCO)
    v: list[int]          # q0..q31 as 128-bit integers
    fpsr: int
    fpcr: int


def build(info: bytes, state: CpuState, sigmask: int, altstack: tuple[int, int, int],
          fault_address: int, esr: int) -> bytes:
    """The bytes of an rt_sigframe (the caller writes them at the frame's address)."""
    frame = bytearray(FRAME_SIZE)
    frame[0:SIGINFO_SIZE] = info
    ss_sp, ss_flags, ss_size = altstack
    struct.pack_into("<QIIQ", frame, UC_STACK_OFF, ss_sp, ss_flags, 0, ss_size)
    struct.pack_into("<Q", frame, UC_SIGMASK_OFF, sigmask)
    struct.pack_into("<Q", frame, SC_FAULT_ADDR, fault_address)
    struct.pack_into("<31Q", frame, SC_REGS, *state.x)
    struct.pack_into("<QQQ", frame, SC_SP, state.sp, state.pc, state.pstate)
    off = SC_RESERVED
    struct.pack_into("<IIII", frame, off, FPSIMD_MAGIC, FPSIMD_SIZE, state.fpsr, state.fpcr)
    for i, q in enumerate(state.v):
        frame[off + 16 + 16 * i: off + 32 + 16 * i] = q.to_bytes(16, "little")
    off += FPSIMD_SIZE
    if esr:
        struct.pack_into("<IIQ", frame, off, ESR_MAGIC, ESR_SIZE, esr)
        off += ESR_SIZE
    struct.pack_into("<II", frame, off, 0, 0)     # terminator
    return bytes(frame)


class BadFrame(Exception):
    """rt_sigreturn found a frame Linux would refuse (it then sends SIGSEGV)."""


def parse(frame: bytes) -> tuple[CpuState, int]:
    """(saved state, saved signal mask) from an rt_sigframe."""
    if len(frame) < FRAME_SIZE:
        raise BadFrame("short frame")
    (sigmask,) = struct.unpack_from("<Q", frame, UC_SIGMASK_OFF)
    x = list(struct.unpack_from("<31Q", frame, SC_REGS))
    sp, pc, pstate = struct.unpack_from("<QQQ", frame, SC_SP)
    v: list[int] = []
    fpsr = fpcr = 0
    off = SC_RESERVED
    while off + 8 <= SC_RESERVED + RESERVED_SIZE:
        magic, size = struct.unpack_from("<II", frame, off)
        if magic == 0:
            break
        if size < 8 or off + size > SC_RESERVED + RESERVED_SIZE:
            raise BadFrame("bad record size")
        if magic == FPSIMD_MAGIC:
            if size != FPSIMD_SIZE:
                raise BadFrame("bad fpsimd record")
            fpsr, fpcr = struct.unpack_from("<II", frame, off + 8)
            v = [int.from_bytes(frame[off + 16 + 16 * i: off + 32 + 16 * i], "little") for i in range(32)]
        off += size
    if not v:
        raise BadFrame("no fpsimd record")   # Linux requires it
    return CpuState(x, sp, pc, pstate, v, fpsr, fpcr), sigmask


def altstack_of(frame: bytes) -> tuple[int, int, int]:
    ss_sp, ss_flags, _pad, ss_size = struct.unpack_from("<QIIQ", frame, UC_STACK_OFF)
    return ss_sp, ss_flags, ss_size
