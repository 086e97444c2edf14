"""The guest's world is its own: mteemu attacked as an attacker would (tests/attacker.c),
and every attack fails — the --root escape through /proc/self/exe, host memory through
/proc/self/mem, host kernel settings through /proc/sys and /sys, metadata of the host
objects behind stdio, reports written over device nodes — while signals to mteemu,
instruction fetches Linux refuses and bad command lines all end as documented.

CI runs as root: the answers that differ for an unprivileged guest (EACCES where root
gets EPERM) are asserted for whichever user runs the suite, and the permission rules
themselves are tested for both in-process."""
from __future__ import annotations

import errno
import hashlib
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import build_test_program, run_mteemu

from mteemu.kernel.fs import namei
from mteemu.kernel.fs.pseudofs import Dir, File, open_node, static
from mteemu.kernel.uaccess import SyscallError

ROOT_USER = os.geteuid() == 0
DENIED = "EPERM" if ROOT_USER else "EACCES"     # may_create()/may_delete() in a procfs directory


@pytest.fixture(scope="module")
def attacker(tmp_path_factory) -> str:
    return build_test_program(tmp_path_factory, "attacker.c")


def results(out: bytes) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.decode().splitlines() if ": " in line)


def fingerprint(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mode, st.st_uid


@pytest.mark.slow
def test_exe_escape_under_root_fails(tmp_path, attacker) -> None:
    prog_dir, root, outside = tmp_path / "prog", tmp_path / "root", tmp_path / "outside"
    for d in (prog_dir, root, outside):
        d.mkdir()
    prog = prog_dir / "attacker"
    prog.write_bytes(Path(attacker).read_bytes())
    prog.chmod(0o755)
    (outside / "secret.txt").write_text("secret\n")
    before = fingerprint(prog), sorted(os.listdir(outside)), sorted(os.listdir(prog_dir))
    r = run_mteemu(["run", "--root", str(root), str(prog), "exe", str(outside)], cwd=root)
    assert r.returncode == 0, r.stderr
    got = results(r.stdout)
    # Linux's answers: writing a running program is ETXTBSY whoever owns it; chmod/chown of
    # a file the caller does not own EPERM; names in /proc/self cannot be added or removed.
    assert got == {
        "open exe for writing": "ETXTBSY", "open exe O_TRUNC": "ETXTBSY", "chmod exe 04777": "EPERM",
        "chown exe": "EPERM", "truncate exe": "ETXTBSY", "unlink exe": DENIED, "mkdir exe": "EEXIST",
        "chdir exe": "ENOTDIR", "rename over exe": DENIED, "link exe into the root": "EXDEV",
        "symlink at exe": "EEXIST", "walk .. from exe": "ENOTDIR", "walk .. from cwd": "ENOENT",
        "walk .. from root": "ENOENT", "create outside": "ENOENT", "read exe": "ok",
        "fchmod the exe fd": "EPERM", "exe link": str(prog)}
    assert (fingerprint(prog), sorted(os.listdir(outside)), sorted(os.listdir(prog_dir))) == before
    assert sorted(os.listdir(root)) == ["mine"]           # what the guest made stays in its root


@pytest.mark.slow
def test_escapes_closed_before_stay_closed(tmp_path, attacker) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    r = run_mteemu(["run", "--root", str(root), attacker, "blocked", str(outside)], cwd=root)
    assert r.returncode == 0, r.stderr
    assert results(r.stdout) == {
        "hardlink an outside file in": "ENOENT", "rename out": "ENOENT", "rename out by dot-dot": "ENOENT",
        "openat2": "ENOSYS", "execve /bin/sh": "ENOENT",        # the root has no /bin/sh
        "open through /proc/self/root": "ENOENT",
        "open through /proc/self/cwd/..": "ENOENT", "chdir into /proc/self/fd": "ok",
        "open ../../../../etc/passwd from there": "ENOENT", "mknod a device": "EPERM"}
    assert sorted(os.listdir(outside)) == ["secret.txt"] and sorted(os.listdir(root)) == ["mine"]


@pytest.mark.slow
@pytest.mark.parametrize("confined", [False, True])
def test_chown_only_inside_the_root(tmp_path, attacker, confined: bool) -> None:
    """Without --root a host file is the host's: a chown that changes its owner is refused
    (EPERM) even as root; what the guest made in this run, and anything inside its root,
    follows the guest's credentials as on Linux (root may give it away, a user may not);
    a chown to the owner a file already has changes nothing and succeeds (tar x does it)."""
    (tmp_path / "host_file").write_text("the host's")
    before = (tmp_path / "host_file").stat()
    args = ["run"] + (["--root", str(tmp_path)] if confined else []) + [attacker, "chown"]
    r = run_mteemu(args, cwd=tmp_path)
    as_linux = "ok" if os.geteuid() == 0 else "EPERM"
    assert r.returncode == 0 and results(r.stdout) == {
        "chown a file it made": "ok", "fchown it": "ok", "chown it to another owner": as_linux,
        "chown a host file to its owner": "ok",
        "chown a host file to another owner": as_linux if confined else "EPERM"}, r.stdout
    if not confined:
        assert (tmp_path / "host_file").stat().st_uid == before.st_uid


@pytest.mark.slow
def test_proc_self_mem_is_the_guests_memory(tmp_path, attacker) -> None:
    r = run_mteemu(["run", attacker, "mem"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = results(r.stdout)
    assert b"wrote host memory" not in r.stdout
    assert got["maps mention host objects"] == "0"
    assert got["open /proc/self/mem rw"] == "ok"
    assert got["write beyond the guest's address space"] == "EIO"
    assert got["guest variable through mem"] == "2"
    assert got["socket after"] == "EACCES" and got["kill a host pid"] == "ESRCH"


@pytest.mark.slow
def test_a_guest_symlink_to_proc_self_mem_reaches_its_own_memory(tmp_path, attacker) -> None:
    r = run_mteemu(["run", "--root", str(tmp_path), attacker, "memlink"], cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == b"var: 9\n", r.stderr


def _host(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        return f"unreadable: {e.errno}".encode()


@pytest.mark.slow
def test_kernel_settings_never_reach_the_host(tmp_path, attacker) -> None:
    watched = ["/proc/sys/vm/nr_hugepages", "/sys/kernel/mm/ksm/run", "/proc/sys/kernel/pid_max"]
    before = [_host(p) for p in watched]
    r = run_mteemu(["run", attacker, "settings"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [_host(p) for p in watched] == before
    got = results(r.stdout)
    writable = "ok" if ROOT_USER else "EACCES"
    expected = {
        "open nr_hugepages for writing": writable, "nr_hugepages reads": "0",
        "open ksm run": "ENOENT", "write meminfo": "EACCES",
        "write pid_max": "EPERM" if ROOT_USER else "EACCES",   # a root knob the model does not have
        "create in /proc": "EACCES", "mkdir in /sys": DENIED, "unlink /proc/self/status": DENIED,
        "chmod /proc/self/status": "EPERM", "hostname": "mteemu", "host /proc/1": "ENOENT",
        "guest symlink into /proc reads": "Name:", "fd 0 through /dev/stdin": "1"}
    if ROOT_USER:
        expected["write nr_hugepages 7"] = "ok"     # accepted; the model's pool stays empty
    assert got == expected


@pytest.mark.slow
@pytest.mark.parametrize("confined", [False, True])
def test_stdio_metadata_never_changes(tmp_path, attacker, confined: bool) -> None:
    stdin, stdout = tmp_path / "stdin", tmp_path / "stdout"
    stdin.write_text("x\n")
    stdin.chmod(0o640)
    root = tmp_path / "root"
    root.mkdir()
    with open(stdin, "rb") as fin, open(stdout, "wb") as fout:
        os.chmod(stdout, 0o600)
        args = [sys.executable, "-m", "mteemu", "run"] + (["--root", str(root)] if confined else []) + \
            [attacker, "stdio"]
        r = subprocess.run(args, stdin=fin, stdout=fout, stderr=subprocess.PIPE, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    got = results(stdout.read_bytes())
    assert got == {"fchmod 0 04777": "EPERM", "fchmod 1 0": "EPERM", "fchmod 2 0": "EPERM", "fchown 0": "EPERM",
                   "chmod /dev/stdin": "EPERM",      # under --root, through mteemu's /dev
                   "chmod /proc/self/fd/1": "EPERM", "ftruncate 0": "EINVAL",
                   "set O_NONBLOCK on stdin": "ok", "read stdin": "ok"}
    assert stat.S_IMODE(stdin.stat().st_mode) == 0o640 and stdin.read_text() == "x\n"
    assert stat.S_IMODE(stdout.stat().st_mode) == 0o600


@pytest.mark.slow
def test_reports_are_never_written_over_devices(tmp_path, attacker) -> None:
    null_before = os.stat("/dev/null")
    r = run_mteemu(["run", "--report-json", "/dev/null", attacker, "tagcheck"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"not a regular file" in r.stderr
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_mode == null_before.st_mode and after.st_rdev == null_before.st_rdev
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run_mteemu(["run", "--report-json", str(fifo), attacker, "tagcheck"], cwd=tmp_path, timeout=30)
    assert r.returncode == 2 and stat.S_ISFIFO(fifo.stat().st_mode)
    r = run_mteemu(["dtb-info", "--svg", "/dev/null", str(Path(__file__).parents[1] / "dts" / "small-v3.dts")])
    assert r.returncode == 2 and b"not a regular file" in r.stderr
    for option in ("--junit-xml", "--json"):
        r = run_mteemu(["test", option, "/dev/null", str(Path(__file__).parents[1] / "guest_tests" / "hello.c")])
        assert r.returncode == 2 and b"not a regular file" in r.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.slow
def test_new_reports_follow_the_umask(tmp_path, attacker) -> None:
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "mteemu", "run", "--report-json", str(report), attacker, "tagcheck"],
                       capture_output=True, cwd=tmp_path, timeout=60, preexec_fn=lambda: os.umask(0o027))
    assert r.returncode == 139, r.stderr
    assert stat.S_IMODE(report.stat().st_mode) == 0o640


def _start(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mteemu", "run", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signals_stop_a_spinning_guest(tmp_path, attacker, sig: int) -> None:
    swap = tmp_path / "swapfile"
    p = _start(["--swap", "8M", "--swap-file", str(swap), attacker, "spin"], tmp_path, stdin=subprocess.DEVNULL)
    assert p.stdout.readline() == b"spinning\n"      # the guest is in its syscall-free loop now
    assert swap.exists()
    time.sleep(0.3)
    sent = time.monotonic()
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert p.returncode == 128 + sig
    assert err.decode().splitlines() == [f"mteemu: stopped by signal {sig} ({signal.Signals(sig).name}); "
                                         "the guest did not finish"]
    assert not swap.exists()


@pytest.mark.slow
def test_a_signal_stops_a_guest_blocked_on_host_input(tmp_path, attacker) -> None:
    r, w = os.pipe()                                  # the writer end stays open: read() blocks
    try:
        p = _start([attacker, "readstdin"], tmp_path, stdin=r)
        time.sleep(1.5)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 143, err


@pytest.mark.slow
def test_nonblocking_stdin_is_eagain_and_the_host_pipe_stays_blocking(tmp_path, attacker) -> None:
    r, w = os.pipe()                                  # open writer, nothing written: would block
    try:
        p = _start([attacker, "nonblock"], tmp_path, stdin=r)
        out, err = p.communicate(timeout=60)
        assert os.get_blocking(r)                     # the shared description was not changed
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, err
    assert results(out) == {"set O_NONBLOCK": "ok", "read an empty stdin": "EAGAIN", "O_NONBLOCK reported": "1"}


@pytest.mark.slow
def test_a_closed_pipe_kills_the_writer_with_sigpipe(tmp_path, attacker) -> None:
    p = _start([attacker, "yes"], tmp_path, stdin=subprocess.DEVNULL)
    assert p.stdout.readline() == b"y\n"
    p.stdout.close()                                  # like `| head -1`
    err = p.stderr.read()
    p.wait(timeout=30)
    assert p.returncode == 141, err                   # SIGPIPE's default action, as on Linux
    assert b"signal 13 (SIGPIPE)" in err


@pytest.mark.slow
@pytest.mark.parametrize("how,expected", [
    (["pc", "0xfffffffffffffffc"], "signal 11 si_code 1 si_addr 0xfffffffffffffffc"),   # SEGV_MAPERR
    (["pc", "0x0500000000400000"], "signal 11 si_code 1 si_addr 0x400000"),            # tagged PC: TBID0
    (["pc", "0x0001000000000000"], "signal 11 si_code 1 si_addr 0x1000000000000"),     # past TASK_SIZE
    (["sigreturn"], "signal 11 si_code 1 si_addr 0xfffffffffffffffc"),
])
def test_instruction_fetches_fault_as_on_linux(tmp_path, attacker, how: list[str], expected: str) -> None:
    r = run_mteemu(["run", "--timeout", "30", attacker, *how], cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and r.stdout.decode().strip() == expected, r.stderr


@pytest.mark.slow
def test_a_misaligned_pc_is_sigbus(tmp_path, attacker) -> None:
    r = run_mteemu(["run", "--timeout", "30", attacker, "pc", "main+2"], cwd=tmp_path, timeout=60)
    line = r.stdout.decode().strip()
    assert r.returncode == 0 and line.startswith("signal 7 si_code 1 si_addr 0x"), r.stderr   # BUS_ADRALN
    assert int(line.rsplit(" ", 1)[1], 16) & 3 == 2


@pytest.mark.slow
@pytest.mark.parametrize("args,words", [
    (["--mem", "1"], b"too small to start"),
    (["--mem", "infG"], b"bad size"),
    (["--mem", "0"], b"more than 0"),
    (["--mem=-5M"], b"bad size"),
    (["--swap", "1e400G"], b"bad size"),
    (["--swap", "999999T"], b"more than mteemu can model"),
    (["--timeout", "inf"], b"finite"),
    (["--timeout", "nan"], b"finite"),
    (["--timeout", "-1"], b"finite"),
    (["--timeout", "1e30"], b"at most"),
    (["--seed", "-1"], b"out of range"),
])
def test_bad_numbers_are_one_line_errors(tmp_path, attacker, args: list[str], words: bytes) -> None:
    r = run_mteemu(["run", *args, attacker, "spin"], cwd=tmp_path, timeout=60)
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1 and r.stderr.startswith(b"mteemu: ") and b"Traceback" not in r.stderr


@pytest.mark.slow
def test_the_least_memory_is_named(tmp_path, attacker) -> None:
    r = run_mteemu(["run", "--mem", "64K", attacker, "spin"], cwd=tmp_path)
    need = int(r.stderr.split(b"at least ")[1].split(b"K")[0])
    enough = run_mteemu(["run", "--mem", f"{need}K", attacker, "pc", "0x1000"], cwd=tmp_path)
    assert enough.returncode != 2 and b"too small" not in enough.stderr     # it starts (and may run short later)
    less = run_mteemu(["run", "--mem", f"{need - 4}K", attacker, "pc", "0x1000"], cwd=tmp_path)
    assert less.returncode == 2 and b"too small" in less.stderr


@pytest.mark.slow
def test_the_memory_search_fits_in_a_limited_address_space(tmp_path, attacker) -> None:
    """The search for the least --mem boots a kernel per try; each reserves ~2 GiB of
    address space (Unicorn's translation buffer, the board's RAM). Released after each
    try, twenty tries fit in 8 GB (before: "Could not allocate dynamic translator buffer",
    exit 1, at the fourth)."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    r = subprocess.run([sys.executable, "-m", "mteemu", "run", "--mem", "1", attacker, "spin"], cwd=tmp_path,
                       capture_output=True, timeout=120, preexec_fn=limited, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and b"too small to start" in r.stderr and r.stderr.count(b"\n") == 1, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "chardev"])
def test_inputs_that_are_not_regular_files_are_refused_unread(tmp_path, attacker, kind: str) -> None:
    if kind == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    for args in (["run", path], ["run", "--dtb", path, attacker, "pc", "0x1000"], ["validate-dtb", path]):
        r = run_mteemu(args, cwd=tmp_path, timeout=30)
        assert r.returncode == 2 and b"not a regular file" in r.stderr, (args, r.stderr)
    r = run_mteemu(["test", path], cwd=tmp_path, timeout=30)
    assert r.returncode == 1 and b"not a regular file" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stderr", ["full", "closed"])
def test_an_unwritable_stderr_keeps_the_exit_status(tmp_path, attacker, stderr: str) -> None:
    def setup() -> None:
        if stderr == "closed":
            os.close(2)
    err = open("/dev/full", "wb") if stderr == "full" else subprocess.DEVNULL
    try:
        r = subprocess.run([sys.executable, "-m", "mteemu", "run", attacker, "tagcheck"], stdout=subprocess.PIPE,
                           stderr=err, cwd=tmp_path, timeout=60, preexec_fn=setup)
    finally:
        if stderr == "full":
            err.close()
    assert r.returncode == 139


def test_host_pseudo_file_systems_are_never_walked_into(tmp_path) -> None:
    """The safety net under the generated trees: a walk that enters the host's procfs or
    sysfs (as through a bind mount somewhere else would) is ENOENT."""
    def kind(path: str) -> "str | None":
        fd = os.open(path, os.O_PATH)
        try:
            return namei.pseudo_fs(fd)
        finally:
            os.close(fd)
    assert kind("/proc/self") == "proc" and kind("/sys/kernel") == "sysfs"
    assert kind(str(tmp_path)) is None
    host_root = namei.HostDir("/")
    try:
        for path in ("/proc/self/status", "/sys/kernel/mm", "/proc"):
            with pytest.raises(SyscallError) as e:
                namei.walk(host_root, "/", path, True, tops={})   # no generated trees: the host's would be reached
            assert e.value.errno == errno.ENOENT
        (tmp_path / "to-proc").symlink_to("/proc/self/environ")
        with pytest.raises(SyscallError):
            namei.walk(host_root, str(tmp_path), "to-proc", True, tops={})
        # Not followed (unlink, lstat): the link itself is an ordinary file of the host.
        with namei.walk(host_root, str(tmp_path), "to-proc", False, tops={}) as r:
            assert isinstance(r, namei.HostEntry) and r.name == "to-proc" and r.gpath == str(tmp_path / "to-proc")
    finally:
        host_root.close()


@pytest.mark.parametrize("euid", [0, 1000])
def test_generated_files_answer_as_procfs_does(euid: int) -> None:
    knob = File(static("0\n"), lambda data: None, mode=0o644)        # root's, and modelled
    unmodelled = File(static("1\n"), mode=0o644)                      # root's, not modelled
    readonly = File(static("x\n"))                                    # 0444
    own = File(static("y\n"), lambda data: None, mode=0o600, uid=1000)

    def error(node, flags: int) -> str:
        try:
            open_node(node, "/proc/x", flags, euid)
            return "ok"
        except SyscallError as e:
            return errno.errorcode[e.errno]
    assert error(knob, os.O_WRONLY) == ("ok" if euid == 0 else "EACCES")
    assert error(unmodelled, os.O_WRONLY) == ("EPERM" if euid == 0 else "EACCES")
    assert error(readonly, os.O_WRONLY) == "EACCES"                   # even root (sysctl's rule)
    assert error(readonly, os.O_RDONLY) == "ok"
    assert error(own, os.O_RDWR) == "ok"
    assert error(Dir(dict), os.O_WRONLY) == "EISDIR"
