from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Every mteemu the tests start checks the memory manager's invariants as it runs.
os.environ["MTEEMU_CHECK_INVARIANTS"] = "1"
sys.path.insert(0, str(ROOT / "scripts"))

import build_guests  # noqa: E402


def run_mteemu(args: list[str], cwd: Path | None = None, timeout: float = 120,
               env: dict[str, str] | None = None, stdin=subprocess.DEVNULL,
               prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """mteemu in a subprocess; stdin is the null device unless a test gives its own file;
    `prefix` is a command it runs under (the `privileges` fixture's)."""
    return subprocess.run([*prefix, sys.executable, "-m", "mteemu", *args], capture_output=True, cwd=cwd,
                          timeout=timeout, env=None if env is None else {**os.environ, **env}, stdin=stdin)


# The attacks on --root run as the suite runs (root in CI) and, when that is root, again
# with every capability dropped (util-linux's setpriv: no CAP_DAC_OVERRIDE, CAP_CHOWN,
# CAP_SYS_ADMIN...), as an unprivileged user's mteemu would run. (Another uid cannot run
# this machine's Python, which lives under /root.) Run by a user, the suite is unprivileged.
_NO_CAPS = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--")
PRIVILEGES = {"as-is": ()} | ({"no-capabilities": _NO_CAPS} if os.geteuid() == 0 and shutil.which("setpriv") else {})


@pytest.fixture(params=list(PRIVILEGES))
def privileges(request) -> tuple[str, ...]:
    """A command prefix for mteemu: each entry of PRIVILEGES in turn."""
    return PRIVILEGES[request.param]


def compile_guest(tmp_path: Path, name: str, source: str) -> str:
    """A one-off static arm64 guest program built from source text; its path."""
    src, out = tmp_path / f"{name}.c", tmp_path / name
    src.write_text(source)
    subprocess.run([build_guests.CC, "-static", "-O1", str(src), "-o", str(out)], check=True)
    return str(out)


def build_test_program(tmp_path_factory, source: str) -> str:
    """A static arm64 guest built from a C file beside the tests (tests/attacker.c...)."""
    out = tmp_path_factory.mktemp(Path(source).stem) / Path(source).stem
    subprocess.run([build_guests.CC, "-static", "-O1", "-march=armv8.5-a+memtag", str(ROOT / "tests" / source),
                    "-o", str(out)], check=True)
    return str(out)


@pytest.fixture(scope="session")
def guest():
    """guest(name) -> path of the built guest program (built once, cached on disk)."""
    if shutil.which(build_guests.CC) is None:
        pytest.fail(f"{build_guests.CC} is missing: run the README's test command to install it")
    return build_guests.build


# -- the fast layer ---------------------------------------------------------------------------
# A test that runs a program (builds or runs a guest, or starts mteemu, qemu, gdb or a
# compiler) is marked `slow` where it is defined (`@pytest.mark.slow`, or `pytestmark` for a
# whole module; guest_tests/ items by the plugin). `pytest -m "not slow"` runs the rest — the
# in-process tests of the kernel, the machine, the memory manager, the boards and the
# protocols. A test not marked that starts a process fails, so the layer stays fast.
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Around a fast test's setup (its module and session fixtures too), call and teardown,
    starting a process fails the test."""
    if item.get_closest_marker("slow") is not None:
        yield
        return
    real = subprocess.Popen.__init__

    def refuse(*args, **kwargs) -> None:
        raise AssertionError(f"{item.nodeid} starts a process: mark it @pytest.mark.slow")

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = real  # type: ignore[method-assign]


# -- the host is left as it was ---------------------------------------------------------------
# Tests run hostile guests as root; whatever they try, the host must end the session as it
# began it: the device nodes, the kernel knobs guests write to, and no new file outside
# the scratch folders (pytest's, under /tmp/pytest-of-*). Checked once per session, by the
# process that is not an xdist worker (the controller sees the whole run).
_KNOBS = ("/proc/sys/vm/nr_hugepages", "/proc/sys/vm/overcommit_memory", "/proc/sys/kernel/randomize_va_space",
          "/sys/kernel/mm/transparent_hugepage/enabled")
_WATCHED_DIRS = ("/", "/tmp", "/dev", "/dev/shm", "/etc", "/root")


def _host_state() -> dict[str, object]:
    state: dict[str, object] = {}
    for name in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/tty"):
        try:
            s = os.stat(name)
            state[name] = (s.st_mode, s.st_rdev, s.st_uid, s.st_gid)
        except OSError as e:
            state[name] = e.errno
    for knob in _KNOBS:
        try:
            with open(knob) as f:
                state[knob] = f.read()
        except OSError as e:
            state[knob] = e.errno
    for d in _WATCHED_DIRS:
        try:
            state[d + "/*"] = sorted(n for n in os.listdir(d) if not n.startswith("pytest-of-"))
        except OSError as e:
            state[d + "/*"] = e.errno
    # The checkout: no file changed or added but what .gitignore expects (build/, caches).
    git = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True)
    state["git status"] = git.stdout if git.returncode == 0 else git.returncode
    return state


_BEFORE: dict[str, object] = {}


def pytest_sessionstart(session) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        _BEFORE.update(_host_state())


def pytest_sessionfinish(session, exitstatus) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or not _BEFORE:
        return
    after = _host_state()
    changed = {k: (_BEFORE[k], after.get(k)) for k in _BEFORE if after.get(k) != _BEFORE[k]}
    if changed:
        for k, (was, now) in changed.items():
            sys.stderr.write(f"\nthe test run changed the host: {k}: {was!r} -> {now!r}\n")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def world(tmp_path: Path):
    """An in-process kernel (tests/kernel_world.py) confined to a scratch root."""
    from kernel_world import KernelWorld

    root = tmp_path / "root"
    root.mkdir()
    w = KernelWorld(root)
    yield w
    w.close()
