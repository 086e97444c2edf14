"""System-call sequences for the differential fuzzer against the Linux oracle: the same
random sequence played by tests/syscall_player.c under mteemu and under Linux, compared
call by call (return value or errno). The calls are those whose answers do not depend on
the machine (files in a fresh directory, descriptors, pipes, memory mappings in a fixed
playground, the tagged-address ABI): process identity, clocks and the working directory's
name are left out, and nothing may block (pipes are made O_NONBLOCK) or end the player.

Used by tests/test_oracle.py (a fixed seed) and `scripts/fuzz oracle` (as many as you like).
"""
from __future__ import annotations

import random
import struct

SCRATCH, PLAYGROUND, TAGGED = 0x2_0000_0000, 0x3_0000_0000, 0x4_0000_0000
N_PATHS = 12                      # the player's path strings, at SCRATCH + 256 * i
DATA, STAT_BUF, PIPE_FDS = SCRATCH + 0x8000, SCRATCH + 0xA000, SCRATCH + 0x9000
AT_FDCWD = -100 & (2**64 - 1)
O_FLAGS = (0, 1, 2, 0o100, 0o1000, 0o2000, 0o200, 0o40000, 0o4000, 0o2000000, 0o10000000)
PROTS = (0, 1, 3, 5, 7, 0x20 | 3, 0x40 | 1)
MAP_FLAGS = (0x22, 0x02, 0x01, 0x21, 0x32, 0x122, 0x100022)   # private/shared, anonymous, fixed, noreserve...


class Generator:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def fd(self) -> int:
        return self.r.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 64, 1023, -1 & (2**64 - 1), AT_FDCWD])

    def path(self) -> int:
        r = self.r
        return r.choice([SCRATCH + 256 * r.randrange(N_PATHS)] * 6 + [0, 0xDEAD_0000, (3 << 56) | SCRATCH])

    def buf(self) -> int:
        r = self.r
        return r.choice([DATA, DATA + 7, DATA + 4090, STAT_BUF, 0, 0xDEAD_0000,
                         TAGGED + 16 * r.randrange(64) | r.randrange(16) << 56, TAGGED + 16 * r.randrange(64),
                         (2 << 56) | DATA])

    def count(self) -> int:
        return self.r.choice([0, 1, 16, 100, 4096, 8192, 2**31, 2**64 - 1])

    def place(self) -> int:
        return PLAYGROUND + 0x1000 * self.r.randrange(256) + self.r.choice([0, 0, 0, 1, 0x800])

    def length(self) -> int:
        return self.r.choice([0, 1, 0x1000, 0x3000, 0x10000, 0x100000, 2**63])

    def call(self) -> list[int]:
        r, f = self.r, self
        makers = {
            56: lambda: [f.fd() if r.random() < 0.3 else AT_FDCWD, f.path(),
                         sum(r.sample(O_FLAGS, r.randrange(1, 4))), r.choice([0o600, 0o755, 0])],   # openat
            57: lambda: [f.fd()],                                                                    # close
            63: lambda: [f.fd(), f.buf(), f.count()],                                                # read
            64: lambda: [f.fd(), f.buf(), f.count()],                                                # write
            67: lambda: [f.fd(), f.buf(), f.count(), r.choice([0, 1, 4096, 2**63])],                 # pread64
            68: lambda: [f.fd(), f.buf(), f.count(), r.choice([0, 1, 4096, 2**63])],                 # pwrite64
            62: lambda: [f.fd(), r.choice([0, 1, -1 & (2**64 - 1), 4096, 2**62]), r.randrange(6)],   # lseek
            23: lambda: [f.fd()],                                                                    # dup
            24: lambda: [f.fd(), f.fd(), r.choice([0, 0o2000000, 1])],                               # dup3
            25: lambda: [f.fd(), r.choice([0, 1, 2, 3, 4, 1030, 99]), r.choice([0, 1, 0o4000, 5, 2**63])],  # fcntl
            59: lambda: [r.choice([PIPE_FDS, 0, 0xDEAD_0000]), 0o4000 | r.choice([0, 0o2000000, 0o40000])],  # pipe2
            34: lambda: [AT_FDCWD, f.path(), r.choice([0o700, 0o755])],                              # mkdirat
            35: lambda: [AT_FDCWD, f.path(), r.choice([0, 0x200, 1])],                               # unlinkat
            36: lambda: [f.path(), AT_FDCWD, f.path()],                                              # symlinkat
            37: lambda: [AT_FDCWD, f.path(), AT_FDCWD, f.path(), r.choice([0, 0x400])],             # linkat
            78: lambda: [AT_FDCWD, f.path(), f.buf(), r.choice([0, 1, 64, 4096])],                   # readlinkat
            48: lambda: [AT_FDCWD, f.path(), r.randrange(8), r.choice([0, 0x200, 0x100])],           # faccessat
            53: lambda: [AT_FDCWD, f.path(), r.choice([0o600, 0o7777, 0o100000]), 0],                # fchmodat
            79: lambda: [f.fd() if r.random() < 0.3 else AT_FDCWD, f.path(), f.buf(),
                         r.choice([0, 0x100, 0x1000, 0x800, 7])],                                    # newfstatat
            80: lambda: [f.fd(), f.buf()],                                                           # fstat
            46: lambda: [f.fd(), r.choice([0, 1, 4096, 2**63])],                                     # ftruncate
            82: lambda: [f.fd()],                                                                    # fsync
            166: lambda: [r.choice([0, 0o22, 0o777, 0o7777])],                                       # umask
            222: lambda: [r.choice([0, f.place()]), f.length(), r.choice(PROTS), r.choice(MAP_FLAGS),
                          r.choice([-1 & (2**64 - 1), 3, 4]), r.choice([0, 1, 4096])],               # mmap
            215: lambda: [f.place(), f.length()],                                                    # munmap
            226: lambda: [f.place(), f.length(), r.choice(PROTS)],                                   # mprotect
            233: lambda: [f.place(), f.length(), r.choice([0, 1, 2, 3, 4, 8, 9, 10, 99])],           # madvise (no KSM)
            227: lambda: [f.place(), f.length(), r.choice([0, 1, 2, 4, 6])],                         # msync
            278: lambda: [f.buf(), r.choice([0, 1, 16, 300]), r.choice([0, 1, 2, 4, 8])],            # getrandom
            167: lambda: [r.choice([56, 55, 99]), r.choice([0, 1, 3, 7, 0xfffe << 3 | 3, 2**63]), 0, 0, 0],  # prctl
            174: lambda: [],                                                                         # getuid
        }
        nr = r.choice(list(makers))
        args = [a & (2**64 - 1) for a in makers[nr]()]
        return [nr] + (args + [0] * 6)[:6]

    def sequence(self, n: int) -> bytes:
        return b"".join(struct.pack("<7Q", *self.call()) for _ in range(n))


def differences(mteemu_out: str, linux_out: str) -> list[str]:
    """Where the two runs answered differently, call by call."""
    a, b = mteemu_out.splitlines(), linux_out.splitlines()
    out = [f"call {i}: mteemu {x!r}, Linux {y!r}" for i, (x, y) in enumerate(zip(a, b)) if x != y]
    if len(a) != len(b):
        out.append(f"mteemu answered {len(a)} calls, Linux {len(b)}")
    return out


def play(player: str, seed: int, calls: int, machine, python: str) -> tuple[str, str]:
    """The sequence of `seed` played under mteemu (confined: --root a scratch directory,
    stdio private files in it) and under the Linux oracle: their answers, a line a call."""
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from mteemu.oracle import runner

    seq = Generator(seed).sequence(calls)
    # The guest's files on tmpfs, as the oracle's are (its initramfs): file systems differ
    # in what they allow (the largest offset, PROT_MTE on a file).
    root = tempfile.mkdtemp(prefix="mteemu-oracle-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        io = Path(root, "io")
        io.mkdir()
        (io / "in").write_bytes(seq)
        with open(io / "in", "rb") as stdin, open(io / "out", "wb") as out, open(io / "err", "wb") as err:
            subprocess.run([python, "-m", "mteemu", "run", "--root", root, "--clear-env", player], stdin=stdin,
                           stdout=out, stderr=err, cwd=io, timeout=600, env={**os.environ, "LANG": "C.UTF-8"})
        ours = (io / "out").read_bytes().decode(errors="replace")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    outcomes, _ = runner.run_batch([runner.Program(Path(player), stdin=seq, name=player)], machine)
    return ours, outcomes[0].stdout.decode(errors="replace")
