"""The guest's /dev under --root (issue 23, item 11): emulated as Linux's devtmpfs gives it
(devfs.py), compared with what Debian's arm64 kernel prints for tests/devices.c; without
--root the guest sees the host's /dev, as under qemu-user."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import build_test_program, run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow

# Linux 6.1 on arm64 (a Debian system: udev's /dev) with stdin not a terminal.
LINUX = {
    "/dev/null": "chr 1:3 666", "/dev/zero": "chr 1:5 666", "/dev/full": "chr 1:7 666",
    "/dev/random": "chr 1:8 666", "/dev/urandom": "chr 1:9 666", "/dev/tty": "chr 5:0 666",
    "null read": "0", "null write": "3", "null lseek": "0", "null mmap": "ENODEV",
    "zero read": "8 0", "zero shared mmap": "zeros",
    "full write": "ENOSPC", "full read": "4 0",
    "urandom read": "200",
    "tty open": "ENXIO",                                # no controlling terminal
    "stdin link": "/proc/self/fd/0", "fd link": "/proc/self/fd", "dev/fd/2": "ok",
    "shm statfs": "tmpfs", "dev statfs": "tmpfs",
    "shm create": "ok", "shm PROT_MTE mmap": "ok", "shm shared": "from the child", "shm unlink": "ok",
    "cwd after ../..": "/dev",
    "mounts /dev": "yes", "mounts /dev/shm": "yes",
}


@pytest.fixture(scope="module")
def devices(tmp_path_factory) -> str:
    return build_test_program(tmp_path_factory, "devices.c")


def _results(out: bytes) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.decode().splitlines())


def test_dev_under_root_is_linuxs(tmp_path, devices, privileges) -> None:
    root = tmp_path / "root"
    root.mkdir()
    before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    r = run_mteemu(["run", "--root", str(root), devices], cwd=tmp_path, prefix=privileges)
    assert r.returncode == 0, r.stderr
    assert _results(r.stdout) == LINUX
    assert os.listdir(root) == []                       # nothing was made in the user's root
    after = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    assert after == before                              # the tmpfs behind /dev/shm is gone


def test_without_root_dev_is_the_hosts(tmp_path, devices) -> None:
    r = run_mteemu(["run", devices, "host"], cwd=tmp_path)
    got = _results(r.stdout)
    assert r.returncode == 0, r.stderr
    assert got["/dev/null"] == "chr 1:3 666" and got["mounts /dev"] == "no"
    q = subprocess.run(["qemu-aarch64", devices, "host"], capture_output=True, timeout=60, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
    assert _results(q.stdout)["null mmap"] == got["null mmap"] == "ENODEV"
