"""A transfer of many chunks stops at the chunk in flight when mteemu is told to stop
(SIGINT, SIGTERM, SIGHUP): a 2 GiB readv or writev no longer holds the run until it
returns (issue 23, item 5). In-process: the syscall layer's chunked copy alone."""
from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from mteemu import host_signals
from mteemu.kernel.fs.file import OpenFile
from mteemu.kernel.syscalls import read_write


class _Memory:
    def __init__(self) -> None:
        self.moved = 0

    def write(self, addr: int, data: bytes) -> None:
        self.moved += len(data)

    def read(self, addr: int, n: int) -> bytes:
        self.moved += n
        return bytes(n)


class _Endless(OpenFile):
    """Reads zeros and swallows writes, like /dev/zero; a stop signal arrives during the
    third chunk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(2)
        self.calls = 0
        self.monkeypatch = monkeypatch

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == 3:
            self.monkeypatch.setattr(host_signals, "_pending", signal.SIGTERM)

    def read(self, n: int) -> bytes:
        self._tick()
        return bytes(n)

    def write(self, data: bytes) -> int:
        self._tick()
        return len(data)


@pytest.mark.parametrize("copy", [read_write.read_into, read_write.write_from], ids=["read", "write"])
def test_a_stop_signal_ends_a_long_transfer(monkeypatch, copy) -> None:
    t = SimpleNamespace(proc=SimpleNamespace(mem=_Memory()))
    f = _Endless(monkeypatch)
    done = copy(t, f, [(0x10000, 1024 * read_write.CHUNK)])
    assert done == 3 * read_write.CHUNK and f.calls == 3 and t.proc.mem.moved == 3 * read_write.CHUNK
    monkeypatch.setattr(host_signals, "_pending", None)
    assert copy(t, _Endless(monkeypatch), [(0, 2 * read_write.CHUNK)]) == 2 * read_write.CHUNK    # no signal: all of it
