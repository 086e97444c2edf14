"""Unicorn's TLB, one page at a time: QEMU's tlb_flush_page() for the native path.

Unicorn's API flushes its TLB whole (uc_ctl UC_CTL_TLB_FLUSH), and a whole flush costs
about half a millisecond once QEMU's dynamic TLB has grown (it is memset, and the jump
cache with it), then a refill of every page in use. A retag that changes whether a page
may be mapped unchecked concerns that page alone. libunicorn exports QEMU's
`tlb_flush_page_aarch64(CPUState *, target_ulong)`, but not the CPUState: it is the `cpu`
field of the engine's `struct uc_struct` (include/uc_priv.h). Its offset is found, not
assumed: the struct's `tcg_flush_tlb` field holds the address of the exported
`tcg_flush_softmmu_tlb_aarch64`, and `cpu` is the ninth pointer after it (Unicorn
2.1.x); the CPUState found must point back at the engine (its `uc` field). When any of
that does not hold (another Unicorn), None: the native path flushes the whole TLB, as
the pure-Python path always does.
"""
from __future__ import annotations

import ctypes
from typing import Any, Optional

from mteemu.machine import unicorn_shim

_SCAN_WORDS = 128                 # the field is word 46 of struct uc_struct in Unicorn 2.1.4
_CPU_AFTER_FLUSH = 9              # tcg_flush_tlb, uc_invalidate_tb, uc_gen_tb, tb_flush, add/del_inline_hook,
                                  # context_size, context_save, context_restore, then cpu
_BACKPOINTER_WORDS = 8192         # the `uc` field lies within ARMCPU's first 64 KiB (at ~33 KiB;
                                  # the search stops there)


def flush_page_entry(uc: Any) -> Optional[tuple[int, int]]:
    """(address of tlb_flush_page_aarch64, the engine's CPUState) or None."""
    flush_page = unicorn_shim.library_symbol("tlb_flush_page_aarch64")
    flush_all = unicorn_shim.library_symbol("tcg_flush_softmmu_tlb_aarch64")
    handle = unicorn_shim.engine_address(uc)
    if not (flush_page and flush_all and handle):
        return None
    words = (ctypes.c_uint64 * _SCAN_WORDS).from_address(handle)
    try:
        at = list(words).index(flush_all)
    except ValueError:
        return None
    if at + _CPU_AFTER_FLUSH >= _SCAN_WORDS:
        return None
    cpu = words[at + _CPU_AFTER_FLUSH]
    if not cpu or cpu & 7:
        return None
    if handle not in (ctypes.c_uint64 * _BACKPOINTER_WORDS).from_address(cpu):
        return None
    return flush_page, cpu


def flush_all_entry() -> Optional[int]:
    """The address of tcg_flush_softmmu_tlb_aarch64(struct uc_struct *): the whole TLB."""
    return unicorn_shim.library_symbol("tcg_flush_softmmu_tlb_aarch64")
