"""Everything mteemu uses of the Unicorn binding that is not its public API, in one place:
the engine's C handle and library (for hooks in C and registers without the binding's
per-call costs), the binding's stored hook exception, a saved context's registers at their
real width, and releasing an engine now. The struct layouts read through the handle are
unicorn_tlb.py's and unicorn_exit_checks.py's (each checks what it finds and falls back).
Written against `PINNED`; tests/test_unicorn_shim.py fails on another version, so that
an upgrade is a decision, not an accident.
"""
from __future__ import annotations

import ctypes
from typing import Any, Optional

from unicorn import UcError
from unicorn.unicorn_const import UC_ERR_OK
from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

PINNED = "2.1.4"


def engine_address(uc: Any) -> int:
    """The engine's `struct uc_struct *` (uc_engine), 0 for a closed one."""
    return ctypes.cast(uc._uch, ctypes.c_void_p).value or 0


def library_symbol(name: str) -> Optional[int]:
    """The address of a function libunicorn exports (QEMU's own, e.g. tlb_flush_page_aarch64)."""
    try:
        return ctypes.cast(getattr(uclib, name), ctypes.c_void_p).value
    except AttributeError:
        return None


def keep_hook_exception(uc: Any, e: BaseException) -> None:
    """What the binding does when its own hook raises: keep the first exception for
    emu_start's caller (a C hook's Python callback must do the same)."""
    if uc._hook_exception is None:
        uc._hook_exception = e


def hook_exception(uc: Any) -> Optional[BaseException]:
    return uc._hook_exception


def add_c_hook(uc: Any, kind: int, fn: int, user_data: int, begin: int = 1, end: int = 0) -> int:
    """uc_hook_add() with a C function: Unicorn calls it without any Python frame."""
    handle = uc_hook_h()
    status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), kind, ctypes.c_void_p(fn), ctypes.c_void_p(user_data),
                               ctypes.c_uint64(begin), ctypes.c_uint64(end))
    if status != UC_ERR_OK:
        raise UcError(status)
    return handle.value


def reg_write_u64(uc: Any, reg: int, box: ctypes.c_uint64) -> None:
    """uc_reg_write() of a 64-bit register from a buffer made once (the binding's costs µs)."""
    uclib.uc_reg_write(uc._uch, reg, ctypes.byref(box))


def reg_read_batch(uc: Any, ids: Any, ptrs: Any, count: int) -> None:
    """uc_reg_read_batch() into buffers made once."""
    uclib.uc_reg_read_batch(uc._uch, ids, ptrs, count)


def reg_access_functions() -> tuple[int, int]:
    """The addresses of uc_reg_read and uc_reg_write, for C."""
    read, write = library_symbol("uc_reg_read"), library_symbol("uc_reg_write")
    assert read and write
    return read, write


def context_reg(uc: Any, ctx: Any, reg: int) -> int:
    """A register of a saved UcContext at its real width (a context alone reads every
    register as 64 bits: the V registers need the arm64 register class)."""
    return ctx._reg_read(reg, uc._select_reg_class(reg), None)


def release(uc: Any) -> None:
    """uc_close() now, once (the binding's finalizer: the collector will not close it again)."""
    finalizer = getattr(uc, "_Uc__finalizer", None)
    if finalizer is not None:
        finalizer()
