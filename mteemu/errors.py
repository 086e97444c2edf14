"""The small exception hierarchy of mteemu, and the exit statuses it maps to.

Every error a user can cause ends as one line on stderr (``mteemu: ...``) and a
documented exit status, never a traceback. The statuses are listed in docs/usage.md.
"""
from __future__ import annotations

# Exit statuses of the mteemu command itself (the guest's own status passes through).
EXIT_BAD_INPUT = 2        # missing/malformed file, wrong architecture, bad arguments
EXIT_TIMEOUT = 124        # --timeout expired (as coreutils' timeout(1))
EXIT_MODEL_VIOLATION = 3  # the memory-manager model broke an invariant / corrupted data via tags
EXIT_INTERNAL = 70        # a bug in mteemu (EX_SOFTWARE); the line says how to get details
EXIT_SIGNAL_BASE = 128    # guest killed by signal N -> 128 + N, as a shell reports it


class MteEmuError(Exception):
    """Base class: a one-line message and the exit status it ends the run with."""

    exit_status = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(MteEmuError):
    """Something the user gave us is missing, unreadable or of the wrong kind."""


class ElfError(InputError):
    """The program is not an arm64 Linux ELF that we can load."""


class NoInterpreter(InputError):
    """A dynamically linked program names an interpreter (PT_INTERP) that is nowhere to be found."""


class BoardError(InputError):
    """A board description (device tree) is unreadable or unusable."""


class GuestTimeout(MteEmuError):
    """The guest ran past --timeout."""

    exit_status = EXIT_TIMEOUT


class Deadlock(MteEmuError):
    """Every guest thread is blocked and nothing can ever wake one (Linux would hang)."""

    exit_status = EXIT_TIMEOUT


class HostSignal(MteEmuError):
    """mteemu itself was sent SIGINT, SIGTERM or SIGHUP: the run stops, 128 + N."""

    def __init__(self, signum: int, name: str) -> None:
        super().__init__(f"stopped by signal {signum} ({name}); the guest did not finish")
        self.exit_status = EXIT_SIGNAL_BASE + signum


class ModelViolation(MteEmuError):
    """The memory-manager model broke one of its invariants, or a tag write landed in
    tag storage that was not reserved while its pages held data: the corruption the
    RFC's design exists to prevent. `details` are the report's further lines."""

    exit_status = EXIT_MODEL_VIOLATION

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(f"model violation: {message}")
        self.details = details
