"""Dynamically linked programs (aarch64-linux-gnu-gcc's default output): the program
interpreter from the sysroot (-L DIR, QEMU_LD_PREFIX, or Debian's cross sysroot), its
libraries found as qemu-user finds them; glibc's heap tagging, threads, fork and execve
work as in the static programs, and qemu-aarch64 -L prints the same."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import build_guests
import pytest
from conftest import run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow

GUESTS = Path(__file__).parents[1] / "guest_tests"
SYSROOT = "/usr/aarch64-linux-gnu"


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory):
    """dynamic(name) -> a guest test program built without -static (cached per module)."""
    out_dir = tmp_path_factory.mktemp("dynamic")

    def build(name: str, *flags: str) -> str:
        out = out_dir / name.replace("/", "_")
        if not out.exists():
            src = GUESTS / f"{name}.c"
            subprocess.run([build_guests.CC, "-O2", "-march=armv8.5-a+memtag", "-pthread", f"-I{src.parent}",
                            *flags, str(src), "-o", str(out)], check=True)
        return str(out)
    return build


def _expected(name: str) -> bytes:
    return (GUESTS / f"{name}.expected").read_bytes()


@pytest.mark.parametrize("how", ["default", "-L", "QEMU_LD_PREFIX"])
def test_hello_finds_its_loader(tmp_path, dynamic, how: str) -> None:
    prog = dynamic("hello")
    args, env = ["run", prog], None
    if how == "-L":
        args = ["run", "-L", SYSROOT, prog]
    elif how == "QEMU_LD_PREFIX":
        env = {"QEMU_LD_PREFIX": SYSROOT}
    r = run_mteemu(args, cwd=tmp_path, env=env)
    assert r.returncode == 3 and r.stdout == _expected("hello"), r.stderr
    q = subprocess.run(["qemu-aarch64", "-L", SYSROOT, prog], capture_output=True, cwd=tmp_path)
    assert q.stdout == r.stdout and q.returncode == r.returncode


def test_without_its_loader_it_is_refused(tmp_path, dynamic) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_mteemu(["run", "-L", str(empty), "--root", str(empty), dynamic("hello")], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"interpreter" in r.stderr


@pytest.mark.parametrize("name,options,expected", [
    ("threads", [], "threads"),
    ("fork_wait", [], "fork_wait"),
    ("fork_signal", [], "fork_signal"),
    ("mte/heap_bugs", ["-E", "GLIBC_TUNABLES=glibc.mem.tagging=3"], "mte/heap_bugs.sync"),
    ("mte/heap_bugs", ["-E", "GLIBC_TUNABLES=glibc.mem.tagging=1"], "mte/heap_bugs.async"),
    ("mte/heap_clean", ["-E", "GLIBC_TUNABLES=glibc.mem.tagging=3"], "mte/heap_clean.sync"),
])
def test_programs_behave_as_their_static_builds(tmp_path, dynamic, name: str, options: list[str],
                                                expected: str) -> None:
    r = run_mteemu(["run", *options, dynamic(name)], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == _expected(expected), r.stderr[-2000:]


def test_maps_show_the_loader_and_libc(tmp_path, dynamic) -> None:
    src = tmp_path / "maps.c"
    src.write_text('#include <stdio.h>\nint main(void){FILE *f=fopen("/proc/self/maps","r");char l[512];'
                   'while(fgets(l,sizeof l,f)) fputs(l,stdout);return 0;}\n')
    prog = tmp_path / "maps"
    subprocess.run([build_guests.CC, str(src), "-o", str(prog)], check=True)
    r = run_mteemu(["run", str(prog)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert b"ld-linux-aarch64.so.1" in r.stdout and b"libc.so.6" in r.stdout


def test_a_static_program_execs_a_dynamic_one(tmp_path, dynamic) -> None:
    src = tmp_path / "caller.c"
    target = dynamic("hello")
    src.write_text('#include <unistd.h>\nint main(void){char *a[]={"hello",0};execv("%s",a);return 99;}\n' % target)
    prog = tmp_path / "caller"
    subprocess.run([build_guests.CC, "-static", str(src), "-o", str(prog)], check=True)
    r = run_mteemu(["run", str(prog)], cwd=tmp_path, env={**os.environ})
    assert r.returncode == 3 and r.stdout == _expected("hello"), r.stderr


def test_fault_report_names_library_functions(tmp_path) -> None:
    src = tmp_path / "ovf.c"
    src.write_text("#include <stdlib.h>\n#include <string.h>\n"
                   "__attribute__((noipa)) void fill(char *p, int n) { memset(p, 1, n); }\n"
                   "int main(int argc, char **argv) { char *p = malloc(16); fill(p, 48 + argc); return p[0]; }\n")
    prog = tmp_path / "ovf"
    subprocess.run([build_guests.CC, "-O1", "-march=armv8.5-a+memtag", str(src), "-o", str(prog)], check=True)
    r = run_mteemu(["run", "-E", "GLIBC_TUNABLES=glibc.mem.tagging=3", str(prog)], cwd=tmp_path)
    assert r.returncode == 139, r.stderr
    assert b"in fill+" in r.stderr and b"in main+" in r.stderr          # the program's own symbols
    assert b"__libc_start_main+" in r.stderr and b"(libc.so.6)" in r.stderr   # and libc's, named


@pytest.mark.parametrize("tagging", ["3", "1"], ids=["sync", "async"])
def test_a_heap_tagged_program_vforks_and_execs(tmp_path, dynamic, tagging: str) -> None:
    """dash, bash pipelines, xargs and Python's subprocess start programs so: before the fix
    the exec'd child died of SIGSEGV in malloc (dynamic programs only: the parent's last
    code page, vfork's in libc.so.6, is not mapped yet when the new program starts)."""
    prog = dynamic("mte/heap_vfork_exec")
    r = run_mteemu(["run", "-E", f"GLIBC_TUNABLES=glibc.mem.tagging={tagging}", prog], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == _expected("mte/heap_vfork_exec"), r.stderr


def test_strace_shows_execves_path(tmp_path, dynamic) -> None:
    """The path is read before the call: after it the memory it was in is the new program's."""
    prog = dynamic("mte/heap_vfork_exec")
    r = run_mteemu(["run", "--strace", prog], cwd=tmp_path)
    execs = [line for line in r.stderr.decode().splitlines() if "] execve(" in line]
    assert len(execs) == 2 and all(line.startswith('[') and f'execve("{prog}", 0x' in line and line.endswith(") = 0")
                                   for line in execs), execs
