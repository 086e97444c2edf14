"""What a run is asked to do (RunOptions, from the command line or a test) and what it gives
back (RunResult): the kernel reads the one and returns the other; the CLI renders both."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, TextIO

from mteemu.kernel.mm.fixes import FIXES
from mteemu.report.tagfault import TagFaultReport


@dataclass
class RunOptions:
    seed: int = 0
    timeout: Optional[float] = None
    strace: bool = False
    mem_limit: Optional[int] = None        # bytes of RAM the guest may use (default: the board's)
    mte_tcf_preferred: str = "async"       # the CPU's preferred tag-check mode, as Linux's sysfs knob
    root: Optional[str] = None             # confine the guest's paths to this host directory
    swap: int = 0                          # bytes of swap (0: none)
    swap_file: Optional[str] = None        # keep swap in this new file instead of host memory
    tag_storage_policy: str = "metadata"   # RFC v1 MIGRATE_METADATA, or "cma" (v2/v3)
    check_invariants: bool = False         # check the memory manager's invariants as it runs
    stats: bool = False                    # print the memory counters and the hot path's at exit
    kmsg: bool = False                     # print the kernel log at exit
    fixes: tuple[str, ...] = FIXES         # the RFC's race fixes in force (all, unless --without)
    sysroot: Optional[str] = None          # -L: where a dynamic program's absolute paths are tried first
    diag: Optional[TextIO] = None          # where "mteemu:" lines go (default stderr)
    closed_stdio: tuple[int, ...] = ()     # of fds 0-2, those mteemu was started without
    inherited_fds: tuple[int, ...] = ()    # fds above 2 mteemu was started with (no FD_CLOEXEC): the guest's too
    alloc_history: int = 0                 # allocator calls remembered per address space (0: none)


@dataclass
class RunResult:
    status: int                              # mteemu's exit status: the first process's, or 128 + its signal
    tag_fault: Optional[TagFaultReport] = None   # the last tag-check fault that killed a process
