"""The one module that uses the Unicorn binding's private parts, pinned to the version it
was written against: an upgrade fails here first, by name, instead of somewhere deep in a
run."""
from __future__ import annotations

import ctypes
import re
from pathlib import Path

import unicorn
from unicorn import arm64_const as A

from mteemu.board.model import default_board
from mteemu.machine import unicorn_shim
from mteemu.machine.engine import new_engine
from mteemu.machine.physmem import PhysMem

ROOT = Path(__file__).resolve().parent.parent
PRIVATE = re.compile(r"\._uch\b|\._hook_exception|\._reg_read\(|_select_reg_class|\buclib\b|_Uc__finalizer|unicorn_py3")


def _engine():
    return new_engine(PhysMem(default_board()))


def test_the_binding_is_the_pinned_version() -> None:
    assert unicorn.__version__ == unicorn_shim.PINNED
    assert f'"unicorn=={unicorn_shim.PINNED}"' in (ROOT / "pyproject.toml").read_text()


def test_no_other_module_reaches_into_the_binding() -> None:
    for path in (ROOT / "mteemu").rglob("*.py"):
        if path.name != "unicorn_shim.py":
            hits = [line for line in path.read_text().splitlines() if PRIVATE.search(line.split("#")[0])]
            assert not hits, f"{path.relative_to(ROOT)}: {hits}"


def test_handle_and_library() -> None:
    uc = _engine()
    assert unicorn_shim.engine_address(uc) != 0
    read, write = unicorn_shim.reg_access_functions()
    assert read and write and read != write
    assert unicorn_shim.library_symbol("tcg_flush_softmmu_tlb_aarch64")     # unicorn_tlb.py's entry
    assert unicorn_shim.library_symbol("no_such_function") is None


def test_registers_through_the_c_api() -> None:
    uc = _engine()
    box = ctypes.c_uint64(0x1122_3344_5566_7788)
    unicorn_shim.reg_write_u64(uc, A.UC_ARM64_REG_X3, box)
    assert uc.reg_read(A.UC_ARM64_REG_X3) == 0x1122_3344_5566_7788
    ids = (ctypes.c_int * 2)(A.UC_ARM64_REG_X3, A.UC_ARM64_REG_X4)
    values = (ctypes.c_uint64 * 2)()
    ptrs = (ctypes.c_void_p * 2)(ctypes.addressof(values), ctypes.addressof(values) + 8)
    uc.reg_write(A.UC_ARM64_REG_X4, 42)
    unicorn_shim.reg_read_batch(uc, ids, ptrs, 2)
    assert list(values) == [0x1122_3344_5566_7788, 42]


def test_a_saved_contexts_vector_register_keeps_all_128_bits() -> None:
    uc = _engine()
    q = (1 << 127) | 0xABCD
    uc.reg_write(A.UC_ARM64_REG_Q0, q)
    ctx = uc.context_save()
    uc.reg_write(A.UC_ARM64_REG_Q0, 0)
    assert unicorn_shim.context_reg(uc, ctx, A.UC_ARM64_REG_Q0) == q


def test_the_first_hook_exception_is_kept() -> None:
    uc = _engine()
    assert unicorn_shim.hook_exception(uc) is None
    first, second = RuntimeError("first"), RuntimeError("second")
    unicorn_shim.keep_hook_exception(uc, first)
    unicorn_shim.keep_hook_exception(uc, second)
    assert unicorn_shim.hook_exception(uc) is first


def test_release_closes_once() -> None:
    uc = _engine()
    unicorn_shim.release(uc)
    unicorn_shim.release(uc)          # a second call is a no-op, as the collector's would be
