"""Wait queues (include/linux/wait.h): what a blocked thread sleeps on.

A call that cannot finish blocks with a `Wait` naming the queues of the objects whose change
could finish it (a pipe, a futex waiter, a process's children). When such an object changes it
wakes its queue (`__wake_up()`), and the scheduler re-tries only the calls of the threads
woken, so the cost of a system call does not grow with the number of blocked threads. A
`Wait` that names no queue list (None) is re-tried after every call, as before queues: a host
object (a FIFO's other end, a host file's poll) can change without the kernel seeing it.
"""
from __future__ import annotations

from typing import Any


class WaitQueue:
    """wait_queue_head_t: the threads sleeping on one object."""

    __slots__ = ("_sleepers",)

    def __init__(self) -> None:
        # thread -> the scheduler's set of threads to re-try (its `ready` dict)
        self._sleepers: dict[Any, dict[Any, None]] = {}

    def add(self, thread: Any, ready: dict[Any, None]) -> None:
        self._sleepers[thread] = ready

    def remove(self, thread: Any) -> None:
        self._sleepers.pop(thread, None)

    def wake(self) -> None:
        """__wake_up(): every sleeper's call is re-tried at the scheduler's next look (each
        finishes or sleeps on: the wake-up is a hint, the call's own test decides)."""
        for thread, ready in self._sleepers.items():
            ready[thread] = None
