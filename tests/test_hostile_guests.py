"""Hostile guests: a simulated guest fires 50,000 random and boundary-argument syscalls
(fixed seed) and every one ends as an errno or its Linux effect; real guest programs
that jump into data, run out of stack, fork without end or flood stdout end as Linux
would end them; privileged calls and the host's processes and network stay out of reach."""
from __future__ import annotations

import os

import pytest
from conftest import compile_guest, run_mteemu
from fuzzers.syscalls import SyscallFuzzer

# Every test here runs a program.
pytestmark = pytest.mark.slow

CALLS = 50_000


def test_random_syscalls_never_raise(guest) -> None:
    fuzzer = SyscallFuzzer(str(guest("hello")), seed=2026)
    try:
        stats = fuzzer.run(CALLS)
    finally:
        fuzzer.close()
    assert stats.calls > CALLS * 0.95          # the exits and execve are skipped
    assert stats.ok > 500 and len(stats.errors) > 10


@pytest.mark.parametrize("name,source,status,stderr", [
    ("jump_into_data", "static unsigned data[4] = {0xd503201f};\n"
     "int main(void) { ((void (*)(void))data)(); return 0; }\n", 139, b"SIGSEGV"),
    ("stack_overflow", "int f(int n) { volatile char pad[4096]; pad[0] = n; return f(n + 1) + pad[0]; }\n"
     "int main(void) { return f(0); }\n", 139, b"SIGSEGV"),
    ("undefined", "int main(void) { __asm__ volatile(\".inst 0x00000000\"); return 0; }\n", 132, b"SIGILL"),
])
def test_guests_that_crash_end_as_on_linux(tmp_path, name, source, status, stderr) -> None:
    r = run_mteemu(["run", compile_guest(tmp_path, name, source)], cwd=tmp_path)
    assert r.returncode == status and stderr in r.stderr and b"Traceback" not in r.stderr


def test_fork_bomb_gets_eagain(tmp_path) -> None:
    prog = compile_guest(tmp_path, "forks", """#include <errno.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
    for (int i = 0; i < 100000; i++) {
        pid_t p = fork();
        if (p == 0) { pause(); _exit(0); }
        if (p < 0) { printf("fork failed after %d children: %s\\n", i, errno == EAGAIN ? "EAGAIN" : "other"); return 0; }
    }
    return 1;
}
""")
    r = run_mteemu(["run", "--timeout", "120", prog], cwd=tmp_path, timeout=180)
    assert r.returncode == 0 and b"EAGAIN" in r.stdout, r.stderr[-500:]


def test_flooding_stdout_is_fine(tmp_path) -> None:
    prog = compile_guest(tmp_path, "flood", """#include <string.h>
#include <unistd.h>
int main(void) { static char buf[1 << 20]; memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 64; i++) if (write(1, buf, sizeof buf) != sizeof buf) return 1; return 0; }
""")
    r = run_mteemu(["run", prog], cwd=tmp_path)
    assert r.returncode == 0 and len(r.stdout) == 64 << 20


def test_host_stays_out_of_reach(tmp_path) -> None:
    prog = compile_guest(tmp_path, "host", """#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
static void show(const char *what, long r) { printf("%s: %s\\n", what, r == 0 ? "ok" : strerrorname_np(errno)); }
int main(void) {
    struct timeval tv = {0, 0};
    show("kill(1)", kill(1, 0));                                     /* host init */
    show("kill(-1)", kill(-1, SIGKILL));                             /* nobody else: ESRCH */
    show("ptrace", syscall(SYS_ptrace, 16 /* ATTACH */, 1, 0, 0));
    show("process_vm_readv", syscall(SYS_process_vm_readv, 1, 0, 0, 0, 0, 0));
    show("settimeofday", settimeofday(&tv, 0));
    show("sethostname", sethostname("x", 1));
    show("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0));
    show("reboot", syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc, 0));
    show("setuid(0)", syscall(SYS_setuid, 0));
    show("chroot", syscall(SYS_chroot, "/"));
    show("init_module", syscall(SYS_init_module, 0, 0, ""));
    show("socket", syscall(SYS_socket, 2, 1, 0));
    show("connect", syscall(SYS_connect, 3, 0, 0));
    return 0;
}
""")
    r = run_mteemu(["run", prog], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(": ", 1) for line in r.stdout.decode().splitlines())
    assert lines["kill(1)"] == "ESRCH"                  # guest pids only: pid 1 does not exist there
    assert lines["ptrace"] == "EPERM" and lines["process_vm_readv"] == "EPERM"
    for call in ("settimeofday", "sethostname", "mount", "reboot", "chroot", "init_module"):
        assert lines[call] == "EPERM", call
    # Setting the ids it already has is allowed (emulated, nothing reaches the host); any
    # other id is EPERM, whoever runs mteemu.
    assert lines["setuid(0)"] == ("ok" if os.getuid() == 0 else "EPERM")
    assert lines["socket"] == "EACCES" and lines["connect"] in ("EBADF", "ENOTSOCK", "EACCES")


def test_same_seed_same_run_twenty_times(guest) -> None:
    from concurrent.futures import ThreadPoolExecutor

    binary = str(guest("determinism"))
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: run_mteemu(["run", "--seed", "5", binary]), range(20)))
    assert {r.returncode for r in runs} == {0}
    assert len({r.stdout for r in runs}) == 1
    assert b"IRG tags:" in runs[0].stdout and b"child " in runs[0].stdout


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_syscall_storm_guest(guest, tmp_path, seed: int) -> None:
    """A real guest firing 5000 seeded random syscalls (guest_tests/hostile/storm.c).
    qemu-aarch64 7.2 dies on each of these seeds (assertions in its syscall layer and
    TCG, a host SIGSEGV); mteemu must end it as Linux would: an exit, a signal, or a
    deadlock report — never an internal error. --root keeps it in its directory."""
    storm = str(guest("hostile/storm"))
    stdin = tmp_path / "stdin"                     # stdio: private files, never the host's devices
    stdin.write_bytes(b"input\n")
    with open(stdin, "rb") as f:
        r = run_mteemu(["run", "--root", str(tmp_path), "--timeout", "60", storm, str(seed), "5000"],
                       cwd=tmp_path, timeout=120, stdin=f)
    assert b"Traceback" not in r.stderr and b"internal error" not in r.stderr
    assert r.returncode != 70


def test_output_before_a_timeout_is_kept(tmp_path) -> None:
    prog = compile_guest(tmp_path, "spin", """#include <unistd.h>
int main(void) { write(1, "before\\n", 7); write(2, "err\\n", 4); for (;;) ; }
""")
    r = run_mteemu(["run", "--timeout", "2", prog], cwd=tmp_path)
    assert r.returncode == 124 and r.stdout == b"before\n" and r.stderr.startswith(b"err\n")


def test_reports_never_overwrite_inputs(tmp_path, guest) -> None:
    prog = tmp_path / "fatal"
    prog.write_bytes(guest("mte/fatal").read_bytes())
    prog.chmod(0o755)
    before = prog.read_bytes()
    r = run_mteemu(["run", "--report-json", str(prog), str(prog)], cwd=tmp_path)
    assert r.returncode == 2 and b"input file" in r.stderr and prog.read_bytes() == before
    src = tmp_path / "t.c"
    src.write_text("// exit: 0\nint main(void) { return 0; }\n")
    r = run_mteemu(["test", "--junit-xml", str(src), str(src)], cwd=tmp_path)
    assert r.returncode == 2 and src.read_text().startswith("// exit: 0")
