"""SIGINT, SIGTERM and SIGHUP sent to mteemu stop the guest promptly, also while it
spins in translated code that never calls back into Python.

Python runs its signal handlers only between bytecodes of the main thread, and the
main thread may sit inside Unicorn's emu_start() for as long as the guest likes. So the
C-level handler's wakeup byte (signal.set_wakeup_fd) is read by a helper thread, which
stops the CPU (uc_emu_stop() is safe from another thread, as Unicorn's own timeout
does). The Python handler records the signal; the kernel raises HostSignal at its next
clean point (the CPU's INTERRUPTED exit, or the scheduler's idle loop). Only inside a
blocking host call marked `interruptible()` (a read of a terminal, an idle sleep) does
the handler raise at once, so that such a call cannot hold the run. Raising anywhere
else could land in a ctypes callback's prologue, where Python drops the exception.
The kernel then releases what it holds on the host (the swap file), and mteemu exits
128 + N with one line.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable, Iterator, Optional

from mteemu.errors import HostSignal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_pending: Optional[int] = None
_interruptible = 0


def check() -> None:
    """Raise HostSignal if a stop signal has arrived (called at the kernel's clean points)."""
    if _pending is not None:
        raise HostSignal(_pending, signal.Signals(_pending).name)


def pending() -> bool:
    """Whether a stop signal waits: long work on the guest's behalf (a transfer of many
    chunks) ends early, and the kernel's next clean point raises HostSignal."""
    return _pending is not None


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Around a host call that may block for long: a stop signal raises inside it."""
    global _interruptible
    _interruptible += 1
    try:
        check()
        yield
    finally:
        _interruptible -= 1


def _handler(stop_cpu: Callable[[], None]):  # noqa: ANN202
    def handle(signum: int, _frame: object) -> None:
        global _pending
        if _pending is None:
            _pending = signum
        stop_cpu()
        if _interruptible:
            check()
    return handle


@contextlib.contextmanager
def stopping(stop_cpu: Callable[[], None]) -> Iterator[None]:
    """Install the handlers for one run; `stop_cpu` is thread-safe (Cpu.interrupt)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield                     # only the main thread can own signal handlers
        return
    _pending = None
    r, w = os.pipe()
    os.set_blocking(w, False)
    old_handlers = {s: signal.signal(s, _handler(stop_cpu)) for s in STOP_SIGNALS}
    old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                data = os.read(r, 64)
            except OSError:
                return
            if done.is_set() or not data:
                return
            if any(b in STOP_SIGNALS for b in data):
                stop_cpu()

    watcher = threading.Thread(target=watch, name="mteemu-signals", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(old_fd)
        for s, h in old_handlers.items():
            signal.signal(s, h)
        os.write(w, b"\0")        # wake the watcher so that it ends
        watcher.join(1)
        os.close(w)
        os.close(r)
