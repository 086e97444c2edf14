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

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from mteemu.gdb import memory, queries, registers, rsp
from mteemu.gdb.ctrl_c import CtrlC
from mteemu.gdb.hostio import HostIo
from mteemu.gdb.points import HARDWARE, Points
from mteemu.kernel import ptrace
from mteemu.kernel import signals as S
from mteemu.kernel.process import Process, State, Thread
from mteemu.machine import arm64 as C
from mteemu.machine.debughooks import WATCH_ACCESS, WATCH_READ, WATCH_WRITE

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi

PACKET_SIZE = 0x4000
SIGTRAP, SIGINT = S.SIGTRAP, S.SIGINT
TRAP_TRACE = 2                # si_code of a single-step trap


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

    def __init__(self, k: "KernelApi", proc: Process, accept: Callable[[], rsp.Channel]) -> None:
        self.k, self.proc = k, proc
        self._accept = accept
        self.ch: Optional[rsp.Channel] = None
        self.attached = True
        self.hooks = k.cpu.attach_debugger()
        self.hooks.wanted = lambda: self.attached and k.sched.current is not None and k.sched.current.proc is self.proc
        self.points = Points(self.hooks, proc)
        self.stepping: Optional[Thread] = None
        self.exec_pending: Optional[Thread] = None
        self.gthread: Optional[Thread] = None           # Hg: whose registers g/p/G/P mean
        self.siginfo: dict[int, S.SigInfo] = {}         # tid -> the signal it stopped with
        self.last_stop = "S05"
        self.features: set[str] = set()
        self.hostio = HostIo(lambda path: k.vfs.open_for_reading(proc.live_threads[0], path), PACKET_SIZE)
        self.ctrl_c = CtrlC(k.cpu.request_stop)

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
                self._trap(t, "hwbreak:;" if self.points.kind_at(exit_.pc) == HARDWARE else "swbreak:;")
        elif self.stepping is t and traced and exit_.kind is not C.ExitKind.INTERRUPTED:
            self.stepping = None
            if not self.k.signals.deliverable(t):        # else the signal's stop reports the step's end
                self._trap(t, "")
        elif self.ctrl_c.requested:
            self._stop_for_interrupt(t if traced else None)

    def idle(self) -> None:
        if self.attached and self.ctrl_c.requested:
            self._stop_for_interrupt(None)

    def exited(self, proc: Process) -> None:
        status = proc.wait_status or 0
        sig = status & 0x7F
        reply = f"X{to_gdb(sig):02x}" if sig else f"W{(status >> 8) & 0xFF:02x}"
        self.ctrl_c.stop()
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
    def _stop_reply(self, t: Thread, sig: int, reason: str = "") -> str:
        return f"T{to_gdb(sig):02x}thread:{queries.thread_id(t)};{reason}"

    def _trap(self, t: Thread, reason: str) -> None:
        self.siginfo[t.tid] = S.SigInfo(SIGTRAP, S.TRAP_BRKPT if reason else TRAP_TRACE,
                                        addr=ptrace.ThreadRegs(self.k, t).read(C.REG_PC))
        self._stop(t, self._stop_reply(t, SIGTRAP, reason))

    def _stop_for_interrupt(self, t: Optional[Thread]) -> None:
        self.ctrl_c.clear()
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
        self.points.clear()              # the old program's addresses mean nothing now
        self.points.apply()
        self.siginfo[t.tid] = S.SigInfo(SIGTRAP, S.SI_USER, pid=self.proc.pid)
        reason = f"exec:{self.proc.exe.name.encode().hex()};" if "exec-events" in self.features else ""
        self._stop(t, self._stop_reply(t, SIGTRAP, reason))

    def _stop(self, t: Thread, reply: Optional[str]) -> Optional[Resume]:
        """The world is stopped at t: serve GDB until it resumes (None: it went away)."""
        if self.ch is None or not self.attached:
            return None
        self.ctrl_c.stop()
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
            self.points.apply()
            self.stepping = resume.step
            self.ctrl_c.start(self.conn)
        return resume

    def _detach(self) -> None:
        """Leave the process running on, untraced: breakpoints and watchpoints go."""
        self.attached = False
        self.ctrl_c.stop()
        self.stepping = None
        self.points.clear()
        if not self.k.cpu.running:
            self.points.apply()
        self.hostio.close_all()
        if self.ch is not None:
            self.ch.close()
            self.ch = None

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

    def _handle(self, p: bytes, stopped: Thread) -> "str | bytes | Resume | None":
        """One packet's answer, by its first byte (a Resume ends the stop)."""
        text = p.decode("latin-1")
        head = text[:1]
        if not head:
            return ""
        if head in "gGpP":
            return registers.packet(self._regs(), text)
        if head in "mMX":
            return memory.packet(self.k, self.proc, p, PACKET_SIZE)
        if head in "Zz":
            kind, where, size = text[1:].split(";")[0].split(",")
            op = self.points.insert if head == "Z" else self.points.remove
            return op(int(kind), int(where, 16), int(size, 16))
        if head in "csCS":
            return self._resume(text, stopped)
        if head in "kD":
            if head == "D":
                self.conn.send("OK")
                self._detach()
            else:
                self._kill()
            return Resume()
        handler = {"?": lambda: self.last_stop, "H": lambda: self._select_thread(text),
                   "T": lambda: "OK" if queries.find_thread(self.proc, text[1:]) is not None else "E03",
                   "q": lambda: self._query(text), "Q": lambda: self._set(text),
                   "v": lambda: self._v(text, stopped)}.get(head)
        return handler() if handler is not None else ""

    def _select_thread(self, text: str) -> str:
        """Hg: whose registers g/G/p/P mean (Hc is ignored: vCont names its threads)."""
        if text[1:2] == "g":
            spec = text[2:]
            t = queries.find_thread(self.proc, spec)
            if t is None and spec.split(".")[-1] not in ("0", "-1"):
                return "E03"                   # 0 and -1: any thread, all threads
            self.gthread = t or self.gthread
        return "OK"

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

    # -- queries ---------------------------------------------------------------------------------
    def _query(self, text: str) -> "str | bytes":
        current = self.gthread or self.proc.live_threads[0]
        if text.startswith("qSupported"):
            answer, self.features = queries.supported(text, PACKET_SIZE)
            return answer
        if text == "qC":
            return f"QC{queries.thread_id(current)}"
        if text == "qAttached" or text.startswith("qAttached:"):
            return "0"                           # we started the process: quitting GDB kills it
        if text == "qfThreadInfo":
            return "m" + ",".join(queries.thread_id(t) for t in self.proc.live_threads)
        if text == "qsThreadInfo":
            return "l"
        if text.startswith("qXfer:"):
            return queries.xfer(text, self.proc, current, self.siginfo)
        if text.startswith("qMemTags:"):
            return queries.read_tags(self.k, self.proc, text[len("qMemTags:"):])
        if text.startswith("qRcmd,"):
            # `monitor CMD`: the output as console packets (O), then OK.
            out = queries.monitor(bytes.fromhex(text[len("qRcmd,"):]).decode(errors="replace"), current,
                                  self.siginfo)
            for i in range(0, len(out), 1024):
                self.conn.send("O" + out[i:i + 1024].encode().hex())
            return "OK"
        return ""

    def _set(self, text: str) -> Optional[str]:
        if text == "QStartNoAckMode":
            self.conn.send("OK")
            self.conn.ack = False
            return None
        if text.startswith("QMemTags:"):
            return queries.write_tags(self.k, self.proc, text[len("QMemTags:"):])
        return ""

    # -- v packets -------------------------------------------------------------------------------
    def _v(self, text: str, stopped: Thread) -> "str | bytes | Resume":
        if text == "vCont?":
            return "vCont;c;C;s;S"
        if text.startswith("vCont;"):
            return self._vcont(text[len("vCont;"):], stopped)
        if text.startswith("vKill"):
            self.conn.send("OK")
            self._kill()
            return Resume()
        if text.startswith("vFile:"):
            return self.hostio.handle(text)
        return ""       # vMustReplyEmpty, vRun, vAttach...: not supported

    def _vcont(self, actions: str, stopped: Thread) -> Resume:
        """Each action applies to the threads it names (all-stop: the first that applies
        to a thread wins); only a step needs a thread of its own."""
        resume = Resume()
        for action in actions.split(";"):
            what, _, spec = action.partition(":")
            t = queries.find_thread(self.proc, spec) if spec and spec not in ("-1", "p-1.-1") else None
            if what[0] in "sS" and resume.step is None:
                resume.step = t or stopped
            if what[0] in "CS" and (t is None or t is stopped) and not resume.signal:
                resume.signal = from_gdb(int(what[1:], 16))
        return resume
