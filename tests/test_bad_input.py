"""Bad input: one line, a documented exit status, never a traceback."""
from __future__ import annotations

import os
import shutil

import pytest
from conftest import compile_guest, run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow


def _one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("mteemu: ")
    return lines[0]


def test_missing_file(tmp_path) -> None:
    r = run_mteemu(["run", str(tmp_path / "nope")])
    assert r.returncode == 2
    assert "no such file" in _one_line(r.stderr)


def test_not_elf(tmp_path) -> None:
    f = tmp_path / "script.sh"
    f.write_text("#!/bin/sh\necho hi\n")
    r = run_mteemu(["run", str(f)])
    assert r.returncode == 2
    assert "not an ELF file" in _one_line(r.stderr)


def test_directory(tmp_path) -> None:
    r = run_mteemu(["run", str(tmp_path)])
    assert r.returncode == 2
    assert "directory" in _one_line(r.stderr)


def test_x86_elf() -> None:
    r = run_mteemu(["run", "/bin/true"])   # the host's own x86-64 (or other) program
    assert r.returncode == 2
    line = _one_line(r.stderr)
    assert "ELF" in line and "arm64" in line


def test_32bit_elf(tmp_path) -> None:
    f = tmp_path / "elf32"
    f.write_bytes(b"\x7fELF\x01\x01\x01" + bytes(57))
    r = run_mteemu(["run", str(f)])
    assert r.returncode == 2
    assert "32-bit" in _one_line(r.stderr)


def test_dynamically_linked(tmp_path) -> None:
    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.fail("cross compiler missing")
    src = tmp_path / "dyn.c"
    src.write_text("int main(void){return 0;}\n")
    out = tmp_path / "dyn"
    assert os.system(f"aarch64-linux-gnu-gcc {src} -o {out}") == 0
    empty = tmp_path / "empty"                   # no sysroot holds its program interpreter
    empty.mkdir()
    r = run_mteemu(["run", "-L", str(empty), "--root", str(empty), str(out)])
    assert r.returncode == 2
    assert "dynamically linked" in _one_line(r.stderr)


def test_truncated_elf(guest, tmp_path) -> None:
    data = guest("hello").read_bytes()
    f = tmp_path / "trunc"
    f.write_bytes(data[:3000])
    r = run_mteemu(["run", str(f)])
    assert r.returncode == 2
    _one_line(r.stderr)


def test_bad_option() -> None:
    r = run_mteemu(["run", "-E", "NOEQUALS", "/bin/true"])
    assert r.returncode == 2
    _one_line(r.stderr)


def test_timeout_stops_a_spinning_guest(tmp_path) -> None:
    out = compile_guest(tmp_path, "spin", "int main(void){ for(;;) __asm__ volatile(\"\"); }\n")
    r = run_mteemu(["run", "--timeout", "1", out], timeout=60)
    assert r.returncode == 124
    assert "--timeout" in _one_line(r.stderr)


def test_mmap_larger_than_board_is_enomem(tmp_path) -> None:
    out = compile_guest(tmp_path, "huge", '#include <stdio.h>\n#include <errno.h>\n#include <sys/mman.h>\n'
                   'int main(void){ void *p = mmap(0, 64UL<<30, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);'
                   ' printf("%s\\n", p == MAP_FAILED && errno == ENOMEM ? "ENOMEM" : "mapped"); return 0; }\n')
    r = run_mteemu(["run", out])
    assert r.returncode == 0
    assert r.stdout == b"ENOMEM\n"


def test_jump_to_unmapped_memory_is_sigsegv(tmp_path) -> None:
    out = compile_guest(tmp_path, "jump",
                        "int main(void){ void (*f)(void) = (void (*)(void))0x12345000; f(); return 0; }\n")
    r = run_mteemu(["run", out])
    assert r.returncode == 139
    assert "SIGSEGV" in _one_line(r.stderr)


def test_a_reader_that_went_away_ends_mteemu_quietly() -> None:
    """`mteemu syscalls --all | head -1`: the write that meets the closed pipe ends mteemu as
    SIGPIPE would end a C tool (141), with no "internal error" line."""
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)                                  # the reader is gone before anything is written
    proc = subprocess.run([sys.executable, "-m", "mteemu", "syscalls", "--all"], stdout=w,
                          stderr=subprocess.PIPE, timeout=60)
    os.close(w)
    assert proc.returncode == 141
    assert proc.stderr == b""
