"""GDB's Ctrl-C while the guest runs: a helper thread watches the connection for the
interrupt byte and stops the CPU; the session sees `requested` at the CPU's next stop."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from mteemu.gdb import rsp


class CtrlC:
    def __init__(self, request_stop: Callable[[], None]) -> None:
        self.request_stop = request_stop
        self._requested = threading.Event()
        self._running = threading.Event()
        self._watcher: Optional[threading.Thread] = None

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def clear(self) -> None:
        self._requested.clear()

    def start(self, ch: rsp.Channel) -> None:
        """The guest runs: watch for GDB's interrupt."""
        self._running.set()
        self._watcher = threading.Thread(target=self._watch, args=(ch,), name="mteemu-gdb-ctrl-c", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        """The guest stopped: no more watching."""
        if self._watcher is not None:
            self._running.clear()
            self._watcher.join()
            self._watcher = None

    def _watch(self, ch: rsp.Channel) -> None:
        while self._running.is_set():
            if ch.poll_interrupt(0.05):
                self._requested.set()
                # The CPU may be between runs when asked: ask until the kernel has stopped.
                while self._running.is_set():
                    self.request_stop()
                    time.sleep(0.01)
                return
