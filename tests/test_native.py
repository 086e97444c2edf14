"""The native hot path (machine/_native.c) against the pure-Python reference.

Two CPUs over two copies of the same small world — one with the native library, one with
MTEEMU_PURE_PYTHON=1 — run the same random instruction (random MTE encodings of every
form, random loads and stores on mixed-tag pages) from the same registers, memory and
tags, and must end the same: exit kind, PC, registers, flags, memory, tags, and the
tag-check mismatch. Also: the library builds without warnings, runs clean under
AddressSanitizer/UBSan, and mteemu falls back to Python when it is missing."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from machine_world import DATA_PAGES, DATA_VA, UNTAGGED_VA, World

from mteemu.machine import arm64 as C
from mteemu.machine import native
from mteemu.machine.tagcheck import MteState, Tcf

SOURCE = Path(__file__).parents[1] / "mteemu" / "machine" / "_native.c"
needs_native = pytest.mark.skipif(not native.available(), reason=f"no native library: {native.describe()}")


@pytest.fixture(scope="module")
def worlds():
    mp = pytest.MonkeyPatch()
    try:
        yield World(pure=False, monkeypatch=mp), World(pure=True, monkeypatch=mp)
    finally:
        mp.undo()


regs_ = st.integers(0, 31)


def _pointer(draw) -> int:
    kind = draw(st.sampled_from(["data", "data", "data", "untagged", "unmapped", "any"]))
    tag = draw(st.integers(0, 15))
    if kind == "data":
        off = draw(st.integers(-64, DATA_PAGES * 0x1000 + 64))
        off = off & ~15 if draw(st.booleans()) else off
        return (tag << 56) | (DATA_VA + off)
    if kind == "untagged":
        return (tag << 56) | (UNTAGGED_VA + draw(st.integers(0, 0xFFF)))
    if kind == "unmapped":
        return (tag << 56) | 0x3000_0000
    return draw(st.integers(0, 2**64 - 1))


@st.composite
def mte_word(draw) -> int:
    rd, rn, rm = draw(regs_), draw(regs_), draw(regs_)
    form = draw(st.sampled_from(["irg", "gmi", "subp", "subps", "addg", "subg", "tagmem", "stgp", "dcgva",
                                 "dcgzva", "tco"]))
    if form == "irg":
        return 0x9AC01000 | rm << 16 | rn << 5 | rd
    if form == "gmi":
        return 0x9AC01400 | rm << 16 | rn << 5 | rd
    if form in ("subp", "subps"):
        return (0x9AC00000 if form == "subp" else 0xBAC00000) | rm << 16 | rn << 5 | rd
    if form in ("addg", "subg"):
        return (0x91800000 if form == "addg" else 0xD1800000) | draw(st.integers(0, 63)) << 16 | \
            draw(st.integers(0, 15)) << 10 | rn << 5 | rd
    if form == "tagmem":     # LDG, STG, STZG, ST2G, STZ2G in every addressing form (and the EL1-only ones)
        return 0xD9200000 | draw(st.integers(0, 3)) << 22 | draw(st.integers(0, 511)) << 12 | \
            draw(st.integers(0, 3)) << 10 | rn << 5 | rd
    if form == "stgp":
        return 0x68000000 | draw(st.integers(1, 3)) << 23 | draw(st.integers(0, 127)) << 15 | rm << 10 | rn << 5 | rd
    if form in ("dcgva", "dcgzva"):
        return (0xD50B7460 if form == "dcgva" else 0xD50B7480) | rd
    return draw(st.sampled_from([0xD503409F, 0xD503419F, 0xD51B42E0 | rd, 0xD53B42E0 | rd]))   # TCO


@st.composite
def access_word(draw) -> int:
    """Plain loads and stores (checked by the memory hook on mixed-tag pages)."""
    rt, rn, rt2 = draw(st.integers(0, 30)), draw(st.integers(0, 30)), draw(st.integers(0, 30))
    form = draw(st.sampled_from(["ldr", "str", "ldp", "stp", "ldrq", "strq", "ldur", "stur", "dczva", "ld1x4",
                                 "st1x4", "ldadd", "swp", "ldxr", "ldaxp"]))
    size = draw(st.integers(0, 3))
    if form == "dczva":               # DC ZVA Xt: Unicorn's byte stores over the block
        return 0xD50B7420 | rt
    if form in ("ld1x4", "st1x4"):    # LD1/ST1 {Vt.16B-Vt+3.16B}, [Xn]: four 16-byte accesses
        return (0x4C402000 if form == "ld1x4" else 0x4C002000) | rn << 5 | rt
    if form in ("ldadd", "swp"):      # LSE atomics, any size: LDADD / SWP Rs, Rt, [Xn]
        return size << 30 | (0x38200000 if form == "ldadd" else 0x38208000) | rt2 << 16 | rn << 5 | rt
    if form == "ldxr":                # LDXR Rt, [Xn]
        return size << 30 | 0x085F7C00 | rn << 5 | rt
    if form == "ldaxp":               # LDAXP Xt, Xt2, [Xn]: a 16-byte exclusive pair
        return 0xC87F8000 | rt2 << 10 | rn << 5 | rt
    if form in ("ldr", "str"):        # unsigned offset, scaled
        return (size << 30) | 0x39000000 | (0x400000 if form == "ldr" else 0) | draw(st.integers(0, 63)) << 10 | \
            rn << 5 | rt
    if form in ("ldur", "stur"):      # unscaled (may be unaligned)
        return (size << 30) | 0x38000000 | (0x400000 if form == "ldur" else 0) | draw(st.integers(0, 511)) << 12 | \
            rn << 5 | rt
    if form in ("ldp", "stp"):        # 64-bit pair, signed offset
        return 0xA9000000 | (0x400000 if form == "ldp" else 0) | draw(st.integers(0, 127)) << 15 | rt2 << 10 | \
            rn << 5 | rt
    return (0x3DC00000 if form == "ldrq" else 0x3D800000) | draw(st.integers(0, 15)) << 10 | rn << 5 | rt


@st.composite
def plain_word(draw) -> int:
    """The register-only instructions both run-ahead interpreters know (interp.py), with
    forward branches only (a backward one could loop for ever in either)."""
    rd, rn, rm = draw(regs_), draw(regs_), draw(regs_)
    sf, op, s_ = draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1))
    form = draw(st.sampled_from(["addimm", "addreg", "logical", "bcond", "b", "cbz", "tbz", "dczid", "nop",
                                 "other"]))
    fwd = draw(st.integers(1, 3))
    if form == "addimm":
        return sf << 31 | op << 30 | s_ << 29 | 0x11000000 | draw(st.integers(0, 1)) << 22 | \
            draw(st.integers(0, 4095)) << 10 | rn << 5 | rd
    if form == "addreg":
        return sf << 31 | op << 30 | s_ << 29 | 0x0B000000 | draw(st.integers(0, 3)) << 22 | rm << 16 | \
            draw(st.integers(0, 63)) << 10 | rn << 5 | rd
    if form == "logical":
        return sf << 31 | draw(st.integers(0, 3)) << 29 | 0x0A000000 | draw(st.integers(0, 3)) << 22 | \
            draw(st.integers(0, 1)) << 21 | rm << 16 | draw(st.integers(0, 63)) << 10 | rn << 5 | rd
    if form == "bcond":
        return 0x54000000 | fwd << 5 | draw(st.integers(0, 15))
    if form == "b":
        return 0x14000000 | fwd
    if form == "cbz":
        return sf << 31 | 0x34000000 | draw(st.integers(0, 1)) << 24 | fwd << 5 | rd
    if form == "tbz":
        return draw(st.integers(0, 1)) << 31 | 0x36000000 | draw(st.integers(0, 1)) << 24 | \
            draw(st.integers(0, 31)) << 19 | fwd << 5 | rd
    if form == "dczid":
        return 0xD53B00E0 | rd
    if form == "nop":
        return 0xD503201F
    return 0xF9000000 | rn << 5 | rd          # STR: not interpreted, Unicorn runs it


@st.composite
def machine_state(draw) -> tuple:
    regs = [_pointer(draw) if draw(st.booleans()) else draw(st.integers(0, 2**64 - 1)) for _ in range(31)]
    sp = (DATA_VA + draw(st.integers(0, DATA_PAGES * 0x1000 // 16 - 1)) * 16) | draw(st.integers(0, 15)) << 56
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    data = rng.randbytes((DATA_PAGES + 1) * 0x1000)
    mixed = draw(st.booleans())
    tag_bytes = rng.randbytes(DATA_PAGES * 128) if mixed else bytes([draw(st.integers(0, 15)) * 0x11]) * (DATA_PAGES * 128)
    tcf = draw(st.sampled_from([Tcf.NONE, Tcf.SYNC, Tcf.ASYNC]))
    return regs, sp, draw(st.integers(0, 15)) << 28, data, tag_bytes, tcf, draw(st.integers(0, 0xFFFF)), \
        draw(st.booleans()), seed


def _compare(worlds, word: "int | list[int]", state: tuple) -> None:
    regs, sp, nzcv, data, tag_bytes, tcf, exclude, tco, seed = state
    results = []
    for w in worlds:
        mte = MteState(tcf_read=tcf, tcf_write=tcf, exclude=exclude, tco=tco)
        w.cpu.seed_irg(seed)                  # the same IRG stream: C's state, Python's state
        w.load(word, regs, sp, nzcv, data, tag_bytes, mte)
        results.append(w.run())
    native_result, python_result = results
    words = [word] if isinstance(word, int) else word
    assert native_result == python_result, "words " + " ".join(f"{w:#010x}" for w in words)


@pytest.mark.slow             # seconds of emulation: not the fast layer
@needs_native
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(word=mte_word(), state=machine_state())
def test_mte_instructions_native_equals_python(worlds, word: int, state: tuple) -> None:
    _compare(worlds, word, state)


@pytest.mark.slow             # seconds of emulation: not the fast layer
@needs_native
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.one_of(mte_word(), plain_word()), min_size=2, max_size=6), state=machine_state())
def test_run_ahead_native_equals_python(worlds, words: list[int], state: tuple) -> None:
    """After an MTE instruction both paths run on through plain and MTE instructions."""
    _compare(worlds, [0xD9200800] + words, state)     # STG x0, [x0] first: the run-ahead starts


@pytest.mark.slow             # seconds of emulation: not the fast layer
@needs_native
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(word=access_word(), state=machine_state())
def test_tag_checked_accesses_native_equals_python(worlds, word: int, state: tuple) -> None:
    _compare(worlds, word, state)


@needs_native
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tag_bytes=st.binary(min_size=128, max_size=128), start=st.integers(-32, 0x1000 + 32),
       length=st.integers(0, 0x1000), tag=st.integers(0, 15))
def test_buffer_tag_check_native_equals_python(worlds, tag_bytes: bytes, start: int, length: int, tag: int) -> None:
    """A syscall buffer checked against its tags (uaccess): C's mte_first_mismatch() and
    TagStore.mismatch(), the reference, agree on the first mismatching address, around
    and beyond the edges of tagged RAM (the untagged page before it has tag 0)."""
    native_world = worlds[0]
    pa0 = native_world.map[DATA_VA][0]
    native_world.tags.write_page(pa0 >> 12, tag_bytes)
    pa = pa0 + start
    length = min(length, 0x1000 - (pa & 0xFFF))          # one page, as uaccess asks
    from mteemu.machine.tagstore import TagStore
    assert native_world.tags.mismatch(pa, length, tag) == TagStore.mismatch(native_world.tags, pa, length, tag)


@needs_native
def test_the_native_path_did_the_work(worlds) -> None:
    """The differential tests above must exercise the C code, not only its fallbacks."""
    n = worlds[0].cpu.native
    regs = [(3 << 56) | DATA_VA] * 31
    data = bytes(4 * 0x1000)
    before = n.insn_stats()[0]
    worlds[0].load(0xD9A00800 | 1 << 5 | 1, regs, DATA_VA, 0, data, bytes(DATA_PAGES * 128),   # ST2G x1, [x1]
                   MteState())
    result = worlds[0].run()
    assert result["kind"] is C.ExitKind.BREAKPOINT, (result, n.insn_stats(), before)
    assert n.insn_stats()[0] == before + 1
    assert worlds[0].tags.get(worlds[0].map[DATA_VA][0]) == 3


@pytest.mark.skipif(os.environ.get("MTEEMU_PURE_PYTHON") == "1", reason="the pure-Python run of the suite")
def test_the_library_was_built_at_install() -> None:
    """The extension is optional for pip (no compiler: pure Python), but where a compiler
    exists — every machine the README's commands set up — it must have been built."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the pure-Python path is the right one here")
    assert native.available(), native.describe()


@pytest.mark.slow
def test_the_library_builds_without_warnings(tmp_path) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    r = subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", str(SOURCE),
                        "-o", str(tmp_path / "n.so")], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr


@pytest.mark.slow
def test_no_memory_errors_under_sanitizers(tmp_path, guest) -> None:
    """The library built with AddressSanitizer and UBSan, loaded into mteemu running MTE
    guest programs that use every native part (checks, instructions, refills)."""
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("no gcc")
    lib = tmp_path / "native_asan.so"
    subprocess.run([cc, "-std=c11", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    "-shared", "-fPIC", str(SOURCE), "-o", str(lib)], check=True)
    asan = subprocess.run([cc, "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    ubsan = subprocess.run([cc, "-print-file-name=libubsan.so"], capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "MTEEMU_NATIVE_LIB": str(lib), "LD_PRELOAD": f"{asan} {ubsan}",
           "ASAN_OPTIONS": "detect_leaks=0", "MTEEMU_PURE_PYTHON": ""}
    for name, options in (("mte/insns", []), ("mte/accesses", []), ("mte/precise", []),
                          ("mte/heap_bugs", ["-E", "GLIBC_TUNABLES=glibc.mem.tagging=3"]),
                          # the allocation history's recorder (_allochist.c): threads, fork, every call
                          ("mte/heap_causes", ["--alloc-history", "-E", "GLIBC_TUNABLES=glibc.mem.tagging=3"]),
                          ("mte/bump_causes", ["--alloc-history"])):
        r = subprocess.run([sys.executable, "-m", "mteemu", "run", *options, str(guest(name))], capture_output=True,
                           env=env, cwd=tmp_path, timeout=300)
        assert b"Sanitizer" not in r.stderr and b"runtime error" not in r.stderr, r.stderr[-2000:]
        assert r.returncode in (0, 139), (name, r.returncode, r.stderr[-2000:])


@pytest.mark.slow
def test_a_missing_library_falls_back_to_python(tmp_path, guest) -> None:
    env = {**{k: v for k, v in os.environ.items() if k != "MTEEMU_PURE_PYTHON"},
           "MTEEMU_NATIVE_LIB": str(tmp_path / "missing.so")}
    r = subprocess.run([sys.executable, "-m", "mteemu", "--version"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "pure Python" in r.stdout and "cannot be loaded" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mteemu", "run", str(guest("mte/insns"))], capture_output=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    forced = subprocess.run([sys.executable, "-m", "mteemu", "--version"], capture_output=True, text=True,
                            env={**os.environ, "MTEEMU_PURE_PYTHON": "1"})
    assert "pure Python (MTEEMU_PURE_PYTHON=1)" in forced.stdout


@pytest.mark.slow
@needs_native
def test_version_names_the_native_path() -> None:
    r = subprocess.run([sys.executable, "-m", "mteemu", "--version"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != "MTEEMU_PURE_PYTHON"})
    assert r.returncode == 0 and "native" in r.stdout and sysconfig.get_config_var("EXT_SUFFIX") in r.stdout


@needs_native
@given(seed=st.integers(0, 2**64 - 1), excludes=st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40))
def test_irg_draws_the_same_tags_in_c_and_python(seed: int, excludes: list[int]) -> None:
    """IRG's generator (irg.py) and its C twin (mte_random_tag): the same tags, in order,
    for any seed and any exclusion masks, all excluded giving tag 0 (ChooseRandomNonExcludedTag)."""
    from mteemu.machine.irg import Irg, NativeIrg

    py, c = Irg(), NativeIrg(native.load())
    py.seed(seed)
    c.seed(seed)
    drawn = [(py.random_tag(e), c.random_tag(e)) for e in excludes]
    assert all(a == b for a, b in drawn), drawn
    assert all(not (e >> t & 1) or e == 0xFFFF for e, (t, _) in zip(excludes, drawn))


@pytest.mark.slow
@needs_native
@pytest.mark.parametrize("name", ["mte/dczva", "mte/accesses", "mte/insns"])
def test_retags_without_qemus_page_flush(monkeypatch, guest, capfd, name: str) -> None:
    """Where QEMU's tlb_flush_page() is not found (another Unicorn), a retag of a page
    mapped unchecked flushes the whole TLB: the same output as with it (in-process, so
    the lookup can be taken away)."""
    from mteemu.board.model import default_board
    from mteemu.kernel.kernel import Kernel
    from mteemu.kernel.run import RunOptions
    from mteemu.machine import unicorn_tlb

    expected = (SOURCE.parents[2] / "guest_tests" / f"{name}.expected").read_text()
    monkeypatch.setattr(unicorn_tlb, "flush_page_entry", lambda uc: None)
    k = Kernel(default_board(), RunOptions(timeout=120))
    try:
        prog = str(guest(name))
        k.spawn(prog, [os.fsencode(prog)], [])
        assert k.run().status == 0
    finally:
        k.discard()
    assert capfd.readouterr().out == expected


def test_qemus_page_flush_is_found_in_this_unicorn() -> None:
    """unicorn_tlb finds tlb_flush_page_aarch64 and the engine's CPUState in the Unicorn the
    README's commands install (2.1.x); with another, the native path flushes whole TLBs."""
    import unicorn
    from unicorn import UC_ARCH_ARM64, UC_MODE_ARM, Uc
    from unicorn import arm64_const as A

    from mteemu.machine import unicorn_tlb

    uc = Uc(UC_ARCH_ARM64, UC_MODE_ARM)
    uc.ctl_set_cpu_model(A.UC_CPU_ARM64_MAX)
    assert unicorn_tlb.flush_page_entry(uc) is None       # no CPUState before the engine starts
    uc.ctl_get_page_size()                                 # any ctl read initialises it
    found = unicorn_tlb.flush_page_entry(uc)
    if not unicorn.__version__.startswith("2.1."):
        pytest.skip(f"Unicorn {unicorn.__version__}: the layout is only known for 2.1.x (found: {found})")
    assert found is not None and all(found)


@pytest.mark.slow
def test_unicorns_per_access_exit_checks_are_off_until_a_hook_needs_them(guest, capfd) -> None:
    """unicorn_exit_checks finds the engine's `no_exit_request` in this Unicorn (2.1.x), sets
    it while no memory or code hook can ask for a stop inside a block, and clears it when
    the tag check comes (on either path: it is Unicorn's, not the native library's)."""
    import ctypes

    import unicorn

    from mteemu.board.model import default_board
    from mteemu.kernel.kernel import Kernel
    from mteemu.kernel.run import RunOptions

    if not unicorn.__version__.startswith("2.1."):
        pytest.skip(f"Unicorn {unicorn.__version__}: the layout is only known for 2.1.x")
    states = []
    for name in ("hello", "mte/sync_basic"):
        k = Kernel(default_board(), RunOptions(timeout=120))
        try:
            flag = k.cpu._exit_checks_flag
            assert flag is not None
            # ...and skip_sync_pc_on_exit, cleared after every interrupt hook (found: not set now)
            assert k.cpu._skip_sync is not None and ctypes.c_uint8.from_address(k.cpu._skip_sync).value == 0
            prog = str(guest(name))
            k.spawn(prog, [os.fsencode(prog)], [])
            k.run()
            states.append(ctypes.c_uint8.from_address(flag).value)
        finally:
            k.discard()
    capfd.readouterr()
    assert states == [1, 0]          # hello: no checks needed; tagged memory: the tag check's stops
