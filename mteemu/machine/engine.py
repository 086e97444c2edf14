"""The Unicorn engine as mteemu sets it up (the "max" arm64 core, 4 KiB pages, the virtual
TLB, the board's RAM and its tag aliases mapped), and pointer authentication's system
registers (FEAT_PAuth: the trap controls and the thread's keys)."""
from __future__ import annotations

from typing import Any, Callable, Optional

from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, UC_TLB_VIRTUAL, Uc
from unicorn import arm64_const as A

from mteemu.machine.physmem import PAGE_SIZE, PhysMem
from mteemu.machine.tagcheck import ALIAS_BASE, ALIAS_SHIFT

# System registers by (op0, op1, CRn, CRm, op2), and the bits of them mteemu sets.
SCR_EL3, HCR_EL2, SCTLR_EL1 = (3, 6, 1, 1, 0), (3, 4, 1, 1, 0), (3, 0, 1, 0, 0)
SCR_NS, SCR_RW, SCR_API, SCR_APK = 1 << 0, 1 << 10, 1 << 17, 1 << 16
HCR_RW, HCR_API, HCR_APK = 1 << 31, 1 << 41, 1 << 40
SCTLR_EN_BITS = (1 << 31, 1 << 30, 1 << 27, 1 << 13)       # EnIA, EnIB, EnDA, EnDB
SCTLR_EN_ALL = sum(SCTLR_EN_BITS)
# APIAKeyLo_EL1, APIBKeyLo, APDAKeyLo, APDBKeyLo, APGAKeyLo (each Hi is op2 + 1).
PAC_KEY_REGS = ((3, 0, 2, 1, 0), (3, 0, 2, 1, 2), (3, 0, 2, 2, 0), (3, 0, 2, 2, 2), (3, 0, 2, 3, 0))


def new_engine(physmem: PhysMem) -> Any:
    """A Unicorn arm64 engine over the board's RAM (Any: the binding annotates only part
    of its API, e.g. ctl_flush_tb and reg_read_batch)."""
    uc: Any = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    # Order matters: the CPU model and page size must be set before anything
    # initialises the engine (any ctl read does).
    uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)   # LSE atomics etc.; A72 lacks them
    uc.ctl_set_page_size(PAGE_SIZE)            # default is 1 KiB: thrashes the TLB
    uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
    physmem.map_into(uc)
    tagged = tuple(r for r in physmem.tagged_regions)
    for tag in range(16):
        physmem.map_into(uc, ALIAS_BASE + (tag << ALIAS_SHIFT), tagged)
    return uc


class Pauth:
    """FEAT_PAuth's system registers: PAC*/AUT* allowed at the guest's EL, the thread's keys
    and which of them are enabled."""

    def __init__(self, uc: Any, invalidate_code: Callable[[], None]) -> None:
        """Let PAC*/AUT* work at the guest's EL (Unicorn runs it at EL1 of its "max" core).
        QEMU's pauth_check_trap() traps them to EL2 unless HCR_EL2.API, and to EL3 unless
        SCR_EL3.API (Arm ARM D8.x); HCR_EL2 applies only in Non-secure state, so SCR_EL3.NS
        is set, with the RW bits that keep EL2 and EL1 AArch64. The keys (APK) likewise."""
        self.uc = uc
        self.invalidate_code = invalidate_code     # PACIASP and friends are translated by the enable bits
        scr = self.sysreg(SCR_EL3)
        self.sysreg(SCR_EL3, scr | SCR_NS | SCR_RW | SCR_API | SCR_APK)
        self.sysreg(HCR_EL2, HCR_RW | HCR_API | HCR_APK)
        self.current: tuple[tuple[int, ...], int] = ((), -1)

    def sysreg(self, enc: tuple[int, int, int, int, int], value: Optional[int] = None) -> int:
        """Read or write a system register by (op0, op1, CRn, CRm, op2)."""
        op0, op1, crn, crm, op2 = enc
        if value is None:
            return self.uc.reg_read(A.UC_ARM64_REG_CP_REG, (crn, crm, op0, op1, op2, 0))
        self.uc.reg_write(A.UC_ARM64_REG_CP_REG, (crn, crm, op0, op1, op2, value))
        return value

    def set_keys(self, keys: tuple[int, ...], enabled: int) -> None:
        """The thread's five 128-bit keys (APIA, APIB, APDA, APDB, APGA) and which of the
        first four are enabled (PR_PAC_APIAKEY... bits, SCTLR_EL1.EnIA/EnIB/EnDA/EnDB), as
        Linux's ptrauth_thread_switch_user() and ptrauth_keys_install_user() set them."""
        if self.current == (keys, enabled):
            return
        old_enabled = self.current[1]
        self.current = (keys, enabled)
        for enc, key in zip(PAC_KEY_REGS, keys):
            self.sysreg(enc, key & 0xFFFF_FFFF_FFFF_FFFF)
            self.sysreg(enc[:4] + (enc[4] + 1,), key >> 64)
        if enabled != old_enabled:
            sctlr = self.sysreg(SCTLR_EL1) & ~SCTLR_EN_ALL
            for bit, en in enumerate(SCTLR_EN_BITS):
                if enabled >> bit & 1:
                    sctlr |= en
            self.sysreg(SCTLR_EL1, sctlr)
            self.invalidate_code()
