"""The task list (Linux's init_task list and pid allocation): every guest process and thread
of the run by id, the first process, and the counters /proc/stat shows."""
from __future__ import annotations

from typing import Optional

from mteemu.kernel.process import Process, Thread

FIRST_PID = 1000


class Tasks:
    def __init__(self) -> None:
        self.procs: dict[int, Process] = {}
        self.threads: dict[int, Thread] = {}
        self.init: Optional[Process] = None     # the first process: its end is mteemu's exit
        self.forks = 0                          # processes created (/proc/stat processes)
        self._next_pid = FIRST_PID

    def new_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    @property
    def last_pid(self) -> int:
        return self._next_pid - 1

    def add_process(self, proc: Process) -> None:
        self.procs[proc.pid] = proc
        if self.init is None:
            self.init = proc

    def add_thread(self, t: Thread) -> None:
        self.threads[t.tid] = t

    def ppid(self, proc: Process) -> int:
        """getppid(): the first process's parent is outside the emulated world (shown as the
        pid before it); an orphan's is init's reaper (1)."""
        if proc.parent is not None:
            return proc.parent.pid
        return proc.pid - 1 if proc is self.init else 1
