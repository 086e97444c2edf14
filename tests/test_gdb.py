"""`mteemu run -g`: Debian's gdb-multiarch debugs guest_tests/debug/gdb_target.c in batch
mode — breakpoints, steps, variables, a synchronous tag-check fault reported with both
tags, the allocation-tag commands, Ctrl-C, a watchpoint hit by a second thread, fork and
exec — and bad input (ports in use, malformed packets, GDB vanishing) ends in one line or
a clean detach, never a hang or a traceback."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mteemu.gdb import rsp
from mteemu.gdb.session import from_gdb, to_gdb

GDB = shutil.which("gdb-multiarch") or "gdb-multiarch"


@pytest.fixture
def needs_gdb() -> None:
    if shutil.which(GDB) is None:
        pytest.fail("gdb-multiarch is missing: run the README's test command to install it")


@pytest.fixture(scope="module")
def target(guest):
    return str(guest("debug/gdb_target"))


def start(tmp_path: Path, prog: str, *args: str, where: str | None = None) -> tuple[subprocess.Popen, str]:
    """mteemu waiting for GDB on a new socket file in tmp_path; (process, address)."""
    sock = tmp_path / "gdb.sock"
    proc = subprocess.Popen([sys.executable, "-m", "mteemu", "run", "--timeout", "90",
                             *(["--gdb-allow-tcp"] if where else []), "-g", where or f"unix:{sock}", prog, *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while where is None and not sock.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "mteemu never listened"
        time.sleep(0.02)
    return proc, str(sock)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=90)
    return proc.returncode, out.decode(), err.decode()


def gdb(address: str, prog: str, *commands: str, timeout: float = 90) -> str:
    args = [GDB, "-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"target remote {address}"]
    for c in commands:
        args += ["-ex", c]
    r = subprocess.run(args + [prog], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return r.stdout.decode() + r.stderr.decode()


@pytest.mark.slow
@pytest.mark.usefixtures("needs_gdb")
def test_break_step_read_and_write_a_variable(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target)
    out = gdb(sock, target, "break add_one", "continue", "bt", "print x", "print value", "set var x = 99",
              "next", "finish", "continue")
    status, stdout, err = finish(proc)
    assert "Breakpoint 1, add_one (x=41)" in out, out
    assert re.search(r"#1 .* in main \(argc=1", out), out
    assert "$1 = 41" in out and "$2 = 41" in out, out
    assert re.search(r"Value returned is \$\d+ = 100", out), out     # the write took effect
    assert re.search(r"\[Inferior 1 \(process \d+\) exited normally\]", out), out
    assert (status, stdout) == (0, "value 100\n"), err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.usefixtures("needs_gdb")
def test_tag_check_fault_names_both_tags(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target, "fault")
    out = gdb(sock, target, "break tagged_ready", "continue",
              "memory-tag print-allocation-tag p", "memory-tag print-logical-tag p", "memory-tag check p",
              "memory-tag set-allocation-tag p+16 1 07", "memory-tag print-allocation-tag p+16",
              "memory-tag set-allocation-tag p+16 1 03", "print/x $tag_ctl",
              "continue", "print $_siginfo.si_code", "continue")
    status, stdout, err = finish(proc)
    lines = out.splitlines()
    # print-allocation-tag, print-logical-tag, the set round trip, tag_ctl (sync, tags 1-15)
    values = [ln for ln in lines if re.match(r"\$\d+ = ", ln)]
    assert [v.split(" = ")[1] for v in values] == ["0x3", "0x3", "0x7", "0x7fff3", "9"], out
    assert "match (0x3)" in out, out
    # GDB's report, from qXfer:siginfo (si_code SEGV_MTESERR, si_addr with its tag) and qMemTags
    assert "Program received signal SIGSEGV, Segmentation fault" in out, out
    assert re.search(r"Memory tag violation while accessing address 0x0500[0-9a-f]{8}e010\n"
                     r"Allocation tag 0x3\nLogical tag 0x5", out), out
    assert "wrong[16] = 'x'" in out, out
    assert "Program terminated with signal SIGSEGV" in out, out
    assert status == 128 + 11 and stdout == "", err
    assert "tags: 5/3 (ptr/mem)" in err, err        # mteemu's own report as without GDB


@pytest.mark.slow
@pytest.mark.usefixtures("needs_gdb")
def test_ctrl_c_stops_a_spinning_guest(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target, "spin")
    # What Ctrl-C does in GDB, one second into `continue`: GDB sends 0x03.
    out = gdb(sock, target,
              "python import threading; threading.Timer(1.0, lambda: gdb.post_event("
              "lambda: gdb.execute('interrupt'))).start()",
              "continue", "print counter > 0", "kill")
    status, _stdout, err = finish(proc)
    assert "Program received signal SIGINT, Interrupt." in out, out
    # Where it stopped: "0x… in main (…) at …" mid-line, or "main (…) at …" on a line's first instruction.
    assert re.search(r"^(0x[0-9a-f]+ in )?main \(argc=2, .*\) at .*gdb_target\.c:\d+", out, re.M), out
    assert "$1 = 1" in out, out
    assert status == 128 + 9, err                # killed by GDB: SIGKILL, as Linux reports it


@pytest.mark.slow
@pytest.mark.usefixtures("needs_gdb")
def test_watchpoint_in_a_second_thread(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target, "thread")
    out = gdb(sock, target, "watch counter", "continue", "info threads", "continue", "delete", "continue")
    status, stdout, err = finish(proc)
    assert re.search(r'Thread 2 "gdb_target" hit Hardware watchpoint 1: counter\n\nOld value = 0\n'
                     r"New value = 10\nworker", out), out
    assert "Old value = 10\nNew value = 20" in out, out
    assert len(re.findall(r'Thread \d+\.\d+ "gdb_target"', out)) == 2, out     # info threads
    assert (status, stdout) == (0, "counter 50\n"), err
    # An access watchpoint stops at the read of `counter += 10`, then at its write.
    proc, sock = start(tmp_path, target, "thread")
    out = gdb(sock, target, "awatch counter", "continue", "continue", "delete", "continue")
    status, stdout, err = finish(proc)
    assert out.count("hit Hardware access (read/write) watchpoint 1: counter") == 2, out
    assert "Value = 0" in out and "Old value = 0\nNew value = 10" in out, out
    assert (status, stdout) == (0, "counter 50\n"), err


@pytest.mark.slow
@pytest.mark.usefixtures("needs_gdb")
def test_fork_child_runs_untraced_and_exec_is_followed(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target, "fork")
    out = gdb(sock, target, "break add_one", "continue", "continue")
    status, stdout, err = finish(proc)
    # The child called add_one(100) first: it is not traced, so only the parent's call stops.
    assert out.count("Breakpoint 1, add_one") == 1 and "add_one (x=41)" in out, out
    assert (status, stdout) == (0, "child 101\nvalue 42\n"), err

    # After the fork, `value` lives in a page shared copy-on-write with the child: the
    # parent's store breaks the sharing, and the watchpoint follows it to its new page.
    proc, sock = start(tmp_path, target, "fork")
    out = gdb(sock, target, "watch value", "continue", "continue")
    status, stdout, err = finish(proc)
    assert "Hardware watchpoint 1: value\n\nOld value = 41\nNew value = 42" in out, out
    assert (status, stdout) == (0, "child 101\nvalue 42\n"), err

    proc, sock = start(tmp_path, target, "exec")
    out = gdb(sock, target, "break add_one", "continue", "continue", "continue")
    status, stdout, err = finish(proc)
    assert re.search(r"process \d+ is executing new program: .*gdb_target", out), out
    assert "Breakpoint 1, add_one (x=41)" in out, out      # set again in the new program
    assert (status, stdout) == (0, "value 42\n"), err


@pytest.mark.slow
@pytest.mark.usefixtures("needs_gdb")
def test_tcp_port_on_loopback(tmp_path: Path, target: str) -> None:
    proc, _ = start(tmp_path, target, where="0")
    line = b""
    while b"waiting for gdb" not in line:
        line = proc.stderr.readline()
        assert line, "mteemu never said where it listens"
    address = re.search(rb"on (127\.0\.0\.1:\d+) ", line).group(1).decode()
    out = gdb(address, target, "continue")
    status, stdout, err = finish(proc)
    assert "exited normally" in out, out
    assert (status, stdout) == (0, "value 42\n"), err


@pytest.mark.slow
def test_bad_addresses_are_one_line_errors(tmp_path: Path, target: str) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    existing = tmp_path / "taken"
    existing.write_text("mine\n")
    try:
        for where, words in ((str(port), "Address already in use"), ("banana", "not a port number"),
                             (f"unix:{existing}", "exists"), ("70000", "0 to 65535")):
            r = subprocess.run([sys.executable, "-m", "mteemu", "run", "--gdb-allow-tcp", "-g", where, target],
                               capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
            err = r.stderr.decode()
            assert r.returncode == 2 and words in err and len(err.splitlines()) == 1, (where, err)
    finally:
        busy.close()
    assert existing.read_text() == "mine\n"


def _raw(sock_path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    s.settimeout(30)
    return s


def _packet(data: bytes) -> bytes:
    return b"$" + data + b"#%02x" % rsp.checksum(data)


def _reply(s: socket.socket) -> bytes:
    buf = b""
    while not re.search(rb"\$[^#]*#..", buf):
        chunk = s.recv(4096)
        assert chunk, buf
        buf += chunk
    return re.search(rb"\$([^#]*)#..", buf).group(1)


@pytest.mark.slow
def test_malformed_packets_then_the_peer_vanishes(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target)
    s = _raw(sock)
    s.sendall(b"$qSupported#00")                       # a wrong checksum: asked to send it again
    assert s.recv(1) == b"-"
    s.sendall(b"+" + _packet(b"mzz,qq"))                # not hexadecimal
    assert _reply(s) == b"E16"
    s.sendall(_packet(b"qMemTags:0,10:1"))               # no tagged mapping there
    assert _reply(s).startswith(b"E")
    s.sendall(_packet(b"?"))
    assert re.fullmatch(rb"T05thread:p[0-9a-f]+\.[0-9a-f]+;", _reply(s))
    s.sendall(_packet(b"g"))
    assert len(_reply(s)) == 2 * (31 * 8 + 8 + 8 + 4 + 32 * 16 + 4 + 4 + 8 + 8 + 8)
    s.close()                                          # GDB vanishes while the guest is stopped
    status, stdout, err = finish(proc)
    assert (status, stdout) == (0, "value 42\n"), err
    assert "gdb closed the connection; the guest runs on without it" in err, err
    assert "Traceback" not in err


@pytest.mark.slow
def test_garbage_that_never_ends_a_packet(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target)
    s = _raw(sock)
    try:
        s.sendall(b"$" + b"a" * (rsp.MAX_PACKET + 100))
    except OSError:
        pass                                           # mteemu may close first
    status, stdout, err = finish(proc)
    s.close()
    assert (status, stdout) == (0, "value 42\n"), err
    assert "closing the connection, the guest runs on" in err, err


@pytest.mark.slow
@pytest.mark.usefixtures("needs_gdb")
def test_gdb_killed_mid_session(tmp_path: Path, target: str) -> None:
    proc, sock = start(tmp_path, target)
    g = subprocess.Popen([GDB, "-batch", "-nx", "-ex", f"target remote {sock}", "-ex", "break add_one",
                          "-ex", "continue", "-ex", "shell sleep 60", target],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seen = b""
    while b"Breakpoint 1, add_one" not in seen:
        line = g.stdout.readline()
        assert line, seen
        seen += line
    os.kill(g.pid, signal.SIGKILL)
    g.wait()
    status, stdout, err = finish(proc)
    assert (status, stdout) == (0, "value 42\n"), err
    assert "the guest runs on without it" in err, err


@given(st.binary(max_size=200))
def test_escape_round_trip(data: bytes) -> None:
    escaped = rsp.escape(data)
    assert not set(escaped) & set(b"#$*") and rsp.unescape(escaped) == data


def test_signal_numbers_follow_gdbs_table() -> None:
    # include/gdb/signals.def: Linux's SIGBUS 7 is GDB's 10, SIGUSR1 10 is 30, SIGCHLD 17 is 20...
    assert [to_gdb(s) for s in (5, 7, 10, 11, 17, 34)] == [5, 10, 30, 11, 20, 46]
    assert all(from_gdb(to_gdb(s)) == s for s in range(1, 65) if s != 16)


def _fuzzed_packets(seed: int, count: int) -> list[bytes]:
    """Packets GDB never sends: every command letter mteemu serves, with fields that are
    too big, negative, empty, not hexadecimal or badly escaped. Resuming packets (c, s, C,
    S, vCont, k, D, vKill) are left out so the session stays stopped."""
    import random

    rnd = random.Random(seed)
    fields = ["", "0", "-1", "10", "ffffffffffffffff", "1" + "0" * 16, "f" * 40, "zz", "8000000000000000",
              "7fffffff", ",", ":", ";"]
    heads = ["m", "M", "X", "p", "P", "g", "G", "Z0", "z0", "Z2", "Z9", "H", "Hg", "Hc", "T", "?",
             "qXfer:features:read:target.xml:", "qXfer:auxv:read::", "qXfer:siginfo:read::",
             "qXfer:threads:read::", "qXfer:nosuch:read::", "qMemTags:", "QMemTags:", "qC", "qAttached:",
             "vFile:open:", "vFile:pread:", "vFile:fstat:", "vFile:close:", "vFile:setfs:", "vFile:nosuch:"]
    out = []
    for _ in range(count):
        body = rnd.choice(heads) + "".join(rnd.choice(fields) + rnd.choice([",", ":", ";", "=", ""])
                                           for _ in range(rnd.randrange(4)))
        raw = body.encode()
        if rnd.random() < 0.2:
            raw += rnd.choice([b"}", b"}}", b"\x00\xff", b"}\x03"])
        out.append(raw)
    return out


@pytest.mark.slow
def test_hostile_packets_get_error_replies(tmp_path: Path, target: str) -> None:
    """No packet field ends the session or mteemu (issue 23, item 7 and 10): times outside
    what GDB's 32-bit File-I/O stat can hold, pread offsets beyond a loff_t, an escape at the
    end of X data, and a few hundred generated packets; each gets a reply and the guest then
    runs to its end."""
    odd = tmp_path / "odd-times"
    odd.write_bytes(b"0123456789")
    os.utime(odd, ns=(-(10 ** 18), (1 << 40) * 10 ** 9))
    proc, sock = start(tmp_path, target)
    s = _raw(sock)
    s.sendall(_packet(b"QStartNoAckMode"))
    assert _reply(s) == b"OK"
    s.sendall(_packet(b"vFile:open:" + str(odd).encode().hex().encode() + b",0,0"))
    opened = _reply(s)
    assert re.fullmatch(rb"F[0-9a-f]+", opened), opened
    fd = opened[1:]
    s.sendall(_packet(b"vFile:fstat:" + fd))
    fstat = _reply(s)
    assert fstat.startswith(b"F40;"), fstat               # GDB's struct stat is 64 bytes
    raw = rsp.unescape(fstat[4:])
    assert raw[-12:] == (0).to_bytes(4, "big") + (0xFFFFFFFF).to_bytes(4, "big") + raw[-4:]
    s.sendall(_packet(b"vFile:pread:" + fd + b",4,8000000000000000"))
    assert _reply(s) == b"F-1,16"                          # EINVAL
    s.sendall(_packet(b"vFile:pread:" + fd + b",4,2"))
    assert _reply(s) == b"F4;2345"
    s.sendall(_packet(b"X1000,4:}"))                        # the escape has no byte after it
    assert _reply(s) == b"E16"
    for p in _fuzzed_packets(seed=23, count=400):
        s.sendall(_packet(p))
        reply = _reply(s)
        assert reply is not None, p
    s.sendall(_packet(b"?"))
    assert re.fullmatch(rb"T05thread:p[0-9a-f]+\.[0-9a-f]+;", _reply(s))
    s.sendall(_packet(b"c"))
    status, stdout, err = finish(proc)
    s.close()
    assert (status, stdout) == (0, "value 42\n"), err
    assert "Traceback" not in err and "closing the connection" not in err, err


@pytest.mark.slow
def test_gdb_socket_is_private_and_a_port_is_reused_at_once(tmp_path: Path, target: str) -> None:
    """-g unix:PATH is created 0600 (only its owner may attach); a TCP port warns that any
    local user can, is refused as root unless --gdb-allow-tcp, and is free again right after
    a session (SO_REUSEADDR)."""
    proc, sock = start(tmp_path, target)
    mode = os.lstat(sock).st_mode & 0o777
    s = _raw(sock)
    s.sendall(_packet(b"c"))
    status, stdout, err = finish(proc)
    s.close()
    assert mode == 0o600, oct(mode)
    assert (status, stdout) == (0, "value 42\n"), err
    assert not os.path.lexists(sock)

    if os.geteuid() == 0:
        r = subprocess.run([sys.executable, "-m", "mteemu", "run", "-g", "0", target],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        err = r.stderr.decode()
        assert r.returncode == 2 and "--gdb-allow-tcp" in err and len(err.splitlines()) == 1, err
    port = None
    for _ in range(2):                                 # the same port twice in a row
        proc = subprocess.Popen([sys.executable, "-m", "mteemu", "run", "--gdb-allow-tcp", "-g", str(port or 0),
                                 target], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        said = b""
        while b"waiting for gdb" not in said:
            line = proc.stderr.readline()
            assert line, (said, proc.communicate())
            said += line
        assert b"any local user can attach" in said, said
        port = int(re.search(rb"127\.0\.0\.1:(\d+) ", said).group(1))
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.sendall(_packet(b"c"))
        status, stdout, err = finish(proc)
        c.close()
        assert (status, stdout) == (0, "value 42\n"), err
