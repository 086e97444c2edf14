"""Where `mteemu run -g` waits for GDB: a socket file (`-g unix:PATH`) that mteemu creates
mode 0600 and removes, or a TCP port on the loopback interface only; one connection.

A GDB session reads the guest's files (vFile) and writes its memory with mteemu's
privileges, so who may connect matters: a socket file is the owner's alone, while a
loopback port is open to every local user. mteemu says so when it listens on a port, and
as root it refuses one unless asked explicitly (`--gdb-allow-tcp`); qemu-user's `-g`
listens on every interface and says nothing."""
from __future__ import annotations

import errno
import os
import secrets
import select
import socket
import stat
from typing import Callable, Optional

from mteemu import host_signals
from mteemu.errors import InputError
from mteemu.gdb.rsp import Channel, Disconnected

LOOPBACK = "127.0.0.1"
_SUN_PATH_MAX = 107                  # sockaddr_un's sun_path, less its terminating NUL


class Listener:
    def __init__(self, spec: str, allow_tcp: bool = False) -> None:
        self.path: Optional[str] = None
        self.warning: Optional[str] = None
        if spec.startswith("unix:"):
            sock = self._unix(spec, spec[len("unix:"):])
        else:
            sock = self._tcp(spec, allow_tcp)
            sock.listen(1)
        self.sock: Optional[socket.socket] = sock

    def _unix(self, spec: str, path: str) -> socket.socket:
        if not path:
            raise InputError("-g unix:PATH: the socket path is empty")
        if os.path.lexists(path):
            raise InputError(f"-g {spec}: {path} exists; mteemu only creates a new socket file")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # bind() creates the file with 0777 & ~umask; a umask of 0177 makes it 0600 from the
        # start (a chmod after bind would leave a window in which anyone may connect). The
        # socket is bound under a private name and linked to PATH once it listens, so that a
        # debugger that sees PATH can connect (bind-then-listen under PATH itself refused the
        # connections made in between), and link() never replaces a file that appeared.
        staging = os.path.join(os.path.dirname(path), f".mteemu-gdb-{os.getpid()}-{secrets.token_hex(4)}")
        if len(os.fsencode(staging)) > _SUN_PATH_MAX:
            staging = path                 # no room for a longer name: bind PATH directly
        old = os.umask(0o177)
        try:
            sock.bind(staging)
            sock.listen(1)
            if staging != path:
                try:
                    os.link(staging, path)
                finally:
                    os.unlink(staging)
        except OSError as e:
            sock.close()
            why = "exists; mteemu only creates a new socket file" if e.errno == errno.EEXIST else \
                f"cannot create the socket: {e.strerror}"
            raise InputError(f"-g {spec}: {why}") from None
        finally:
            os.umask(old)
        self.path = path
        self.inode = os.lstat(path).st_ino
        self.where = path
        return sock

    def _tcp(self, spec: str, allow_tcp: bool) -> socket.socket:
        try:
            port = int(spec, 10)
        except ValueError:
            raise InputError(f"-g {spec}: not a port number nor unix:PATH") from None
        if not 0 <= port <= 65535:
            raise InputError(f"-g {spec}: a port is 0 to 65535")
        if os.geteuid() == 0 and not allow_tcp:
            raise InputError(f"-g {spec}: as root, a TCP port would let any local user read files as root "
                             "through GDB; use -g unix:PATH, or add --gdb-allow-tcp")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The port is usable again at once after a session (no ~60 s in TIME_WAIT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as e:
            sock.close()
            raise InputError(f"-g {spec}: cannot listen on {LOOPBACK}:{port}: {e.strerror}") from None
        self.where = f"{LOOPBACK}:{sock.getsockname()[1]}"
        self.warning = (f"any local user can attach to {self.where} and read files with mteemu's "
                        "privileges; -g unix:PATH is private")
        return sock

    def accept_with(self, say: Callable[[str], None]) -> Callable[[], Channel]:
        def accept() -> Channel:
            assert self.sock is not None
            if self.warning:
                say(self.warning)
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
            # Remove our socket only: if the name now holds something else, it is not ours.
            try:
                st = os.lstat(self.path)
                if stat.S_ISSOCK(st.st_mode) and st.st_ino == self.inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self.path = None
