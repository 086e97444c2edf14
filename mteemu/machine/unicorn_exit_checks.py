"""Unicorn's check for a stop request after every memory access, switched off where
nothing can ask for one.

Unicorn 2 emits a call of `helper_check_exit_request()` after each guest load and store
(and after each code hook) so that a memory hook's `uc_emu_stop()` ends the run before
the next instruction (tcg-op.c: check_exit_request()). Every translation block also checks
at its start (gen_tb_start()). mteemu asks for a stop inside a block only from its
memory hooks (the tag check, a debugger's watchpoints) and its code hooks (breakpoints,
single steps); until one of those exists, the per-access call is pure cost: 35 % of an
untagged memset/memcpy loop's time on these machines (0.89 -> 0.58 s for 200 rounds over
8 MiB). A scheduler's instruction budget then ends at the block's end instead of the
instruction (it is a time slice, not a promise).

The switch is the engine's `no_exit_request` field (include/uc_priv.h), which Unicorn
itself sets only for AArch32 IT blocks; it is read when code is translated, so blocks
translated with it set must be flushed before a hook that needs the checks is added. The
field is not in Unicorn's API: it is found, not assumed, nine words into the run of
fields `target_page_size` (4096), `target_page_align` (4095), `qemu_host_page_size` and
`qemu_real_host_page_size` (4096 each), and only used when the flags beside it read as
they must (hook_insert 0, first_tb 0, no_exit_request 0, init_done 1; Unicorn 2.1.x).
"""
from __future__ import annotations

import ctypes
from typing import Any, Optional

from mteemu.machine import unicorn_shim

_SCAN_WORDS = 16384               # 32-bit words: the fields lie ~10 KiB into struct uc_struct
_FLAGS_AT = 48                    # bytes from target_page_size to hook_insert (x86-64 layout)


def flag_address(uc: Any) -> Optional[int]:
    """The address of the engine's `no_exit_request` byte, or None."""
    handle = unicorn_shim.engine_address(uc)
    if not handle:
        return None
    words = (ctypes.c_uint32 * _SCAN_WORDS).from_address(handle)
    for i in range(0, _SCAN_WORDS - 16, 2):          # target_page_size is 8-byte aligned here
        if words[i] == 4096 and words[i + 1] == 4095 and words[i + 2:i + 6] == [4096, 0, 4096, 0]:
            flags = (ctypes.c_uint8 * 4).from_address(handle + 4 * i + _FLAGS_AT)
            if list(flags) == [0, 0, 0, 1]:
                return handle + 4 * i + _FLAGS_AT + 2
            return None
    return None


def set_checks(address: Optional[int], on: bool) -> None:
    """Per-access exit checks in code translated from now on (flush what was translated)."""
    if address is not None:
        ctypes.c_uint8.from_address(address).value = 0 if on else 1


# skip_sync_pc_on_exit is the struct's last field, after jmp_bufs[64] (200 bytes each on
# x86-64 glibc) and a few words: looked for in this window after no_exit_request, a byte
# at a time (a bulk copy would read past the struct's end, which AddressSanitizer reports).
_SKIP_FROM, _SKIP_WINDOW = 64 * 200 - 64, 320


def skip_sync_flag_address(uc: Any, exit_flag: Optional[int], pc_reg: int) -> Optional[int]:
    """The engine's `skip_sync_pc_on_exit` byte, or None. uc_reg_write(PC) sets it (and
    `quit_request`) until the next uc_emu_start; while it is set, a memory hook sees the PC
    of the last block boundary, not of its access (a sync tag fault reported one block
    early: issue 25). Found by writing the PC before any run and seeing which byte of the
    struct's tail turns from 0 to 1: the first such byte, since nothing else in the tail
    changes and the field is the struct's last (a byte past the struct's end may change
    too: the binding lets go of the GIL in uc_reg_write, and another thread of ours may
    write the heap there - once in a CI run); confirmed by a second write, cleared again."""
    if exit_flag is None:
        return None
    window = (ctypes.c_uint8 * _SKIP_WINDOW).from_address(exit_flag + _SKIP_FROM)
    before = [window[i] for i in range(_SKIP_WINDOW)]
    uc.reg_write(pc_reg, uc.reg_read(pc_reg))
    set_now = [i for i in range(_SKIP_WINDOW) if (before[i], window[i]) == (0, 1)]
    if not set_now:
        return None
    address = exit_flag + _SKIP_FROM + set_now[0]
    flag = ctypes.c_uint8.from_address(address)
    flag.value = 0
    uc.reg_write(pc_reg, uc.reg_read(pc_reg))
    confirmed = flag.value == 1
    flag.value = 0
    return address if confirmed else None


def clear(address: Optional[int]) -> None:
    if address is not None:
        ctypes.c_uint8.from_address(address).value = 0
