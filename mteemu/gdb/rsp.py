"""The GDB remote serial protocol's framing: packets, acknowledgements, escapes, Ctrl-C.

GDB's manual, "Overview" of the remote protocol: a packet is `$data#cs` with cs the
modulo-256 sum of data in two hex digits, acknowledged with `+` (or `-`: send again)
until QStartNoAckMode; binary data escapes `#`, `$`, `}` and `*` as `}` then the byte
XOR 0x20 (`*` would otherwise start a run-length code); a lone 0x03 byte outside any
packet is an interrupt request.
"""
from __future__ import annotations

import select
import socket
import time
from typing import Optional, Union

from mteemu import host_signals

INTERRUPT = object()          # read_packet()'s answer for a 0x03 byte
MAX_PACKET = 1 << 20          # a longer packet is no GDB's: the peer is not speaking the protocol


class Disconnected(Exception):
    """The debugger is gone (closed the connection, or it broke)."""


class ProtocolError(Exception):
    """The peer sent bytes that are no packet."""


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def escape(data: bytes) -> bytes:
    out = bytearray()
    for b in data:
        if b in b"#$}*":
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                raise ProtocolError("escape at the end of binary data")
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


class Channel:
    """One connection to GDB."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.ack = True
        self.interrupted = False      # a 0x03 arrived while the guest ran (poll_interrupt)

    def _fill(self, timeout: Optional[float] = None) -> bool:
        """Read what the peer sent; False if nothing came within timeout."""
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return False
        try:
            with host_signals.interruptible():
                data = self.sock.recv(65536)
        except OSError as e:
            raise Disconnected(e.strerror or str(e)) from None
        if not data:
            raise Disconnected("gdb closed the connection")
        self.buf += data
        return True

    def read_packet(self) -> Union[bytes, object]:
        """The next packet's data (acknowledged), or INTERRUPT."""
        while True:
            while self.buf[:1] in (b"+", b"-"):
                del self.buf[0]
            if self.interrupted or self.buf[:1] == b"\x03":
                if not self.interrupted:
                    del self.buf[0]
                self.interrupted = False
                return INTERRUPT
            if self.buf and self.buf[:1] != b"$":
                junk = self.buf.find(b"$")
                del self.buf[:junk if junk >= 0 else len(self.buf)]
                continue
            end = self.buf.find(b"#")
            if end < 0 or len(self.buf) < end + 3:
                if len(self.buf) > MAX_PACKET:
                    raise ProtocolError(f"no packet end in {len(self.buf)} bytes")
                self._fill()
                continue
            data, cs = bytes(self.buf[1:end]), bytes(self.buf[end + 1:end + 3])
            del self.buf[:end + 3]
            try:
                good = int(cs, 16) == checksum(data)
            except ValueError:
                good = False
            if self.ack:
                self._write(b"+" if good else b"-")
            if good or not self.ack:
                return data

    def send(self, data: Union[bytes, str]) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._write(b"$" + data + b"#%02x" % checksum(data))

    def _write(self, raw: bytes) -> None:
        try:
            self.sock.sendall(raw)
        except OSError as e:
            raise Disconnected(e.strerror or str(e)) from None

    def poll_interrupt(self, timeout: float) -> bool:
        """While the guest runs: True once GDB asked to stop it (0x03) or went away.

        What else arrives meanwhile waits in the buffer for the next stop, up to one packet's
        worth; beyond that nothing more is read, so the peer's socket fills and it blocks
        (a debugger sends nothing but Ctrl-C to a running all-stop target)."""
        if len(self.buf) > MAX_PACKET:
            time.sleep(timeout)
            return False
        try:
            if not self._fill(timeout):
                return False
        except Disconnected:
            self.interrupted = True       # the next read_packet() finds the connection gone
            return True
        if b"\x03" in self.buf:
            i = self.buf.index(b"\x03")
            del self.buf[i]
            self.interrupted = True
            return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
