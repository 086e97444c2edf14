"""Real programs: Debian's arm64 busybox-static and bash-static (fetched by name by
scripts/install-deps into build/debian-arm64, never committed) run shell work under
--root — pipes, redirections, command substitution, traps, background jobs, scripts,
archives and text tools — and print what they print on Linux.

Each script also runs under qemu-aarch64 (Debian's busybox is a standalone shell: its
applets run without execve, which qemu-user would hand to the host kernel), and both must
print the same, except where QEMU_DIFFERS says why."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow

DEBIAN = ROOT / "build" / "debian-arm64" / "bin"
APPLETS = ("sh echo cat tr sort uniq wc head tail seq printf test true false sleep mkdir rm mv cp ls touch find "
           "xargs sed awk grep tar gzip gunzip bzip2 bunzip2 md5sum env kill yes cut basename dirname expr").split()

needs_debian = pytest.mark.skipif(not (DEBIAN / "busybox").exists(),
                                  reason="build/debian-arm64 missing: run scripts/install-deps")


@pytest.fixture
def root(tmp_path) -> Path:
    """A guest root: /bin with busybox and its applets, bash, an empty /tmp (/dev is mteemu's)."""
    r = tmp_path / "root"
    (r / "bin").mkdir(parents=True)
    (r / "tmp").mkdir()
    shutil.copy(DEBIAN / "busybox", r / "bin" / "busybox")
    shutil.copy(DEBIAN / "bash-static", r / "bin" / "bash")
    for applet in APPLETS:
        os.symlink("busybox", r / "bin" / applet)
    return r


BATTERY = [
    ("pipe", "echo a | tr a b", "b\n"),
    ("substitution", 'x=$(echo sub); echo "[$x]"', "[sub]\n"),
    ("nested substitution", "echo $(echo $(echo deep))", "deep\n"),
    ("loop into sort", "for i in 3 1 2; do echo $i; done | sort", "1\n2\n3\n"),
    ("redirections", "echo one > f; echo two >> f; cat f; wc -l < f", "one\ntwo\n2\n"),
    ("trap on exit", "trap 'echo bye' EXIT; echo hi", "hi\nbye\n"),
    ("background job", "sleep 0.1 & wait $!; echo waited $?", "waited 0\n"),
    ("devices", "head -c 5 /dev/zero | wc -c; head -c 3 /dev/urandom | wc -c; echo x > /dev/null; "
                "echo to-fd > /dev/fd/1; cat /dev/null", "5\n3\nto-fd\n"),
    ("and/or", "false || echo or; true && echo and", "or\nand\n"),
    ("exit status", "sh -c 'exit 7'; echo $?", "7\n"),
    ("tar and gzip", "mkdir d; echo data > d/x; tar czf d.tgz d; rm -r d; tar xzf d.tgz; cat d/x", "data\n"),
    ("bzip2", "echo zz | bzip2 | bunzip2", "zz\n"),
    ("find and xargs", "mkdir -p t/a t/b; touch t/a/1 t/b/2; find t -type f | sort | xargs echo", "t/a/1 t/b/2\n"),
    ("sed and awk", "echo 'a b c' | sed s/b/X/ | awk '{print $2 $3}'", "Xc\n"),
    ("files", "echo x > f; cp f g; mv g h; ls h; rm h; ls h >/tmp/out 2>&1 || echo gone", "h\ngone\n"),
    ("script", "printf '#!/bin/sh\\necho script $1\\n' > s.sh; chmod +x s.sh; ./s.sh arg", "script arg\n"),
    ("md5sum", "echo hi | md5sum", "764efa883dda1e11db47671c4a3bbd9e  -\n"),
    ("yes into head", "yes | head -1", "y\n"),
    ("seq and tail", "seq 1 5 | tail -2", "4\n5\n"),
    ("printf", "printf '%s-%d\\n' a 3", "a-3\n"),
    ("cd", "cd /tmp && pwd", "/tmp\n"),
    ("env", "env -i A=1 env", "A=1\n"),
    ("kill", "kill -0 $$ && echo alive", "alive\n"),
    ("uniq and cut", "printf 'a:1\\na:2\\nb:3\\n' | cut -d: -f1 | uniq", "a\nb\n"),
    ("expr and basename", "expr 6 \\* 7; basename /a/b/c.txt .txt; dirname /a/b/c", "42\nc\n/a/b\n"),
]


# Where qemu-aarch64 cannot agree: it runs the host's programs for what the script execs.
QEMU_DIFFERS = {
    "script": "a #! script is execve'd: qemu-user hands it to the host kernel (the host's /bin/sh runs it)",
    "env": "env execve's its command through /proc/self/exe, which under qemu-user is the host's qemu binary",
}


@needs_debian
@pytest.mark.parametrize("name,script,expected", BATTERY, ids=[b[0] for b in BATTERY])
def test_busybox_shell(root, tmp_path, name: str, script: str, expected: str) -> None:
    r = run_mteemu(["run", "--root", str(root), "--timeout", "60", str(root / "bin" / "sh"), "-c", script],
                   cwd=root / "tmp", env={"PATH": "/bin"})
    assert r.stdout.decode() == expected and r.returncode == 0, r.stderr.decode()[-1500:]
    if name in QEMU_DIFFERS:
        return
    scratch = tmp_path / "qemu"
    scratch.mkdir()
    q = subprocess.run(["qemu-aarch64", str(root / "bin" / "busybox"), "sh", "-c", script], capture_output=True,
                       cwd=scratch, env={"PATH": "/bin"}, timeout=60, stdin=subprocess.DEVNULL)
    assert (q.stdout, q.returncode) == (r.stdout, r.returncode), q.stderr.decode()[-1500:]


@needs_debian
def test_bash(root) -> None:
    script = ('a=(x y z); echo ${#a[@]} ${a[1]}; f() { echo "f:$1"; }; f arg | cat; '
              'trap "echo trapped" EXIT; echo $(( 6*7 )); exit 4')
    r = run_mteemu(["run", "--root", str(root), str(root / "bin" / "bash"), "-c", script], cwd=root / "tmp",
                   env={"PATH": "/bin"})
    assert r.returncode == 4 and r.stdout == b"3 y\nf:arg\n42\ntrapped\n", r.stderr.decode()[-1500:]


@needs_debian
def test_a_shell_script_under_root_pipes_and_substitutes(root) -> None:
    (root / "job.sh").write_text("#!/bin/sh\nn=$(seq 1 10 | wc -l)\necho \"lines: $n\" | tr a-z A-Z\n")
    (root / "job.sh").chmod(0o755)
    r = run_mteemu(["run", "--root", str(root), str(root / "bin" / "sh"), "/job.sh"], cwd=root, env={"PATH": "/bin"})
    assert r.returncode == 0 and r.stdout == b"LINES: 10\n", r.stderr.decode()[-1500:]


SQLITE = ROOT / "build" / "debian-arm64" / "usr"


@pytest.mark.skipif(not (SQLITE / "include" / "sqlite3.h").exists(), reason="run scripts/install-deps")
@pytest.mark.parametrize("tagging", [None, "3"])
def test_dynamically_linked_sqlite(tmp_path, tagging) -> None:
    """Debian's libsqlite3 with the cross compiler's default (dynamic) linking, a real SQL
    script into a database file, with and without glibc's heap tagging: the same rows as
    qemu-aarch64 -L gives."""
    libdir = SQLITE / "lib" / "aarch64-linux-gnu"
    prog = tmp_path / "sqlite_script"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", str(Path(__file__).with_name("sqlite_script.c")),
                    f"-I{SQLITE / 'include'}", f"-L{libdir}", "-lsqlite3", "-o", str(prog)], check=True)
    env = ["-E", f"LD_LIBRARY_PATH={libdir}"] + (["-E", f"GLIBC_TUNABLES=glibc.mem.tagging={tagging}"] if tagging else [])
    r = run_mteemu(["run", *env, str(prog), str(tmp_path / "m.db")], cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "m.db").stat().st_size > 0, r.stderr.decode()[-1500:]
    q = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", "-E", f"LD_LIBRARY_PATH={libdir}", str(prog),
                        str(tmp_path / "q.db")], capture_output=True, timeout=60)
    assert r.stdout == q.stdout and r.stdout.startswith(b"item0|71|17892\n")


@needs_debian
def test_the_guest_gets_the_environment_mteemu_was_started_with(tmp_path) -> None:
    """Exactly what mteemu was exec'd with, plus -E: Python's locale coercion adds
    LC_CTYPE=C.UTF-8 to its own environment when the locale is C (issue 28), which the
    guest must not see."""
    env = {"LANG": "C", "PATH": "/usr/bin:/bin", "ONLY_THIS": "yes"}
    r = subprocess.run([sys.executable, "-m", "mteemu", "run", "-E", "ADDED=1", str(DEBIAN / "busybox"), "env"],
                       capture_output=True, cwd=tmp_path, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    got = dict(line.split("=", 1) for line in r.stdout.decode().splitlines())
    assert got == {**env, "ADDED": "1"}, got
