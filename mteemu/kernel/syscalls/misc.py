"""Miscellaneous syscalls: uname, getrandom, sysinfo, and privileged operations refused."""
from __future__ import annotations

import errno
import struct
import time
from typing import TYPE_CHECKING

from mteemu.kernel.process import Thread
from mteemu.kernel.syscalls.args import s32
from mteemu.kernel.syscalls.registry import Support, refused, syscall
from mteemu.kernel.uaccess import SyscallError
from mteemu.kernel.uts import UTS

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4


@syscall("uname")
def sys_uname(k: "KernelApi", t: Thread, buf: int) -> int:
    t.proc.mem.write(buf, b"".join(f.ljust(65, b"\0") for f in UTS))
    return 0


@syscall("getrandom")
def sys_getrandom(k: "KernelApi", t: Thread, buf: int, count: int, flags: int) -> int:
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) or (flags & GRND_RANDOM and flags & GRND_INSECURE):
        raise SyscallError(errno.EINVAL)
    count = min(count, 0x1FF_FFFF)
    if count:
        count = t.proc.mem.accessible(buf, count, write=True)
    # Deterministic under --seed: the same run gives the same "random" bytes.
    t.proc.mem.write(buf, k.rng.randbytes(count))
    return count


@syscall("sysinfo", support=Support.PARTIAL,
         note="the load averages and shared, buffer and high memory are 0")
def sys_sysinfo(k: "KernelApi", t: Thread, info: int) -> int:
    total = k.alloc.total_pages * 4096
    free = k.alloc.free_pages * 4096
    uptime = int(time.monotonic() - k.start_time)
    procs = sum(len(p.live_threads) for p in k.tasks.procs.values())
    # struct sysinfo (arm64): uptime, loads[3], totalram, freeram, sharedram, bufferram,
    # totalswap, freeswap, procs (u16), pad (u16), 4 bytes of alignment, totalhigh, freehigh,
    # mem_unit (u32) at 104. (The alignment was missing: mem_unit read 0 and glibc's
    # sysconf(_SC_PHYS_PAGES) with it; GNU sort then sized its buffer to nothing.)
    data = struct.pack("<q3Q6QHH4xQQI", uptime, 0, 0, 0, total, free, 0, 0, 0, 0, min(procs, 0xFFFF), 0, 0, 0, 1)
    t.proc.mem.write(info, data.ljust(112, b"\0"))
    return 0


# Privileged operations never reach the host, even when mteemu runs as root.
sys_privileged = refused(errno.EPERM, (
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "mount", "umount2", "reboot", "swapon",
    "swapoff", "sethostname", "setdomainname", "chroot", "init_module", "finit_module", "delete_module",
    "pivot_root", "kexec_load", "acct", "setns", "unshare", "setgroups", "syslog", "quotactl", "vhangup"),
    "privileged: refused even when mteemu runs as root (EPERM)")


# -- what never leaves the emulated world ---------------------------------------------------
# Tracing or reading another process would reach a host process if passed through: refused
# as an unprivileged task in a locked-down container is (EPERM).
sys_other_process = refused(errno.EPERM, (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf"),
    "would reach host processes: refused as in a locked-down container (EPERM)")


NO_SOCKETS = ("no network, as under a seccomp policy: socket and socketpair are EACCES, the calls on a "
              "descriptor ENOTSOCK")


# No network: socket() is refused as under a seccomp policy without network access; the
# other socket calls can only be given descriptors that are no sockets.
@syscall("socket", support=Support.REFUSED, note=NO_SOCKETS)
def sys_socket(k: "KernelApi", t: Thread, domain: int, kind: int, protocol: int) -> int:
    raise SyscallError(errno.EACCES)


@syscall("socketpair", support=Support.REFUSED, note=NO_SOCKETS)
def sys_socketpair(k: "KernelApi", t: Thread, domain: int, kind: int, protocol: int, sv: int) -> int:
    raise SyscallError(errno.EACCES)


@syscall("bind", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("connect", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("listen", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("accept", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("accept4", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("sendto", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("recvfrom", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("sendmsg", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("recvmsg", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("sendmmsg", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("recvmmsg", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("shutdown", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("getsockname", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("getpeername", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("setsockopt", support=Support.REFUSED, note=NO_SOCKETS)
@syscall("getsockopt", support=Support.REFUSED, note=NO_SOCKETS)
def sys_socket_op(k: "KernelApi", t: Thread, fd: int) -> int:
    t.proc.fds.get(s32(fd))                 # EBADF for a closed descriptor
    raise SyscallError(errno.ENOTSOCK)
