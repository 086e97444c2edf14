"""Tag-check faults explained: the cause (use after free, double free, overflow, underflow),
the allocation, and who allocated and freed it (--alloc-history), as Android's MTE crash
reports say it. Programs run on whichever hot path this suite runs (CI runs it on both);
one test runs both paths and compares what they recorded."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import build_guests
import pytest
from conftest import ROOT, run_mteemu

pytestmark = pytest.mark.slow
TAGGING = {"sync": "glibc.mem.tagging=3", "async": "glibc.mem.tagging=1"}


@pytest.fixture(scope="module")
def programs(guest, tmp_path_factory) -> dict[str, str]:
    """heap_causes static (as every guest test) and dynamic (libc.so.6's allocator)."""
    dynamic = tmp_path_factory.mktemp("dyn") / "heap_causes"
    src = ROOT / "guest_tests" / "mte" / "heap_causes.c"
    subprocess.run([build_guests.CC, "-O2", "-g", "-march=armv8.5-a+memtag", "-pthread", f"-I{src.parent}", str(src),
                    "-o", str(dynamic)], check=True)
    return {"static": str(guest("mte/heap_causes")), "dynamic": str(dynamic)}


def fault(tmp_path: Path, prog: str, *args: str, mode: str = "sync", env: dict | None = None,
          options: tuple[str, ...] = ("--alloc-history",)) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    r = run_mteemu(["run", *options, "--report-json", str(out), "-E", f"GLIBC_TUNABLES={TAGGING[mode]}", prog, *args],
                   cwd=tmp_path, env=env)
    text = r.stderr.decode()
    assert r.returncode == 139, text
    assert "Traceback" not in text
    return json.loads(out.read_text()), text


def functions(rec: dict | None) -> list[str]:
    assert rec is not None
    return [re.sub(r"\+0x[0-9a-f]+.*", "", f["symbol"] or "??") for f in rec["backtrace"]]


# (argument, kind, offset, relation, size, function that allocated, that freed)
CASES = [
    ("use-after-free", "use-after-free", 8, "into", 32, "alloc_buf", "drop_buf"),
    ("use-after-free-thread", "use-after-free", 0, "into", 32, "alloc_buf", "thread_free"),
    ("overflow-byte", "buffer-overflow", 0, "right of", 32, "alloc_buf", None),
    ("overflow-granule", "buffer-overflow", 16, "right of", 64, "alloc_buf", None),
    ("underflow", "buffer-underflow", 16, "left of", 64, "alloc_buf", None),
    ("double-free", "double-free", 0, "into", 32, "alloc_buf", "drop_buf"),
    ("use-after-realloc", "use-after-free", 0, "into", 32, "alloc_buf", "main"),
]


@pytest.mark.parametrize("linkage", ["static", "dynamic"])
@pytest.mark.parametrize("bug,kind,offset,relation,size,allocator,freer", CASES, ids=[c[0] for c in CASES])
def test_each_cause(tmp_path, programs, linkage, bug, kind, offset, relation, size, allocator, freer) -> None:
    report, text = fault(tmp_path, programs[linkage], bug)
    assert report["schema"] == 2 and report["history"] == "allocator"
    cause = report["causes"][0]
    assert (cause["kind"], cause["offset"], cause["relation"], cause["size"]) == (kind, offset, relation, size), cause
    assert cause["source"] == "allocator" and cause["tag"] == report["pointer_tag"]
    assert allocator in functions(cause["allocated"]) and "main" in functions(cause["allocated"])
    assert functions(cause["allocated"])[0] == "malloc"
    if freer is None:
        assert cause["deallocated"] is None
    else:
        freed = functions(cause["deallocated"])
        assert freer in freed and freed[0] in ("free", "realloc"), freed
    # The text says the same, Android's way, with the backtraces after the fault's own.
    assert f"Cause: [MTE]: {cause['line']}" in text
    assert re.search(rf"^{cause['title']}, {offset} bytes {relation} a {size}-byte allocation at 0x[0-9a-f]+$",
                     cause["line"])
    assert re.search(r"^allocated by thread \d+ \(malloc\):\n      #00 pc 0x[0-9a-f]+ in malloc\+0x0", text, re.M)
    main_tid = cause["allocated"]["thread"]
    if bug == "use-after-free-thread":
        assert cause["deallocated"]["thread"] != main_tid           # freed by the other thread
        assert re.search(rf"^deallocated by thread {cause['deallocated']['thread']} \(free\):", text, re.M)
    if bug == "use-after-realloc":
        assert cause["deallocated"]["op"] == "realloc"
    if bug == "double-free":
        assert report["backtrace"][0]["symbol"].startswith("free+")   # glibc's free() read the freed block


def test_an_asynchronous_fault_says_where_linux_reports_it(tmp_path, programs) -> None:
    report, text = fault(tmp_path, programs["static"], "use-after-free", mode="async")
    assert report["mode"] == "async" and report["reported_at"].startswith("at system call ")
    assert report["causes"][0]["kind"] == "use-after-free"
    assert f"here {report['reported_at']}" in text


def test_no_cause_is_invented_far_from_any_allocation(tmp_path, programs) -> None:
    report, text = fault(tmp_path, programs["static"], "far")
    assert report["causes"] == []
    assert "Cause: [MTE]: unknown (nothing recorded near the address)" in text


def test_without_the_history_the_report_says_how_to_get_it(tmp_path, programs) -> None:
    report, text = fault(tmp_path, programs["static"], "use-after-free", options=())
    assert (report["history"], report["causes"]) == ("off", [])
    assert "run with --alloc-history" in text


def test_a_forked_child_inherits_its_parents_history(tmp_path, programs) -> None:
    report, _ = fault(tmp_path, programs["static"], "fork-child")
    cause = report["causes"][0]
    assert cause["kind"] == "use-after-free"
    assert cause["deallocated"]["thread"] != report["thread"]    # the parent freed it, before the fork
    assert "drop_buf" in functions(cause["deallocated"])


def test_exec_starts_a_new_history(tmp_path, programs) -> None:
    """The old program freed the block; the new one uses the old pointer: the new program's
    history knows nothing of the old free (no use-after-free is claimed)."""
    report, _ = fault(tmp_path, programs["static"], "exec")
    assert not any(c["kind"] in ("use-after-free", "double-free") for c in report["causes"]), report["causes"]
    assert report["history"] == "allocator"


def test_tag_stores_explain_a_program_without_malloc(tmp_path, guest) -> None:
    """mte/fatal tags a 48-byte object by hand (STG) and writes past it: the tag stores are
    the evidence (the fallback for an allocator mteemu does not know)."""
    out = tmp_path / "r.json"
    r = run_mteemu(["run", "--alloc-history", "--report-json", str(out), str(guest("mte/fatal"))], cwd=tmp_path)
    assert r.returncode == 139
    cause = json.loads(out.read_text())["causes"][0]
    assert (cause["kind"], cause["offset"], cause["size"], cause["source"]) == ("buffer-overflow", 0, 48, "tag stores")
    assert functions(cause["allocated"])[0] == "main" and cause["allocated"]["op"] == "tag store"
    assert "Cause: [MTE]: Buffer Overflow, 0 bytes right of a 48-byte region tagged by a tag store" in r.stderr.decode()


@pytest.mark.parametrize("bug", ["use-after-free", "use-after-free-thread", "double-free", "use-after-realloc",
                                 "fork-child"])
def test_both_hot_paths_record_the_same(tmp_path, programs, bug) -> None:
    """The C recorder (_allochist.c) and the Python reference (allochist.py) against each
    other: the same causes, the same backtraces, the same tag stores."""
    from mteemu.machine import native
    if native.load() is None:
        pytest.skip("the native path is off (MTEEMU_PURE_PYTHON=1) or not built: nothing to compare with")
    got = {}
    for path in ("native", "python"):
        env = {**os.environ, "MTEEMU_PURE_PYTHON": "1" if path == "python" else "0"}
        report, _ = fault(tmp_path, programs["dynamic"], bug, env=env)
        got[path] = (report["causes"], report["granule_tagged_by"])
    assert got["native"] == got["python"]


def test_the_guest_test_runner_says_the_cause_in_one_line(tmp_path) -> None:
    src = tmp_path / "uaf.c"
    src.write_text('#include <stdlib.h>\n#include <stdio.h>\n// env: GLIBC_TUNABLES=glibc.mem.tagging=3\n'
                   "int main(void) { char *p = malloc(32); free(p); return ((volatile char *)p)[0]; }\n")
    junit = tmp_path / "j.xml"
    r = subprocess.run([sys.executable, "-m", "mteemu", "test", "--cache", str(tmp_path / "cache"),
                        "--junit-xml", str(junit), str(src)], capture_output=True, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    message = re.search(r'<failure message="([^"]*)"', junit.read_text()).group(1)
    assert message.startswith("exit status 139, expected 0; Cause: [MTE]: Use After Free, 0 bytes into a "
                              "32-byte allocation at 0x"), message


GDB = shutil.which("gdb-multiarch")


def test_gdb_monitor_report(tmp_path, programs) -> None:
    if GDB is None:
        pytest.fail("gdb-multiarch is missing: run the README's test command to install it")
    prog, sock = programs["static"], tmp_path / "gdb.sock"
    proc = subprocess.Popen([sys.executable, "-m", "mteemu", "run", "--timeout", "90", "--alloc-history",
                             "-E", f"GLIBC_TUNABLES={TAGGING['sync']}", "-g", f"unix:{sock}", prog, "use-after-free"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    r = subprocess.run([GDB, "-batch", "-nx", "-ex", "set pagination off", "-ex", f"target remote {sock}",
                        "-ex", "monitor report", "-ex", "continue", "-ex", "monitor report", "-ex", "kill", prog],
                       capture_output=True, timeout=90, stdin=subprocess.DEVNULL)
    proc.communicate(timeout=90)
    out = r.stdout.decode() + r.stderr.decode()
    assert "did not stop with a tag-check fault" in out, out                 # before the fault
    assert "SIGSEGV" in out
    assert "Cause: [MTE]: Use After Free, 8 bytes into a 32-byte allocation" in out, out
    assert re.search(r"deallocated by thread \d+ \(free\):\n\s+#00 pc 0x[0-9a-f]+ in free\+0x0", out), out


@pytest.mark.parametrize("bug,kind,offset,size,maker,unmaker", [
    ("overflow", "buffer-overflow", 8, 64, "bump_alloc", None),
    ("use-after-free", "use-after-free", 16, 32, "bump_alloc", "bump_free"),
])
def test_an_allocator_of_the_programs_own_is_explained_by_its_tag_stores(tmp_path, guest, bug, kind, offset, size,
                                                                         maker, unmaker) -> None:
    out = tmp_path / "r.json"
    r = run_mteemu(["run", "--alloc-history", "--report-json", str(out), str(guest("mte/bump_causes")), bug],
                   cwd=tmp_path)
    assert r.returncode == 139, r.stderr
    cause = json.loads(out.read_text())["causes"][0]
    assert (cause["kind"], cause["offset"], cause["size"], cause["source"]) == (kind, offset, size, "tag stores")
    assert functions(cause["allocated"])[:2] == [maker, "main"]
    if unmaker:
        assert functions(cause["deallocated"])[:2] == [unmaker, "main"]
        assert "retagged by thread" in r.stderr.decode()
