"""What a system call handler declares about itself: its name, which arguments are C strings
(for --strace), and how fully it models Linux (gVisor keeps the same facts in its table:
`PartiallySupported("msync", Msync, "Full data flush is not guaranteed…")`).

The decorator only marks the function; `table.py` collects the marks from the handler
modules it names, so no module fills a table by being imported.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, NamedTuple, TypeVar


class Support(enum.Enum):
    FULL = "full"            # as Linux does it, as far as the guest can tell
    PARTIAL = "partial"      # succeeds without all of Linux's effect: the note says what is missing
    REFUSED = "refused"      # always fails, as a confined task's call would: the note says why


@dataclass(frozen=True)
class Spec:
    name: str
    strings: tuple[int, ...] = ()      # argument positions that are C strings (for --strace)
    support: Support = Support.FULL
    note: str = ""


class Unmodelled(NamedTuple):
    """A call's result that left out some of Linux's effect in this case (e.g. setrlimit of a
    limit that is kept but not enforced): `--strace` shows `what` on the call's line."""
    result: int
    what: str


class NoReturnResult:
    """The result of a call that set the registers itself (rt_sigreturn, execve)."""


NORETURN = NoReturnResult()

F = TypeVar("F", bound=Callable)


def syscall(name: str, strings: tuple[int, ...] = (), support: Support = Support.FULL,
            note: str = "") -> Callable[[F], F]:
    """Mark a handler `(k, t, *args) -> int | Wait | NORETURN | Unmodelled` as the call `name`.
    A partial or refused call says why in `note` (printed by `mteemu syscalls`)."""
    if support is not Support.FULL and not note:
        raise ValueError(f"{name}: a {support.value} call needs a note")

    def mark(fn: F) -> F:
        specs = fn.__dict__.setdefault("syscalls", [])
        specs.append(Spec(name, strings, support, note))
        return fn
    return mark


def refused(errno_value: int, names: tuple[str, ...], note: str) -> Callable:
    """One handler for calls that always fail with `errno_value` (privileged or reaching
    outside the emulated world)."""
    from mteemu.kernel.uaccess import SyscallError

    def handler(k: object, t: object) -> int:
        raise SyscallError(errno_value)

    for name in names:
        syscall(name, support=Support.REFUSED, note=note)(handler)
    return handler
