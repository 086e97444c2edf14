"""The system call's registers as the kernel reads and writes them, by the cheapest way
there is: on the native path C has read x8 and x0-x5 into its syscall block before calling
the kernel and writes x0 back after it; the reference path uses one uc_reg_read_batch()
into buffers made once (the binding's own reg_read costs microseconds). C can also answer
getpid, getppid and gettid itself while the kernel has armed it (its fast block)."""
from __future__ import annotations

import ctypes
import struct
from typing import Any, Callable, Optional, Sequence

from mteemu.machine import unicorn_shim
from mteemu.machine.arm64 import MASK64, SYSCALL_ARG_REGS, X_REGS


class SyscallRegs:
    def __init__(self, uc: Any, sys_block: Optional[Any], fast_block: Optional[Any]) -> None:
        self.uc = uc
        self._sys, self._fast = sys_block, fast_block
        self._arg_ids = (ctypes.c_int * len(SYSCALL_ARG_REGS))(*SYSCALL_ARG_REGS)
        self._arg_values = (ctypes.c_uint64 * len(SYSCALL_ARG_REGS))()
        self._arg_ptrs = (ctypes.c_void_p * len(SYSCALL_ARG_REGS))(
            *(ctypes.addressof(self._arg_values) + 8 * i for i in range(len(SYSCALL_ARG_REGS))))
        self._one = ctypes.c_uint64()

    def set_x(self, n: int, value: int) -> None:
        self._one.value = value & MASK64
        unicorn_shim.reg_write_u64(self.uc, X_REGS[n], self._one)

    def args(self) -> tuple[int, ...]:
        """(x8, x0..x5): the syscall number and its six arguments."""
        if self._sys is not None:
            return struct.unpack_from("7Q", self._sys)
        unicorn_shim.reg_read_batch(self.uc, self._arg_ids, self._arg_ptrs, len(SYSCALL_ARG_REGS))
        return tuple(self._arg_values)

    def ret(self, value: int) -> None:
        """X0 := a system call's result (written back by C when the call returns to it)."""
        if self._sys is not None:
            self._sys[7] = value & MASK64
            self._sys[8] = 1
        else:
            self.set_x(0, value)

    def svc(self, nr: int, args: Sequence[int], kernel: Callable[[], object]) -> None:
        """An SVC made from Python (the syscall fuzzer, the in-process kernel tests): the
        registers set, then the kernel called and its result written back, as when C
        takes the exception."""
        self.set_x(8, nr)
        for i, value in enumerate(args):
            self.set_x(i, value)
        if self._sys is None:
            kernel()
            return
        self._sys[0] = nr & MASK64
        for i in range(6):
            self._sys[1 + i] = self.uc.reg_read(X_REGS[i])
        self._sys[8] = 0
        kernel()
        if self._sys[8]:
            self.set_x(0, self._sys[7])

    def answer_ids(self, pid: int, ppid: int, tid: int) -> None:
        """Let C answer getpid, getppid and gettid itself until disarm_ids() (the native
        path only: the reference makes every call in the kernel)."""
        fast = self._fast
        if fast is not None:
            fast[1], fast[2], fast[3] = pid, ppid, tid
            fast[0] = 1

    def disarm_ids(self) -> None:
        if self._fast is not None:
            self._fast[0] = 0

    def ids_answered(self) -> int:
        """How many getpid/getppid/gettid C answered itself."""
        return self._fast[4] if self._fast is not None else 0
