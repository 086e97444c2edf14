"""Where `mteemu run -g` waits for GDB: a TCP port on the loopback interface only, or a
socket file (`-g unix:PATH`) that mteemu creates and removes; one connection."""
from __future__ import annotations

import os
import select
import socket
from typing import Callable, Optional

from mteemu import host_signals
from mteemu.errors import InputError
from mteemu.gdb.rsp import Channel, Disconnected

LOOPBACK = "127.0.0.1"


class Listener:
    def __init__(self, spec: str) -> None:
        self.path: Optional[str] = None
        if spec.startswith("unix:"):
            path = spec[len("unix:"):]
            if not path:
                raise InputError("-g unix:PATH: the socket path is empty")
            if os.path.lexists(path):
                raise InputError(f"-g {spec}: {path} exists; mteemu only creates a new socket file")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
            except OSError as e:
                sock.close()
                raise InputError(f"-g {spec}: cannot create the socket: {e.strerror}") from None
            self.path = path
            self.where = path
        else:
            try:
                port = int(spec, 10)
            except ValueError:
                raise InputError(f"-g {spec}: not a port number nor unix:PATH") from None
            if not 0 <= port <= 65535:
                raise InputError(f"-g {spec}: a port is 0 to 65535")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((LOOPBACK, port))
            except OSError as e:
                sock.close()
                raise InputError(f"-g {spec}: cannot listen on {LOOPBACK}:{port}: {e.strerror}") from None
            self.where = f"{LOOPBACK}:{sock.getsockname()[1]}"
        sock.listen(1)
        self.sock: Optional[socket.socket] = sock

    def accept_with(self, say: Callable[[str], None]) -> Callable[[], Channel]:
        def accept() -> Channel:
            assert self.sock is not None
            say(f"waiting for gdb on {self.where} (target remote {self.where})")
            while True:
                with host_signals.interruptible():
                    ready, _, _ = select.select([self.sock], [], [], 0.2)
                if ready:
                    break
            try:
                conn, _ = self.sock.accept()
            except OSError as e:
                raise Disconnected(e.strerror or str(e)) from None
            finally:
                self.close()                  # one session: nobody else may connect
            if conn.family == socket.AF_INET:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return Channel(conn)
        return accept

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.path = None
