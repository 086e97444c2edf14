"""`mteemu test` and the pytest plugin on a small suite made for the purpose: passing,
failing (with the stdout diff), malformed, never-exiting, prebuilt-ELF and oracle cases;
JUnit XML and JSON; the same output whatever -j."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT, run_mteemu

from mteemu.testing import runner
from mteemu.testing.spec import ExpectationError, parse

OK = """// exit: 4
// args: a "b c"
// env: GREETING=hi there
// | argc=3 a b c
// ~ greeting=hi.*
// qemu: same
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("argc=%d %s %s\\ngreeting=%s\\n", argc, argv[1], argv[2], getenv("GREETING"));
    return 4;
}
"""


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("suite")
    (d / "ok.c").write_text(OK)
    (d / "sub").mkdir()
    (d / "sub" / "wrong.c").write_text('// exit: 0\n#include <stdio.h>\nint main(void) { puts("actual"); return 0; }\n')
    (d / "sub" / "wrong.expected").write_text("expected\n")
    (d / "sub" / "bad.c").write_text("// exit: banana\nint main(void) { return 0; }\n")
    (d / "sub" / "spin.c").write_text("// timeout: 1\nint main(void) { for (;;) ; }\n")
    (d / "nottest.c").write_text("/* no expectation block: not a test */\nint main(void) { return 0; }\n")
    (d / "segv.c").write_text("// signal: SIGSEGV\n// si_code: SEGV_MAPERR\n// qemu: same\n"
                              "int main(void) { return *(volatile int *)8; }\n")
    subprocess.run(["aarch64-linux-gnu-gcc", "-static", "-O2", "-o", str(d / "prebuilt"),
                    str(ROOT / "guest_tests" / "hello.c")], check=True)
    (d / "prebuilt.test").write_text("exit: 3\n| hello from arm64\n| 2 + 3 = 5\n")
    return d


EXPECTED_LINES = [
    "PASS  ok",
    "PASS  prebuilt",
    "PASS  segv",
    "ERROR sub/bad: {d}/sub/bad.c:1: exit: expected an exit status 0..255, got 'banana'",
    "FAIL  sub/spin: timed out after 1 s",
    "FAIL  sub/wrong: stdout differs",
]


@pytest.mark.slow
def test_mteemu_test_runs_a_suite(suite: Path, tmp_path) -> None:
    junit, js = tmp_path / "r.xml", tmp_path / "r.json"
    r = run_mteemu(["test", "-j", "2", "--junit-xml", str(junit), "--json", str(js), str(suite)])
    assert r.returncode == 1
    out = r.stdout.decode()
    lines = [line for line in out.splitlines() if not line.startswith("    ")]
    assert lines[:-1] == [x.format(d=suite) for x in EXPECTED_LINES]
    assert lines[-1] == "6 tests: 3 passed, 2 failed, 1 errors"
    assert "-expected\n    +actual" in out                      # the diff
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuite" and root.get("tests") == "6" and root.get("failures") == "2"
    assert root.get("errors") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["wrong"].find("failure") is not None and "+actual" in cases["wrong"].find("failure").text
    assert cases["bad"].find("error") is not None and cases["ok"].find("failure") is None
    results = json.loads(js.read_text())
    assert [x["status"] for x in results] == ["pass", "pass", "pass", "error", "fail", "fail"]


@pytest.mark.slow
def test_same_output_whatever_the_parallelism(suite: Path) -> None:
    one = run_mteemu(["test", "-j", "1", str(suite / "ok.c"), str(suite / "segv.c"), str(suite / "sub")])
    two = run_mteemu(["test", "-j", "3", str(suite / "ok.c"), str(suite / "segv.c"), str(suite / "sub")])
    assert one.stdout == two.stdout and one.returncode == two.returncode == 1


@pytest.mark.slow
def test_oracle_mode(suite: Path, tmp_path) -> None:
    prog = ("#include <stdio.h>\n#include <sys/prctl.h>\nint main(void) {\n"
            "    prctl(55, 1 | 2 | 4, 0, 0, 0);   /* PR_SET_TAGGED_ADDR_CTRL: sync and async */\n"
            "    printf(\"%#lx\\n\", (unsigned long)prctl(56, 0, 0, 0, 0));\n    return 0;\n}\n")
    (tmp_path / "differs.c").write_text("// qemu: differs: it returns one TCF bit from PR_GET_TAGGED_ADDR_CTRL\n" + prog)
    (tmp_path / "differs.expected").write_text("0x7\n")
    (tmp_path / "undeclared.c").write_text("// exit: 0\n" + prog)
    r = run_mteemu(["test", "--oracle", "qemu", str(suite / "ok.c"), str(suite / "segv.c"), str(tmp_path)])
    out = r.stdout.decode()
    assert "PASS  ok\n" in out and "PASS  segv\n" in out
    assert "PASS  differs  [qemu: known difference: it returns one TCF bit" in out
    assert "FAIL  undeclared: qemu-aarch64 disagrees (stdout differs)" in out
    assert r.returncode == 1


@pytest.mark.slow
def test_pytest_plugin_collects_the_same_tests(suite: Path, tmp_path) -> None:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
                        str(suite)], capture_output=True, cwd=tmp_path, timeout=300)
    tail = r.stdout.decode().strip().splitlines()[-1]
    assert "3 failed, 3 passed" in tail, r.stdout.decode()[-3000:]
    assert "stdout differs" in r.stdout.decode()


@pytest.mark.slow
def test_crashing_emulator_is_that_tests_error(suite: Path, tmp_path) -> None:
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\nexit 1\n")
    fake.chmod(0o755)
    case = next(c for c in runner.discover([str(suite / "ok.c")]))
    result = runner.run_case(case, runner.Settings(python=str(fake)))
    assert result.status == runner.ERROR and result.message == "the emulator crashed"


@pytest.mark.slow
def test_missing_path_and_malformed_sidecar(tmp_path) -> None:
    (tmp_path / "prog").write_bytes(b"\x7fELF" + bytes(60))
    (tmp_path / "prog.test").write_text("this is not key: value\n")
    r = run_mteemu(["test", str(tmp_path / "nope"), str(tmp_path)])
    out = r.stdout.decode()
    assert r.returncode == 1
    assert "nope: no such file or directory" in out and "prog.test:1: not 'key: value'" in out


def test_spec_errors_name_the_line(tmp_path) -> None:
    f = tmp_path / "t.c"
    for header, words in [("// signal: SIGNOPE", "unknown signal"), ("// si_code: SEGV_MTESERR", "without signal"),
                          ("// ~ (unclosed", "bad regular expression"), ("// timeout: -1", "positive"),
                          ("// env: NOVALUE", "NAME=VALUE"), ("// qemu: maybe", "same")]:
        f.write_text(header + "\nint main(void) { return 0; }\n")
        with pytest.raises(ExpectationError, match=words):
            parse(f, "t")
