"""The native hot path (`_native.c`), loaded with ctypes, and the choice between it and the
pure-Python reference.

The library is built when mteemu is installed (setup.py: an optional setuptools
extension, so a machine without a compiler still installs, and runs the Python path).
`MTEEMU_PURE_PYTHON=1` forces the Python path; `MTEEMU_NATIVE_LIB=FILE` loads another
build of the same source (the sanitizer build in the tests). Nothing above `machine/`
knows which path runs; `mteemu --version` and `mteemu bench` say it.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path
from typing import Any, Callable, Optional

HOOKMEM = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int, ctypes.c_int64,
                           ctypes.c_void_p)
HOOKINTR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
TRANSLATE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint64, ctypes.c_int)
TAGS_CHANGED = ctypes.CFUNCTYPE(None, ctypes.c_uint64)


class TlbEntry(ctypes.Structure):
    """struct uc_tlb_entry (unicorn.h)."""

    _fields_ = (("paddr", ctypes.c_uint64), ("perms", ctypes.c_uint32))


TLBFILL = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(TlbEntry),
                           ctypes.c_void_p)
_U64P = ctypes.POINTER(ctypes.c_uint64)


def _library_path() -> Optional[Path]:
    forced = os.environ.get("MTEEMU_NATIVE_LIB")
    if forced:
        return Path(forced)
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = here / f"_native{suffix}"
        if candidate.exists():
            return candidate
    return None


_CTX = ctypes.c_void_p
_NONE = (1 << 64) - 1         # mte_first_mismatch(): every granule matched


def _declare(lib: ctypes.CDLL) -> None:
    """The library's C signatures (every function but mte_new takes the CPU's context)."""
    sigs: dict[str, tuple[list, Any]] = {
        "mte_new": ([], _CTX), "mte_free": ([_CTX], None),
        "mte_set_spans": ([_CTX, ctypes.c_int, _U64P, _U64P, _U64P, _U64P], ctypes.c_int),
        "mte_set_fallback": ([_CTX, HOOKMEM], None),
        "mte_first_mismatch": ([_CTX, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint], ctypes.c_uint64),
        "mte_log_append": ([_CTX, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_uint32], None),
        "mte_log_count": ([_CTX], ctypes.c_uint),
        "mte_log_get": ([_CTX, ctypes.c_uint, _U64P, ctypes.c_char_p], ctypes.c_int),
        "mte_log_clear": ([_CTX], None),
        "mte_stats": ([_CTX, _U64P], None),
        "mte_set_banks": ([_CTX, ctypes.c_int, _U64P, _U64P, _U64P], ctypes.c_int),
        "mte_set_cpu": ([_CTX, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int,
                         ctypes.c_int, ctypes.c_int, TRANSLATE, HOOKINTR, TAGS_CHANGED, ctypes.c_uint64],
                        None),
        "mte_set_insns": ([_CTX, ctypes.c_int, ctypes.c_uint, ctypes.c_int], None),
        "mte_note_page": ([_CTX, ctypes.c_uint64, ctypes.c_int, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int], None),
        "mte_alias_va": ([_CTX, ctypes.c_uint64], ctypes.c_uint64),
        "mte_note_alias": ([_CTX, ctypes.c_uint64, ctypes.c_uint64], ctypes.c_int),
        "mte_is_direct": ([_CTX, ctypes.c_uint64], ctypes.c_int),
        "mte_flush_page": ([_CTX, ctypes.c_uint64], ctypes.c_int),
        "mte_seed_irg": ([_CTX, ctypes.c_uint64], None),
        "mte_random_tag": ([_CTX, ctypes.c_uint], ctypes.c_uint),
        "mte_flush_tlb": ([_CTX], None),
        "mte_mark_direct": ([_CTX, ctypes.c_uint64, ctypes.c_uint64], None),
        "mte_set_unicorn_flush_page": ([_CTX, ctypes.c_void_p, ctypes.c_void_p], None),
        "mte_set_unicorn_flush_all": ([_CTX, ctypes.c_void_p], None),
        "mte_set_skip_sync": ([_CTX, ctypes.c_void_p], None),
        "mte_insn_stats": ([_CTX, _U64P], None),
        "mte_set_fill_fallback": ([_CTX, TLBFILL], None),
        "mte_fill_stats": ([_CTX, _U64P], None),
        "mte_page_flush_count": ([_CTX, _U64P], None),
        "mte_syscall_block": ([_CTX], ctypes.c_void_p),
        "mte_fast_block": ([_CTX], ctypes.c_void_p),
        # the allocation history (_allochist.c; allochist.py)
        "ah_new": ([ctypes.c_uint32, ctypes.c_uint32], ctypes.c_void_p), "ah_free": ([ctypes.c_void_p], None),
        "ah_clone": ([ctypes.c_void_p], ctypes.c_void_p),
        "ah_set_table": ([ctypes.c_void_p, ctypes.c_int, _U64P, ctypes.POINTER(ctypes.c_uint32), ctypes.c_uint64],
                         ctypes.c_int),
        "ah_count": ([ctypes.c_void_p, ctypes.c_int], ctypes.c_uint),
        "ah_get": ([ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p], ctypes.c_int),
        "ah_add_tag_write": ([ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64,
                              _U64P], None),
        "mte_set_history": ([_CTX, ctypes.c_void_p, ctypes.c_uint32], None),
        "mte_drop_history": ([_CTX, ctypes.c_void_p], None),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res


class Native:
    """One CPU's native state (a `struct mte_ctx`, owned by this object: freed by close()),
    its configuration, the undo log, and the hooks' addresses. Unicorn hands `ctx` back to
    the hooks as their user_data."""

    def __init__(self, lib: ctypes.CDLL, path: Path) -> None:
        self.lib, self.path = lib, path
        self.ctx: Optional[int] = lib.mte_new()
        if not self.ctx:
            raise MemoryError("mte_new")
        self.check_hook = address_of(lib.mte_check_access)
        self.fill_hook = address_of(lib.mte_on_fill)
        self.intr_hook = address_of(lib.mte_on_intr)
        self.ah_hook = address_of(lib.ah_on_code)
        # The C callbacks installed now, one per slot: they live as long as the context.
        self._keep: dict[str, object] = {}

    def close(self) -> None:
        """Free the context; its CPU's engine must already be closed (no hook can run)."""
        if self.ctx:
            self.lib.mte_free(self.ctx)
            self.ctx = None
            self._keep.clear()

    def __del__(self) -> None:
        self.close()

    def set_spans(self, spans: list[tuple[int, int, int, int]]) -> None:
        """(base, end, host address of the tag bytes, host address of RAM at base) per span."""
        cols = [(ctypes.c_uint64 * max(1, len(spans)))(*(s[i] for s in spans)) for i in range(4)]
        if self.lib.mte_set_spans(self.ctx, len(spans), *cols) != 0:
            raise ValueError(f"too many tag spans for the native path: {len(spans)}")

    def first_mismatch(self, pa: int, length: int, tag: int) -> Optional[int]:
        """TagStore.mismatch() in C (mte_first_mismatch): one call per syscall buffer page."""
        bad = self.lib.mte_first_mismatch(self.ctx, pa, length, tag)
        return None if bad == _NONE else bad

    def set_fallback(self, fn: Callable[[int, int, int, int, int, int], None]) -> None:
        cb = HOOKMEM(fn)
        self._keep["fallback"] = cb
        self.lib.mte_set_fallback(self.ctx, cb)

    def set_fill_fallback(self, fn: Callable[[int, int, int, "ctypes._Pointer[TlbEntry]", int], bool]) -> None:
        cb = TLBFILL(fn)
        self._keep["fill"] = cb
        self.lib.mte_set_fill_fallback(self.ctx, cb)

    def set_banks(self, banks: list[tuple[int, int, int]]) -> None:
        """(base, end, host address) of every RAM bank, for STZG's zeroing and STGP's data."""
        cols = [(ctypes.c_uint64 * max(1, len(banks)))(*(b[i] for b in banks)) for i in range(3)]
        if self.lib.mte_set_banks(self.ctx, len(banks), *cols) != 0:
            raise ValueError(f"too many memory banks for the native path: {len(banks)}")

    def set_cpu(self, reg_read: int, reg_write: int, x_ids: list[int], sp: int, pc: int, nzcv: int,
                translate: Callable[[int, int], int], intr_fallback: Callable[[int, int, int], None],
                tags_changed: Callable[[int], None], dcz_block: int) -> None:
        """Registers (libunicorn's uc_reg_read/uc_reg_write and the ids), the kernel's
        translation for the software TLB, the Python interrupt hook, what to call when a
        tag write lands in a page mapped unchecked that C cannot drop from the TLB alone
        (a whole flush), and the DC GVA block size."""
        callbacks = (TRANSLATE(translate), HOOKINTR(intr_fallback), TAGS_CHANGED(tags_changed))
        self._keep["cpu"] = callbacks
        self.lib.mte_set_cpu(self.ctx, reg_read, reg_write, (ctypes.c_int * 31)(*x_ids), sp, pc, nzcv, *callbacks,
                             dcz_block)

    def set_insns(self, enabled: bool, exclude: int, checking: bool) -> None:
        """Whether MTE instructions run here (not while tag storage is guarded), GCR_EL1.Exclude,
        and whether the thread's accesses are tag checked (fills place pages by it)."""
        self.lib.mte_set_insns(self.ctx, int(enabled), exclude & 0xFFFF, int(checking))

    def seed_irg(self, state: int) -> None:
        self.lib.mte_seed_irg(self.ctx, state)

    def random_tag(self, exclude: int) -> int:
        """IRG's next tag from this CPU's generator (for an IRG Python executes)."""
        return int(self.lib.mte_random_tag(self.ctx, exclude & 0xFFFF))

    def note_page(self, vaddr: int, access: int, pa: int, perms: int, tagged: bool) -> None:
        """The kernel's translation of vaddr's page: fills of it under other tags are C's."""
        self.lib.mte_note_page(self.ctx, vaddr, access, pa, perms, int(tagged))

    def alias_va(self, alias_page: int) -> Optional[int]:
        """The tagged virtual page C filled an alias page for, if it did."""
        va = self.lib.mte_alias_va(self.ctx, alias_page)
        return None if va == (1 << 64) - 1 else va

    def note_alias(self, alias_page: int, va_page: int) -> None:
        """An alias page Python filled: C checks accesses that cross out of it too."""
        self.lib.mte_note_alias(self.ctx, alias_page, va_page)

    def is_direct(self, pfn: int) -> bool:
        return bool(self.lib.mte_is_direct(self.ctx, pfn))

    def flush_page(self, pfn: int) -> bool:
        """Forget the fills and the straight-to-RAM mark of one physical page; True when
        Unicorn's TLB entries for it were dropped too (else the caller flushes it whole)."""
        return bool(self.lib.mte_flush_page(self.ctx, pfn))

    def flush_tlb(self) -> None:
        self.lib.mte_flush_tlb(self.ctx)

    def mark_direct(self, pfn: int, va: int) -> None:
        """The page pfn is filled straight to RAM (unchecked) for the tagged page of va."""
        self.lib.mte_mark_direct(self.ctx, pfn, va)

    def set_unicorn_flush_page(self, fn: int, cpu_state: int) -> None:
        """QEMU's tlb_flush_page() and the CPUState to call it with (cpu.py finds them)."""
        self.lib.mte_set_unicorn_flush_page(self.ctx, fn, cpu_state)

    def set_unicorn_flush_all(self, fn: int) -> None:
        """QEMU's whole-TLB flush (tcg_flush_softmmu_tlb): C flushes with it when refills
        outgrow the TLB, so that QEMU resizes it (mte_on_fill)."""
        self.lib.mte_set_unicorn_flush_all(self.ctx, fn)

    def set_skip_sync(self, address: int) -> None:
        """The engine's skip_sync_pc_on_exit byte, cleared after each interrupt hook."""
        self.lib.mte_set_skip_sync(self.ctx, address)

    def fill_stats(self) -> tuple[int, int]:
        """(TLB refills answered natively, refills handed to the Python hook)."""
        return self._counter_pair(self.lib.mte_fill_stats)

    def insn_stats(self) -> tuple[int, int]:
        """(MTE instructions executed natively, exceptions handed to the Python hook)."""
        return self._counter_pair(self.lib.mte_insn_stats)

    def syscall_block(self) -> "ctypes.Array[ctypes.c_uint64]":
        """The context's system-call block (x8, x0-x5, result, set), as a ctypes array
        living in the context: C fills it before calling the kernel and writes the result."""
        return (ctypes.c_uint64 * 9).from_address(self.lib.mte_syscall_block(self.ctx))

    def fast_block(self) -> "ctypes.Array[ctypes.c_uint64]":
        """The answers C gives to getpid, getppid and gettid itself: armed, pid, ppid, tid,
        and how many calls it answered."""
        return (ctypes.c_uint64 * 5).from_address(self.lib.mte_fast_block(self.ctx))

    def page_flushes(self) -> tuple[int, int]:
        """(Physical pages whose placement was forgotten one by one (mte_flush_page),
        whole flushes made to let Unicorn's TLB grow (mte_on_fill))."""
        return self._counter_pair(self.lib.mte_page_flush_count)

    def log_append(self, pa: int, old: bytes) -> None:
        self.lib.mte_log_append(self.ctx, pa, old, len(old))

    def log_entries(self) -> list[tuple[int, bytes]]:
        """The undo log, oldest first."""
        out = []
        pa = ctypes.c_uint64()
        buf = ctypes.create_string_buffer(64)
        for i in range(self.lib.mte_log_count(self.ctx)):
            n = self.lib.mte_log_get(self.ctx, i, ctypes.byref(pa), buf)
            out.append((pa.value, buf.raw[:n]))
        return out

    def log_clear(self) -> None:
        self.lib.mte_log_clear(self.ctx)

    def stats(self) -> tuple[int, int]:
        """(accesses checked natively, accesses handed to the Python hook)."""
        return self._counter_pair(self.lib.mte_stats)

    def _counter_pair(self, read: Callable) -> tuple[int, int]:
        """A (handled natively, handed to Python) pair, as the library's *_stats() fill it."""
        out = (ctypes.c_uint64 * 2)()
        if not self.ctx:
            raise ValueError("the CPU's native state was freed (Cpu.close)")
        read(self.ctx, out)
        return out[0], out[1]


_lib: Optional[tuple[ctypes.CDLL, Path]] = None
_why_not = ""


def address_of(fn: Any) -> int:
    """A C function's address, for uc_hook_add()."""
    value = ctypes.cast(fn, ctypes.c_void_p).value
    assert value is not None
    return value


def _library() -> Optional[tuple[ctypes.CDLL, Path]]:
    """The native library, loaded once, or None (then `_why_not` says why)."""
    global _lib, _why_not
    if os.environ.get("MTEEMU_PURE_PYTHON") == "1":
        _why_not = "MTEEMU_PURE_PYTHON=1"
        return None
    if _lib is not None:
        return _lib
    path = _library_path()
    if path is None:
        _why_not = "the native library was not built (no compiler at install time?)"
        return None
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
    except (OSError, AttributeError) as e:
        _why_not = f"{path.name} cannot be loaded: {e}"
        return None
    _lib = (lib, path)
    return _lib


def available() -> bool:
    """Whether the native path runs (the library is built and not switched off)."""
    return _library() is not None


def load() -> Optional[Native]:
    """A new CPU's native state, or None: the pure-Python path runs."""
    found = _library()
    return None if found is None else Native(*found)


def describe() -> str:
    """Which hot path runs, for `mteemu --version` and `mteemu bench`."""
    found = _library()
    return f"native (tag checks, MTE instructions and TLB refills in {found[1].name})" if found is not None else \
        f"pure Python ({_why_not})"
