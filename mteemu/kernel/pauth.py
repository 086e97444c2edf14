"""Pointer authentication as Linux gives it to user space (arch/arm64/kernel/pointer_auth.c).

Every thread has five 128-bit keys (APIA, APIB, APDA, APDB, APGA): random at exec
(ptrauth_thread_init_user()), inherited by fork and clone, replaced by
PR_PAC_RESET_KEYS; and which of the four address keys are enabled (SCTLR_EL1.EnIA,
EnIB, EnDA, EnDB; all of them after exec), changed by PR_PAC_SET_ENABLED_KEYS. The CPU
gets them at every context switch (Cpu.set_pac). Keys come from the kernel's seeded
generator, so a run is reproducible with --seed, as AT_RANDOM is.
"""
from __future__ import annotations

import errno
import random

from mteemu.kernel.uaccess import SyscallError

PR_PAC_RESET_KEYS, PR_PAC_SET_ENABLED_KEYS, PR_PAC_GET_ENABLED_KEYS = 54, 60, 61
PR_PAC_APIAKEY, PR_PAC_APIBKEY, PR_PAC_APDAKEY, PR_PAC_APDBKEY, PR_PAC_APGAKEY = 1, 2, 4, 8, 16
ALL_KEYS = 0x1F
ADDRESS_KEYS = 0xF              # PR_PAC_ENABLED_KEYS_MASK: the generic key cannot be disabled
HWCAP_PACA, HWCAP_PACG = 1 << 30, 1 << 31


def new_keys(rng: random.Random) -> tuple[int, ...]:
    return tuple(rng.getrandbits(128) for _ in range(5))


def reset_keys(keys: tuple[int, ...], which: int, rng: random.Random) -> tuple[int, ...]:
    """ptrauth_prctl_reset_keys(): 0 means every key."""
    if which & ~ALL_KEYS:
        raise SyscallError(errno.EINVAL)
    which = which or ALL_KEYS
    return tuple(rng.getrandbits(128) if which >> i & 1 else key for i, key in enumerate(keys))


def set_enabled(current: int, keys: int, enabled: int) -> int:
    """ptrauth_set_enabled_keys(): the keys named in `keys` become enabled or not."""
    if keys & ~ADDRESS_KEYS or enabled & ~keys:
        raise SyscallError(errno.EINVAL)
    return (current & ~keys) | enabled
