"""A started mteemu that forks once per test run (`mteemu test`, the pytest plugin).

A test run used to be a new `python -m mteemu run ...` process: the interpreter, mteemu's
modules, Unicorn's binding and the native library loaded again for every test (~0.1 s of
the ~0.13 s a small test takes on these machines). The server loads them once; for each
request it forks a child that runs `mteemu.cli.main(argv)` exactly as that process would
have (its own working directory, stdin from /dev/null, stdout and stderr to files,
`atexit` handlers run, the exit status or the killing signal reported), so a test costs a
fork and its own boot.

The server is its own process, started by the runner with a fixed environment and with
nothing running but itself: forking a multi-threaded process (the runner's thread pool, a
pytest-xdist worker) could leave a child holding another thread's lock.

Protocol: one JSON line per request on the server's stdin, `{"argv": [...], "cwd": DIR,
"timeout": SECONDS}`; one JSON line per reply on its stdout, `{"status": N}` (N < 0: killed
by signal -N) or `{"status": null, "timeout": true}` when the child outlived its time and
was killed. The child's output is in DIR/.stdout and DIR/.stderr.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Optional

OUT_NAME, ERR_NAME = ".stdout", ".stderr"


class ServerGone(Exception):
    """The fork server is not running (it could not start, or it died)."""


class ForkServer:
    """The runner's side: one server, one request at a time."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        try:
            self._proc = subprocess.Popen([python, "-m", "mteemu.testing.forkserver"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                          cwd="/", text=True, bufsize=1)
        except OSError as e:
            raise ServerGone(f"cannot start the fork server: {e}") from None
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._to: IO[str] = self._proc.stdin
        self._from: IO[str] = self._proc.stdout
        if self._from.readline().strip() != "ready":
            self.close()
            raise ServerGone("the fork server did not start")

    def run(self, argv: list[str], cwd: str, timeout: float) -> tuple[Optional[int], bytes, bytes]:
        """mteemu with argv in cwd: (exit status, or -signal; None if killed for taking
        longer than timeout), stdout, stderr."""
        try:
            self._to.write(json.dumps({"argv": argv, "cwd": cwd, "timeout": timeout}) + "\n")
            self._to.flush()
            line = self._from.readline()
        except (OSError, ValueError) as e:
            raise ServerGone(f"the fork server is gone: {e}") from None
        if not line:
            raise ServerGone("the fork server is gone")
        reply = json.loads(line)
        out, err = (Path(cwd, name).read_bytes() for name in (OUT_NAME, ERR_NAME))
        return reply["status"], out, err

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        for stream in (self._to, self._from):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# -- the server ---------------------------------------------------------------------------
def _child(argv: list[str], cwd: str) -> None:
    """In the forked child: become `python -m mteemu ARGV` run in cwd; never returns."""
    status = 70
    try:
        os.chdir(cwd)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(OUT_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        err = os.open(ERR_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)              # the copies on 0-2 are inheritable, as a process's are
            os.close(fd)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGINT else signal.default_int_handler)
        sys.argv = ["mteemu", *argv]
        from mteemu.cli import main

        try:
            status = main(argv)
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        import atexit

        atexit._run_exitfuncs()              # what the interpreter runs at a normal exit
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the child must not return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        os._exit(status & 0xFF if status >= 0 else 70)


def _wait(pid: int, timeout: float) -> Optional[int]:
    """The child's exit status (-signal if killed), or None after killing it at timeout."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def serve() -> None:
    # What every run would import: loaded once, before the first fork.
    import mteemu.cli
    import mteemu.kernel.kernel
    import mteemu.kernel.syscalls.table
    from mteemu.machine import native

    native.available()                       # the library loaded (ctypes) before forking
    mteemu.cli.build_parser()                # made once (cached)
    import gc

    gc.freeze()                              # the children's collections leave these pages shared
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(req["argv"], req["cwd"])
        status = _wait(pid, float(req["timeout"]))
        reply = {"status": status} if status is not None else {"status": None, "timeout": True}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
