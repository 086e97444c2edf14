"""Descriptors mteemu is started with beyond stdio (a shell's process substitution, make's
jobserver): every one without FD_CLOEXEC is the guest's under the same number, as a
program exec'd on Linux has them; /dev/fd/N and /proc/self/fd/N reach it, and it is the
host's object (foreign: its owner and mode are not the guest's to change)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import compile_guest

pytestmark = pytest.mark.slow                 # runs guest programs

SOURCE = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char buf[64];
    int fd = open(argv[1], O_RDONLY);                 /* /dev/fd/N or /proc/self/fd/N */
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (n < 0) { printf("open %s: %s\n", argv[1], strerror(errno)); return 1; }
    buf[n] = 0;
    printf("read through %s: %s", argv[1], buf);
    int out = atoi(argv[2]);
    dprintf(out, "written to fd %d\n", out);
    printf("fd %s: %s\n", argv[3], fcntl(atoi(argv[3]), F_GETFD) < 0 ? strerror(errno) : "open");
    printf("fchmod of the inherited file: %s\n", fchmod(out, 0777) < 0 ? strerror(errno) : "done");
    return 0;
}
"""


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> str:
    return compile_guest(tmp_path_factory.mktemp("inherit"), "inherit", SOURCE.replace("#include <unistd.h>",
                         "#include <unistd.h>\n#include <stdlib.h>"))


@pytest.mark.parametrize("path", ["/dev/fd/{r}", "/proc/self/fd/{r}"])
@pytest.mark.parametrize("confined", [False, True], ids=["host-root", "--root"])
def test_inherited_descriptors_are_the_guests(tmp_path, prog, path: str, confined: bool) -> None:
    r, w = os.pipe()
    os.write(w, b"hello\n")
    os.close(w)
    out = tmp_path / "out.txt"
    out_fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    cloexec = os.open(os.devnull, os.O_RDONLY)          # FD_CLOEXEC (PEP 446): not handed over
    os.set_inheritable(r, True)
    os.set_inheritable(out_fd, True)
    root = ["--root", str(tmp_path)] if confined else []
    try:
        p = subprocess.run([sys.executable, "-m", "mteemu", "run", *root, prog, path.format(r=r), str(out_fd),
                            str(cloexec)], capture_output=True, pass_fds=(r, out_fd), timeout=60,
                           stdin=subprocess.DEVNULL)
    finally:
        for fd in (r, out_fd, cloexec):
            os.close(fd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == [
        f"read through {path.format(r=r)}: hello", f"fd {cloexec}: Bad file descriptor",
        "fchmod of the inherited file: Operation not permitted"]
    assert out.read_text() == f"written to fd {out_fd}\n"
    assert out.stat().st_mode & 0o777 == 0o600            # the host's file kept its mode
