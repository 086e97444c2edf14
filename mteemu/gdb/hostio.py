"""GDB's host I/O (vFile: packets), read-only, in the traced process's world: paths are
resolved as the process resolves them (its root, /proc and /sys generated), so GDB reads
/proc/PID/smaps to learn which pages are tagged — never the host's files."""
from __future__ import annotations

import errno
import stat as st
import struct
from typing import Callable

from mteemu.gdb import rsp
from mteemu.kernel.fs.file import OpenFile
from mteemu.kernel.uaccess import SyscallError

# GDB's File-I/O errno values (gdb/doc "Errno Values"): anything else is EUNKNOWN.
_FILEIO_ERRNO = {errno.EPERM: 1, errno.ENOENT: 2, errno.EINTR: 4, errno.EBADF: 9, errno.EACCES: 13,
                 errno.EFAULT: 14, errno.EBUSY: 16, errno.EEXIST: 17, errno.ENODEV: 19, errno.ENOTDIR: 20,
                 errno.EISDIR: 21, errno.EINVAL: 22, errno.ENFILE: 23, errno.EMFILE: 24, errno.EFBIG: 27,
                 errno.ENOSPC: 28, errno.ESPIPE: 29, errno.EROFS: 30, errno.ENAMETOOLONG: 91}
U32 = 0xFFFFFFFF


class HostIo:
    def __init__(self, open_for_reading: Callable[[bytes], OpenFile], packet_size: int) -> None:
        self.open_for_reading = open_for_reading
        self.packet_size = packet_size
        self.files: dict[int, OpenFile] = {}
        self._next_file = 1

    def close_all(self) -> None:
        for f in self.files.values():
            f.release()
        self.files.clear()

    def handle(self, text: str) -> "str | bytes":
        """Host I/O (GDB's vFile:), read-only, resolved as the traced process resolves paths."""
        op, _, args = text[len("vFile:"):].partition(":")
        try:
            if op == "setfs":
                return "F0"
            if op == "open":
                name, flags, _mode = args.split(",")
                if int(flags, 16) & 3:
                    return _fileio_error(errno.EACCES)     # GDB only reads; the guest's files stay as they are

                opened = self.open_for_reading(bytes.fromhex(name))
                fd, self._next_file = self._next_file, self._next_file + 1
                self.files[fd] = opened
                return f"F{fd:x}"
            if op == "pread":
                fd, count, offset = (int(x, 16) for x in args.split(","))
                f = self.files.get(fd)
                if f is None:
                    return _fileio_error(errno.EBADF)
                if offset >= 1 << 63:
                    return _fileio_error(errno.EINVAL)     # Linux's pread: a negative loff_t
                data = f.pread(min(count, self.packet_size // 2), offset)
                return f"F{len(data):x};".encode() + rsp.escape(data)
            if op == "close":
                closing = self.files.pop(int(args, 16), None)
                if closing is None:
                    return _fileio_error(errno.EBADF)
                closing.release()
                return "F0"
            if op == "fstat":
                f = self.files.get(int(args, 16))
                if f is None:
                    return _fileio_error(errno.EBADF)
                s = f.stat()
                # GDB's File-I/O struct stat ("struct stat" in the manual): 32-bit fields but
                # size, blksize and blocks; a time outside 0..2^32-1 is given as the nearest.
                raw = struct.pack(">IIIIIIIQQQIII", s.st_dev & U32, s.st_ino & U32, s.st_mode & U32,
                                  min(s.st_nlink, U32), min(s.st_uid, U32), min(s.st_gid, U32),
                                  s.st_rdev & U32, s.st_size,
                                  s.st_blksize if st.S_ISREG(s.st_mode) else 4096, s.st_blocks,
                                  *(_u32_time(t) for t in (s.st_atime, s.st_mtime, s.st_ctime)))
                return f"F{len(raw):x};".encode() + rsp.escape(raw)
        except SyscallError as e:
            return _fileio_error(e.errno)
        except OSError as e:
            return _fileio_error(e.errno or errno.EIO)
        return ""


def _u32_time(t: float) -> int:
    return min(max(int(t), 0), U32)


def _fileio_error(err: int) -> str:
    return f"F-1,{_FILEIO_ERRNO.get(err, 9999):x}"
