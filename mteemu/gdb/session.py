"""One GDB session over the first guest process: the kernel's tracer (ptrace.Tracer).

All-stop, as gdbserver on Linux: when one thread stops, the whole emulated world is
stopped (it is one host thread: the kernel's loop waits here), and GDB's packets are
answered until it resumes. What GDB is told follows Linux's ptrace:

  * a signal is reported when it is about to be delivered (the signal-delivery stop);
    continuing with it (`C`) delivers it with its siginfo, `c` discards it;
  * a breakpoint or a finished single step is SIGTRAP; a Ctrl-C is SIGINT;
  * the exit is `W` (status) or `X` (signal);
  * exec: GDB learns the new program when it asked for exec events, otherwise it sees
    the SIGTRAP Linux sends a traced process after execve;
  * fork, vfork and clone of a new process: the child is not traced (GDB's default
    follow-fork-mode parent with detach-on-fork); it runs without the breakpoints.

Memory tags: qMemTags / QMemTags (type 1, allocation tags) with Linux's ptrace rules
(PROT_MTE mappings only), and vFile access to the guest's files so GDB can read
/proc/PID/smaps to learn which pages are tagged — in the guest's world, never the host's.
"""
from __future__ import annotations

import errno
import os
import stat as st
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.gdb import rsp, tdesc
from mteemu.kernel import ptrace
from mteemu.kernel import signals as S
from mteemu.kernel.fs.file import OpenFile
from mteemu.kernel.mm.addrspace import TOP_BYTE_MASK
from mteemu.kernel.process import Process, State, Thread
from mteemu.kernel.uaccess import SyscallError
from mteemu.machine import arm64 as C
from mteemu.machine.debughooks import WATCH_ACCESS, WATCH_READ, WATCH_WRITE, Watch

if TYPE_CHECKING:
    from mteemu.kernel.kernel import Kernel

PACKET_SIZE = 0x4000
SIGTRAP, SIGINT = S.SIGTRAP, S.SIGINT
TRAP_TRACE = 2                # si_code of a single-step trap
# GDB's File-I/O errno values (gdb/doc "Errno Values"): anything else is EUNKNOWN.
_FILEIO_ERRNO = {errno.EPERM: 1, errno.ENOENT: 2, errno.EINTR: 4, errno.EBADF: 9, errno.EACCES: 13,
                 errno.EFAULT: 14, errno.EBUSY: 16, errno.EEXIST: 17, errno.ENODEV: 19, errno.ENOTDIR: 20,
                 errno.EISDIR: 21, errno.EINVAL: 22, errno.ENFILE: 23, errno.EMFILE: 24, errno.EFBIG: 27,
                 errno.ENOSPC: 28, errno.ESPIPE: 29, errno.EROFS: 30, errno.ENAMETOOLONG: 91}


# The remote protocol numbers signals its own way (include/gdb/signals.def), not Linux's.
_TO_GDB = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 10, 8: 8, 9: 9, 10: 30, 11: 11, 12: 31, 13: 13, 14: 14,
           15: 15, 17: 20, 18: 19, 19: 17, 20: 18, 21: 21, 22: 22, 23: 16, 24: 24, 25: 25, 26: 26, 27: 27,
           28: 28, 29: 23, 30: 32, 31: 12, 32: 77, 64: 78, **{n: n + 12 for n in range(33, 64)}}
_FROM_GDB = {g: n for n, g in _TO_GDB.items()}
GDB_SIGNAL_UNKNOWN = 143


def to_gdb(sig: int) -> int:
    return _TO_GDB.get(sig, GDB_SIGNAL_UNKNOWN)


def from_gdb(sig: int) -> int:
    """A GDB signal number as Linux's (0 for one Linux has no equivalent of)."""
    return _FROM_GDB.get(sig, 0)


@dataclass
class Resume:
    step: Optional[Thread] = None     # single-step this thread (others run as scheduled)
    signal: int = 0                   # deliver this signal to the stopped thread (0: none)


class Session:
    """ptrace.Tracer for GDB; `accept` gives the connection when the guest is about to start."""

    def __init__(self, k: "Kernel", proc: Process, accept: Callable[[], rsp.Channel]) -> None:
        self.k, self.proc = k, proc
        self._accept = accept
        self.ch: Optional[rsp.Channel] = None
        self.attached = True
        self.hooks = k.cpu.attach_debugger()
        self.hooks.wanted = lambda: self.attached and k.sched.current is not None and k.sched.current.proc is self.proc
        self.hooks.on_flush = self._resolve_watches
        self.breaks: dict[int, int] = {}                # address -> kind (0: software, 1: hardware)
        self.watches: dict[tuple[int, int, int], None] = {}    # (kind, addr, length)
        self.stepping: Optional[Thread] = None
        self.exec_pending: Optional[Thread] = None
        self.gthread: Optional[Thread] = None           # Hg: whose registers g/p/G/P mean
        self.siginfo: dict[int, S.SigInfo] = {}         # tid -> the signal it stopped with
        self.last_stop = "S05"
        self.features: set[str] = set()
        self.files: dict[int, OpenFile] = {}
        self._next_file = 1
        self._interrupt = threading.Event()
        self._running = threading.Event()
        self._watcher: Optional[threading.Thread] = None

    @property
    def conn(self) -> rsp.Channel:
        """The connection, where only a connected session can be (serving packets)."""
        assert self.ch is not None
        return self.ch

    # -- ptrace.Tracer ---------------------------------------------------------------------
    def traces(self, proc: Process) -> bool:
        return self.attached and proc is self.proc

    def start(self, t: Thread) -> None:
        """Wait for GDB before the first instruction; GDB asks why we stopped with `?`."""
        try:
            self.ch = self._accept()
        except rsp.Disconnected as e:
            self.k.say(f"gdb: {e}; the guest runs without it")
            self._detach()
            return
        self.last_stop = self._stop_reply(t, SIGTRAP)
        self._stop(t, reply=None)

    def signal_stop(self, t: Thread, info: S.SigInfo) -> Optional[S.SigInfo]:
        self.siginfo[t.tid] = info
        self.stepping = None
        resume = self._stop(t, self._stop_reply(t, info.signo))
        if resume is None or not resume.signal:
            return None
        if resume.signal == info.signo:
            return info
        return S.SigInfo(resume.signal, S.SI_USER, pid=self.proc.pid, uid=os.getuid())

    def budget(self, t: Thread, budget: int) -> int:
        return 1 if self.stepping is t else budget

    def after_run(self, t: Thread, exit_: C.Exit) -> None:
        if not self.attached:
            return
        traced = t.proc is self.proc and t.state is not State.DEAD
        if self.exec_pending is not None and traced:
            self._report_exec(self.exec_pending)
        elif exit_.kind is C.ExitKind.DEBUG and traced:
            hit, self.hooks.hit = self.hooks.hit, None
            if hit is not None:
                kind = {WATCH_WRITE: "watch", WATCH_READ: "rwatch", WATCH_ACCESS: "awatch"}[hit.kind]
                self._trap(t, f"{kind}:{hit.va:x};")
            else:
                self._trap(t, "hwbreak:;" if self.breaks.get(exit_.pc) == 1 else "swbreak:;")
        elif self.stepping is t and traced and exit_.kind is not C.ExitKind.INTERRUPTED:
            self.stepping = None
            if not self.k.signals.deliverable(t):        # else the signal's stop reports the step's end
                self._trap(t, "")
        elif self._interrupt.is_set():
            self._stop_for_interrupt(t if traced else None)

    def idle(self) -> None:
        if self.attached and self._interrupt.is_set():
            self._stop_for_interrupt(None)

    def exited(self, proc: Process) -> None:
        status = proc.wait_status or 0
        sig = status & 0x7F
        reply = f"X{to_gdb(sig):02x}" if sig else f"W{(status >> 8) & 0xFF:02x}"
        self._end_running()
        self.last_stop = reply
        if self.ch is not None:
            try:
                self.ch.send(f"{reply};process:{proc.pid:x}")
            except rsp.Disconnected:
                pass
        self._detach()

    def execed(self, t: Thread) -> None:
        self.exec_pending = t

    # -- stopping and resuming -----------------------------------------------------------------
    def _thread_id(self, t: Thread) -> str:
        return f"p{self.proc.pid:x}.{t.tid:x}"

    def _stop_reply(self, t: Thread, sig: int, reason: str = "") -> str:
        return f"T{to_gdb(sig):02x}thread:{self._thread_id(t)};{reason}"

    def _trap(self, t: Thread, reason: str) -> None:
        self.siginfo[t.tid] = S.SigInfo(SIGTRAP, S.TRAP_BRKPT if reason else TRAP_TRACE,
                                        addr=ptrace.ThreadRegs(self.k, t).read(C.REG_PC))
        self._stop(t, self._stop_reply(t, SIGTRAP, reason))

    def _stop_for_interrupt(self, t: Optional[Thread]) -> None:
        self._interrupt.clear()
        if t is None:
            live = self.proc.live_threads
            if not live:
                return
            t = live[0]
        self.siginfo[t.tid] = S.SigInfo(SIGINT, S.SI_USER, pid=os.getpid())
        self._stop(t, self._stop_reply(t, SIGINT))

    def _report_exec(self, t: Thread) -> None:
        self.exec_pending = None
        self.stepping = None
        self.breaks.clear()              # the old program's addresses mean nothing now
        self.watches.clear()
        self._apply_points()
        self.siginfo[t.tid] = S.SigInfo(SIGTRAP, S.SI_USER, pid=self.proc.pid)
        reason = f"exec:{self.proc.exe.name.encode().hex()};" if "exec-events" in self.features else ""
        self._stop(t, self._stop_reply(t, SIGTRAP, reason))

    def _stop(self, t: Thread, reply: Optional[str]) -> Optional[Resume]:
        """The world is stopped at t: serve GDB until it resumes (None: it went away)."""
        if self.ch is None or not self.attached:
            return None
        self._end_running()
        self.gthread = t
        if reply is not None:
            self.last_stop = reply
        try:
            if reply is not None:
                self.ch.send(reply)
            resume = self._serve(t)
        except rsp.Disconnected as e:
            self.k.say(f"gdb: {e}; the guest runs on without it")
            self._detach()
            return None
        except rsp.ProtocolError as e:
            self.k.say(f"gdb: {e}; closing the connection, the guest runs on")
            self._detach()
            return None
        if resume is not None and self.attached:
            self._apply_points()
            self.stepping = resume.step
            self._start_running()
        return resume

    def _start_running(self) -> None:
        """While the guest runs, a helper thread turns GDB's Ctrl-C into a stop."""
        self._running.set()
        self._watcher = threading.Thread(target=self._watch_interrupt, name="mteemu-gdb-ctrl-c", daemon=True)
        self._watcher.start()

    def _end_running(self) -> None:
        if self._watcher is not None:
            self._running.clear()
            self._watcher.join()
            self._watcher = None

    def _watch_interrupt(self) -> None:
        ch = self.conn
        while self._running.is_set():
            if ch.poll_interrupt(0.05):
                self._interrupt.set()
                # The CPU may be between runs when asked: ask until the kernel has stopped.
                while self._running.is_set():
                    self.k.cpu.request_stop()
                    time.sleep(0.01)
                return

    def _detach(self) -> None:
        """Leave the process running on, untraced: breakpoints and watchpoints go."""
        self.attached = False
        self._end_running()
        self.stepping = None
        self.breaks.clear()
        self.watches.clear()
        if not self.k.cpu.running:
            self._apply_points()
        for f in self.files.values():
            f.release()
        self.files.clear()
        if self.ch is not None:
            self.ch.close()
            self.ch = None

    # -- breakpoints and watchpoints --------------------------------------------------------------
    def _apply_points(self) -> None:
        self.hooks.set_breakpoints(set(self.breaks))
        self._resolve_watches()

    def _resolve_watches(self) -> None:
        """Each watched range as the physical pages behind it now (debughooks.py)."""
        resolved = []
        for kind, addr, length in self.watches:
            va = addr & TOP_BYTE_MASK
            end = va + length
            while va < end:
                n = min(end - va, 4096 - (va & 0xFFF))
                pte = self.proc.mm.ptes.get(va >> 12)
                if pte is not None and pte.present:
                    resolved.append(Watch(va, (pte.pfn << 12) | (va & 0xFFF), n, kind))
                va += n
        self.hooks.set_watches(resolved)

    def _insert_point(self, kind: int, addr: int, length: int) -> str:
        if kind in (0, 1):
            self.breaks[addr] = kind
            return "OK"
        if kind in (WATCH_WRITE, WATCH_READ, WATCH_ACCESS):
            if not 0 < length <= 4096:
                return "E22"
            # Fault the pages in (as a read, FOLL_FORCE) so they have a physical home to watch.
            ptrace.read_memory(self.proc, addr, length)
            self.watches[(kind, addr, length)] = None
            return "OK"
        return ""

    def _remove_point(self, kind: int, addr: int, length: int) -> str:
        if kind in (0, 1):
            self.breaks.pop(addr, None)
            return "OK"
        if kind in (WATCH_WRITE, WATCH_READ, WATCH_ACCESS):
            self.watches.pop((kind, addr, length), None)
            return "OK"
        return ""

    # -- the packet loop --------------------------------------------------------------------------
    def _serve(self, stopped: Thread) -> Resume:
        ch = self.conn
        while True:
            packet = ch.read_packet()
            if not isinstance(packet, bytes):
                continue                           # an interrupt: already stopped
            try:
                answer = self._handle(packet, stopped)
            except ptrace.TraceError as e:
                answer = f"E{min(e.errno, 0xFF):02x}"
            except (ValueError, IndexError, KeyError, OverflowError, struct.error, rsp.ProtocolError):
                answer = "E16"                     # a malformed packet: EINVAL, and the session goes on
            if isinstance(answer, Resume):
                return answer
            if answer is not None:
                ch.send(answer)
            if not self.attached:
                raise rsp.Disconnected("gdb detached")

    def _handle(self, p: bytes, stopped: Thread):  # noqa: ANN202 - str, bytes, Resume or None
        head = p[:1]
        text = p.decode("latin-1")
        if head == b"?":
            return self.last_stop
        if head == b"g":
            return self._read_all_regs()
        if head == b"G":
            return self._write_all_regs(bytes.fromhex(text[1:]))
        if head == b"p":
            return self._read_reg(int(text[1:], 16))
        if head == b"P":
            n, value = text[1:].split("=")
            return self._write_reg(int(n, 16), bytes.fromhex(value))
        if head == b"m":
            addr, length = (int(x, 16) for x in text[1:].split(","))
            data = ptrace.read_memory(self.proc, addr, min(length, PACKET_SIZE // 2))
            return data.hex() if data or not length else "E0e"
        if head == b"M":
            where, hexdata = text[1:].split(":")
            addr, length = (int(x, 16) for x in where.split(","))
            ptrace.write_memory(self.k, self.proc, addr, bytes.fromhex(hexdata)[:length])
            return "OK"
        if head == b"X":
            colon = p.index(b":")
            addr, length = (int(x, 16) for x in p[1:colon].decode().split(","))
            if length:
                ptrace.write_memory(self.k, self.proc, addr, rsp.unescape(p[colon + 1:])[:length])
            return "OK"
        if head in (b"Z", b"z"):
            kind, where, size = text[1:].split(";")[0].split(",")
            op = self._insert_point if head == b"Z" else self._remove_point
            return op(int(kind), int(where, 16), int(size, 16))
        if head in (b"c", b"s", b"C", b"S"):
            return self._resume(text, stopped)
        if head == b"H":
            if text[1] == "g":
                spec = text[2:]
                t = self._thread(spec)
                if t is None and spec.split(".")[-1] not in ("0", "-1"):
                    return "E03"                   # 0 and -1: any thread, all threads
                self.gthread = t or self.gthread
            return "OK"
        if head == b"T":
            return "OK" if self._thread(text[1:]) is not None else "E03"
        if head == b"k":
            self._kill()
            return Resume()
        if head == b"D":
            self.conn.send("OK")
            self._detach()
            return Resume()
        if head == b"q":
            return self._query(text)
        if head == b"Q":
            return self._set(text, p)
        if head == b"v":
            return self._v(text, p, stopped)
        return ""

    def _resume(self, text: str, stopped: Thread) -> Resume:
        kind, rest = text[0], text[1:]
        sig = from_gdb(int(rest.split(";")[0], 16)) if kind in "CS" and rest else 0
        step = (self.gthread or stopped) if kind in "sS" else None
        if step is not None and step.state is State.DEAD:
            step = stopped
        return Resume(step=step, signal=sig)

    def _kill(self) -> None:
        self.attached = False                  # no exit report: GDB knows
        self.k.exits.kill_process(self.proc, S.SIGKILL)

    # -- registers -----------------------------------------------------------------------------
    def _regs(self) -> ptrace.ThreadRegs:
        t = self.gthread if self.gthread is not None and self.gthread.state is not State.DEAD else None
        return ptrace.ThreadRegs(self.k, t or self.proc.live_threads[0])

    def _read_all_regs(self) -> str:
        regs = self._regs()
        return "".join(_le(regs.read(r.key), r.bits) for r in tdesc.REGS)

    def _write_all_regs(self, data: bytes) -> str:
        regs, pos = self._regs(), 0
        for r in tdesc.REGS:
            n = r.bits // 8
            if pos + n > len(data):
                break
            regs.write(r.key, int.from_bytes(data[pos:pos + n], "little"))
            pos += n
        return "OK"

    def _read_reg(self, n: int) -> str:
        if not 0 <= n < len(tdesc.REGS):
            return "E0e"
        r = tdesc.REGS[n]
        return _le(self._regs().read(r.key), r.bits)

    def _write_reg(self, n: int, data: bytes) -> str:
        if not 0 <= n < len(tdesc.REGS):
            return "E0e"
        self._regs().write(tdesc.REGS[n].key, int.from_bytes(data, "little"))
        return "OK"

    # -- threads ---------------------------------------------------------------------------------
    def _thread(self, spec: str) -> Optional[Thread]:
        """The thread a thread-id names: pPID.TID, or TID."""
        tid = spec.split(".")[-1] if spec.startswith("p") else spec
        try:
            n = int(tid, 16)
        except ValueError:
            return None
        for t in self.proc.live_threads:
            if t.tid == n:
                return t
        return None

    def _threads_xml(self) -> bytes:
        rows = "".join(f'<thread id="{self._thread_id(t)}" core="0" name="{t.name.decode(errors="replace")}"/>'
                       for t in self.proc.live_threads)
        return f'<?xml version="1.0"?>\n<threads>{rows}</threads>\n'.encode()

    # -- queries ---------------------------------------------------------------------------------
    def _query(self, text: str):  # noqa: ANN202
        if text.startswith("qSupported"):
            offered = text.partition(":")[2].split(";")
            self.features = {f[:-1] for f in offered if f.endswith("+")}
            ours = [f"PacketSize={PACKET_SIZE:x}", "QStartNoAckMode+", "multiprocess+", "swbreak+", "hwbreak+",
                    "qXfer:features:read+", "qXfer:auxv:read+", "qXfer:exec-file:read+",
                    "qXfer:siginfo:read+", "qXfer:threads:read+", "vContSupported+", "memory-tagging+"]
            if "exec-events" in self.features:
                ours.append("exec-events+")
            return ";".join(ours)
        if text == "qC":
            return f"QC{self._thread_id(self.gthread or self.proc.live_threads[0])}"
        if text == "qAttached" or text.startswith("qAttached:"):
            return "0"                           # we started the process: quitting GDB kills it
        if text == "qfThreadInfo":
            return "m" + ",".join(self._thread_id(t) for t in self.proc.live_threads)
        if text == "qsThreadInfo":
            return "l"
        if text.startswith("qXfer:"):
            return self._xfer(text)
        if text.startswith("qMemTags:"):
            where, kind = text[len("qMemTags:"):].split(":")
            addr, length = (int(x, 16) for x in where.split(","))
            if int(kind, 16) != 1:
                return "E01"                      # only allocation tags live in memory
            return "m" + ptrace.read_tags(self.k, self.proc, addr, length).hex()
        return ""

    def _xfer(self, text: str):  # noqa: ANN202
        _q, obj, op, rest = text.split(":", 3)
        annex, _, span = rest.rpartition(":")
        off, length = (int(x, 16) for x in span.split(","))
        if op != "read":
            return ""
        if obj == "features" and annex == "target.xml":
            data = tdesc.target_xml().encode()
        elif obj == "auxv":
            data = self.proc.auxv
        elif obj == "exec-file":
            data = self.proc.exe.name.encode()
        elif obj == "threads":
            data = self._threads_xml()
        elif obj == "siginfo":
            t = self.gthread or self.proc.live_threads[0]
            info = self.siginfo.get(t.tid)
            if info is None:
                return "E01"
            data = info.pack(expose_tagbits=True)   # the tracer sees the tag bits (get_signal() hides them later)
        else:
            return ""
        chunk = data[off:off + length]
        return (b"m" if off + length < len(data) else b"l") + rsp.escape(chunk)

    def _set(self, text: str, p: bytes):  # noqa: ANN202
        if text == "QStartNoAckMode":
            self.conn.send("OK")
            self.conn.ack = False
            return None
        if text.startswith("QMemTags:"):
            where, kind, tags = text[len("QMemTags:"):].split(":")
            addr, length = (int(x, 16) for x in where.split(","))
            if int(kind, 16) != 1:
                return "E01"
            ptrace.write_tags(self.k, self.proc, addr, length, bytes.fromhex(tags))
            return "OK"
        return ""

    # -- v packets -------------------------------------------------------------------------------
    def _v(self, text: str, p: bytes, stopped: Thread):  # noqa: ANN202
        if text == "vCont?":
            return "vCont;c;C;s;S"
        if text.startswith("vCont;"):
            return self._vcont(text[len("vCont;"):], stopped)
        if text.startswith("vKill"):
            self.conn.send("OK")
            self._kill()
            return Resume()
        if text.startswith("vFile:"):
            return self._vfile(text, p)
        return ""       # vMustReplyEmpty, vRun, vAttach...: not supported

    def _vcont(self, actions: str, stopped: Thread) -> Resume:
        """Each action applies to the threads it names (all-stop: the first that applies
        to a thread wins); only a step needs a thread of its own."""
        resume = Resume()
        for action in actions.split(";"):
            what, _, spec = action.partition(":")
            t = self._thread(spec) if spec and spec not in ("-1", "p-1.-1") else None
            if what[0] in "sS" and resume.step is None:
                resume.step = t or stopped
            if what[0] in "CS" and (t is None or t is stopped) and not resume.signal:
                resume.signal = from_gdb(int(what[1:], 16))
        return resume

    def _vfile(self, text: str, p: bytes):  # noqa: ANN202
        """Host I/O (GDB's vFile:), read-only, resolved as the traced process resolves paths."""
        op, _, args = text[len("vFile:"):].partition(":")
        try:
            if op == "setfs":
                return "F0"
            if op == "open":
                name, flags, _mode = args.split(",")
                if int(flags, 16) & 3:
                    return _fileio_error(errno.EACCES)     # GDB only reads; the guest's files stay as they are

                opened = self.k.vfs.open_for_reading(self.proc.live_threads[0], bytes.fromhex(name))
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
                data = f.pread(min(count, PACKET_SIZE // 2), offset)
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


U32 = 0xFFFFFFFF


def _u32_time(t: float) -> int:
    return min(max(int(t), 0), U32)


def _le(value: int, bits: int) -> str:
    return (value & ((1 << bits) - 1)).to_bytes(bits // 8, "little").hex()


def _fileio_error(err: int) -> str:
    return f"F-1,{_FILEIO_ERRNO.get(err, 9999):x}"
