"""The mteemu command: argument parsing, exit statuses, output. No emulation logic here.

Exit statuses of `run` and `demo` (also in docs/usage.md):
  the guest's own exit status     when the first guest process exits
  2                               bad input: missing/non-ELF/wrong-architecture program, a dynamic program whose
                                  interpreter no sysroot holds, bad arguments, an unreadable device tree, a board
                                  that fails validation (run --dtb without --force)
  3                               the memory-manager model broke an invariant (a model violation)
  70                              an internal error of mteemu (set MTEEMU_DEBUG=1 for the traceback)
  124                             --timeout expired, or every guest thread is blocked forever
  128 + N                         the guest was killed by signal N (139: SIGSEGV, e.g. a tag-check fault), or
                                  mteemu got SIGINT, SIGTERM or SIGHUP; 141 also when mteemu's reader went away
mteemu validate-dtb: 0 no file has an error, 1 some file has errors, 2 some file cannot be read or parsed.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional, Sequence

from mteemu import host_signals
from mteemu.atomicfile import check_target
from mteemu.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, BoardError, InputError, MteEmuError
from mteemu.kernel.mm.fixes import FIXES
from mteemu.kernel.mte import PREFERRED_MODES
from mteemu.machine.allochist import DEFAULT_CALLS

if TYPE_CHECKING:
    from mteemu.kernel.run import RunOptions
    from mteemu.report.tagfault import TagFaultReport

DEMO = Path(__file__).resolve().parent / "data" / "demo.elf"


def _env_option(value: str) -> str:
    if "=" not in value or value.startswith("="):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {value!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        sys.stderr.write(f"mteemu: {message} (see mteemu --help)\n")
        sys.exit(EXIT_BAD_INPUT)


@functools.lru_cache(maxsize=1)
def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (made once: parsing does not change it; 5 ms to build)."""
    p = _Parser(prog="mteemu", description="Run arm64 Linux programs with Arm MTE, on an emulated board.")
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and which hot path runs")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def run_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-E", dest="set_env", action="append", default=[], type=_env_option,
                        metavar="NAME=VALUE", help="set a variable in the guest's environment")
        sp.add_argument("-U", dest="unset_env", action="append", default=[], metavar="NAME",
                        help="remove a variable from the guest's environment")
        sp.add_argument("--clear-env", action="store_true",
                        help="start the guest's environment empty (then -E adds to it)")
        sp.add_argument("--strace", action="store_true", help="print every syscall to stderr")
        sp.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="stop the guest after SECONDS (exit 124)")
        sp.add_argument("--seed", type=SEED, default=0, help="seed for getrandom, AT_RANDOM and IRG (default 0)")
        sp.add_argument("--mem", metavar="SIZE", help="RAM the guest may use, e.g. 64M (default: the board's)")
        sp.add_argument("--mte-tcf-preferred", choices=PREFERRED_MODES, default="async",
                        help="tag-check mode chosen when a program asks for both sync and async, like "
                             "Linux's per-CPU mte_tcf_preferred (default: async)")
        sp.add_argument("--report-json", metavar="FILE",
                        help="also write the report of a fatal tag-check fault to FILE as JSON")
        sp.add_argument("--alloc-history", action="store_true",
                        help="remember the program's allocator calls (malloc, free...) and tag stores with their "
                             "backtraces, to explain a tag-check fault: who allocated and who freed the memory")
        sp.add_argument("--alloc-history-calls", type=_events, default=DEFAULT_CALLS, metavar="N",
                        help=f"how many of the last calls --alloc-history keeps (default {DEFAULT_CALLS:,})")
        sp.add_argument("-L", dest="sysroot", metavar="DIR",
                        help="where a dynamically linked program's loader and libraries are: absolute paths "
                             "the guest reads are tried under DIR first, as qemu-user's -L (default: "
                             "QEMU_LD_PREFIX, else /usr/aarch64-linux-gnu when it exists)")
        sp.add_argument("--root", metavar="DIR",
                        help="confine the guest's file system to DIR (its \"/\"); default: the host's, as qemu-user")
        sp.add_argument("--dtb", metavar="FILE", help="the board: a device tree (DTB or DTS); default: built in")
        sp.add_argument("-i", "--include", dest="include_dirs", action="append", default=[], metavar="DIR",
                        help="where a DTS's /include/ and #include files are looked for (dtc -i, cpp -I); repeatable")
        sp.add_argument("--force", action="store_true", help="run on a board even if it fails validation")
        sp.add_argument("--tag-storage-policy", choices=("metadata", "cma"), default="metadata",
                        help="how the kernel reuses the board's tag storage: RFC v1 MIGRATE_METADATA "
                             "(default) or v2/v3 CMA")
        sp.add_argument("--swap", metavar="SIZE", help="a swap device of SIZE (e.g. 64M), in host memory")
        sp.add_argument("--swap-file", metavar="FILE",
                        help="keep the swap device in FILE (created, must not exist; removed at exit)")
        sp.add_argument("--without", action="append", default=[], choices=FIXES, metavar="FIX",
                        help="switch off one of the RFC's race fixes (" + ", ".join(FIXES) + ") to watch "
                             "what it prevents; repeatable")
        sp.add_argument("--stats", action="store_true",
                        help="print at exit the memory counters and who did the work (C or Python)")
        sp.add_argument("--kmsg", action="store_true", help="print the kernel log at exit")
        sp.add_argument("-g", dest="gdb", metavar="unix:PATH|PORT",
                        help="wait for GDB (target remote) before the first instruction, on a new socket "
                             "file only you can use, or on a loopback port any local user can reach")
        sp.add_argument("--gdb-allow-tcp", action="store_true",
                        help="as root, allow -g PORT (any local user could attach); a unix:PATH socket is private")
        sp.add_argument("--check-invariants", action="store_true",
                        help="check the memory manager's invariants as it runs (also MTEEMU_CHECK_INVARIANTS=1); "
                             "a violation stops the run with exit status 3")

    run = sub.add_parser("run", help="run a static arm64 Linux program")
    run_options(run)
    run.add_argument("program")
    run.add_argument("args", nargs=argparse.REMAINDER)
    demo = sub.add_parser("demo", help="run the built-in demo program on the default board")
    run_options(demo)
    v = sub.add_parser("validate-dtb", help="check boards' tag storage layouts against the kernel's and Arm's rules")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("-i", "--include", dest="include_dirs", action="append", default=[], metavar="DIR",
                   help="where a DTS's /include/ and #include files are looked for (dtc -i, cpp -I); repeatable")
    v.add_argument("--format", choices=("text", "json"), default="text")
    v.add_argument("--rules", type=_rule_groups,
                   help="rule groups to apply, comma separated (default: kernel,arm,sanity)")
    sub.add_parser("bench", help="benchmark mteemu against qemu-aarch64 (see mteemu bench --help)", add_help=False)
    t = sub.add_parser("test", help="run guest test suites (C sources with expectations, or ELFs)")
    t.add_argument("paths", nargs="+", metavar="PATH")
    t.add_argument("-j", "--jobs", type=_count(1, 1024), default=os.cpu_count() or 1,
                   help="parallel runs (default: CPUs)")
    t.add_argument("--junit-xml", metavar="FILE", help="write JUnit XML results")
    t.add_argument("--json", metavar="FILE", help="write JSON results")
    t.add_argument("--oracle", choices=("qemu", "linux"),
                   help="also run each test under qemu-aarch64 (qemu) or under Linux (linux: mteemu oracle) "
                        "and compare")
    t.add_argument("--cache", metavar="DIR", help="where built programs are kept (default ~/.cache/mteemu/guests)")
    t.add_argument("--shard", metavar="K/N", help="run only slice K of N (disjoint slices covering the suite once, "
                                                  "the same on every machine)")
    t.add_argument("--durations", metavar="FILE", help="balance --shard by the test times of an earlier --json")
    o = sub.add_parser("oracle", help="run a static arm64 program under Linux: Debian's arm64 kernel with MTE "
                                      "in qemu-system-aarch64 (fetched and cached on first use)")
    o.add_argument("--fetch", action="store_true", help="only fetch and cache what the oracle runs on")
    o.add_argument("--qemu", metavar="PATH", help="a qemu-system-aarch64 (8.0 or later) to use instead")
    o.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                   help="stop the program after SECONDS (exit 124; default 60)")
    o.add_argument("-E", dest="set_env", action="append", default=[], type=_env_option, metavar="NAME=VALUE",
                   help="set a variable in the program's environment (which starts empty)")
    o.add_argument("--kernel-log", metavar="FILE", help="write the guest kernel's console log to FILE")
    o.add_argument("program", nargs="?")
    o.add_argument("args", nargs=argparse.REMAINDER)
    sc = sub.add_parser("syscalls", help="list the system calls mteemu implements, how fully, and what differs "
                                         "from Linux")
    sc.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    sc.add_argument("--all", action="store_true", help="also list the arm64 calls not implemented (ENOSYS)")
    i = sub.add_parser("dtb-info", help="print a board's memory map (and draw it with --svg)")
    i.add_argument("file", metavar="FILE")
    i.add_argument("-i", "--include", dest="include_dirs", action="append", default=[], metavar="DIR",
                   help="where a DTS's /include/ and #include files are looked for (dtc -i, cpp -I); repeatable")
    r = sub.add_parser("races", help="replay the tag-storage RFC's races in every interleaving")
    r.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help="race-a, race-b, race-c, fatal-signal (default: all)")
    r.add_argument("--without", action="append", default=[], choices=FIXES, metavar="FIX",
                   help="switch off a fix (" + ", ".join(FIXES) + "); repeatable")
    r.add_argument("--policy", choices=("metadata", "cma"), default="metadata",
                   help="tag storage policy of the model (default metadata)")
    r.add_argument("--format", choices=("text", "json"), default="text")
    r.add_argument("--all-traces", action="store_true", help="print every broken interleaving, not the first 3")
    i.add_argument("--svg", metavar="OUT.svg", help="also draw the memory map to scale into this SVG file")
    return p


class _Version(argparse.Action):
    """`mteemu --version`: the version and the hot path (native or pure Python), so that
    nobody measures the wrong one."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        from importlib.metadata import PackageNotFoundError, version

        from mteemu.machine import native

        try:
            v = version("mteemu")
        except PackageNotFoundError:
            v = "(not installed)"
        print(f"mteemu {v}; hot path: {native.describe()}")
        parser.exit(0)


def _rule_groups(text: str) -> tuple[str, ...]:
    from mteemu.board.rules import GROUPS  # the board layer only when a board is read

    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise argparse.ArgumentTypeError(f"unknown rule group {', '.join(bad) or '(none)'}; use {','.join(GROUPS)}")
    return groups


MAX_SIZE = 1 << 46            # 64 TiB: more than any board's RAM or swap mteemu can model
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str, option: str = "size") -> int:
    """A positive byte count such as 64M, 1.5G or 4096 (finite, at most MAX_SIZE)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise MteEmuError(f"{option}: bad size {text!r} (use e.g. 64M or 1G)")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    value = int(float(m.group(1)) * scale) if "." in m.group(1) else int(m.group(1)) * scale
    if value <= 0:
        raise MteEmuError(f"{option}: {text!r} must be more than 0 bytes")
    if value > MAX_SIZE:
        raise MteEmuError(f"{option}: {text!r} is more than mteemu can model ({MAX_SIZE >> 40} TiB)")
    return value


def _events(text: str) -> int:
    """--alloc-history N: a count of events, 1 to 16 million."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of calls {text!r}") from None
    if not 1 <= value <= 1 << 24:
        raise argparse.ArgumentTypeError(f"{text!r} calls: from 1 to {1 << 24}")
    return value


def _seconds(text: str) -> float:
    """--timeout: a finite, positive number of seconds that a timer can wait."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} seconds: must be a finite number above 0")
    if value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"{text!r} seconds: at most {MAX_TIMEOUT:g}")
    return value


def _count(low: int, high: int):  # noqa: ANN202 - an argparse type
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({low} to {high})")
        return value
    return parse


MAX_TIMEOUT = 365 * 86400.0     # a year: threading's timers overflow far beyond
SEED = _count(0, (1 << 64) - 1)


def _exec_environment() -> dict[bytes, bytes]:
    """The environment mteemu was started with, byte for byte: /proc/self/environ keeps it as
    exec'd. os.environ is not it: Python's locale coercion (PEP 538) adds LC_CTYPE=C.UTF-8
    when the locale is C, and the guest then counted words in UTF-8 (issue 28)."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items()}
    env: dict[bytes, bytes] = {}
    for item in raw.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            env.setdefault(name, value)
    return env


def guest_environment(set_env: Sequence[str], unset_env: Sequence[str], clear: bool = False) -> list[bytes]:
    env = {} if clear else _exec_environment()
    for name in unset_env:
        env.pop(os.fsencode(name), None)
    for item in set_env:
        name, _, value = item.partition("=")
        env[os.fsencode(name)] = os.fsencode(value)
    return [k + b"=" + v for k, v in env.items()]


def _run(args: argparse.Namespace, program: str, guest_args: list[str]) -> int:
    options = _run_options(args, program)
    board = _board(args)
    argv = [os.fsencode(program)] + [os.fsencode(a) for a in guest_args]
    env = guest_environment(args.set_env, args.unset_env, args.clear_env)
    from mteemu.kernel.fs.file import raise_host_fd_limit

    raise_host_fd_limit()
    listener = None
    if args.gdb:
        from mteemu.gdb.listen import Listener

        listener = Listener(args.gdb, args.gdb_allow_tcp)   # a port in use is an error before anything runs
    try:
        kernel = _start(board, options, program, argv, env)
        if listener is not None:
            from mteemu.gdb.session import Session

            kernel.attach(Session(kernel, kernel.init, listener.accept_with(kernel.say)))
        try:
            with host_signals.stopping(kernel.cpu.interrupt):
                return kernel.run().status
        finally:
            if args.report_json and kernel.fatal_report is not None:
                _write_report_json(args.report_json, kernel.fatal_report)
    finally:
        if listener is not None:
            listener.close()


def _run_options(args: argparse.Namespace, program: str) -> "RunOptions":
    """`run`'s options checked (bad input before anything boots) and made a RunOptions."""
    from mteemu.kernel.run import RunOptions

    if args.report_json:
        check_target(args.report_json, "--report-json", (program, args.dtb))
    if args.root and not os.path.isdir(args.root):
        raise InputError(f"--root {args.root}: not a directory")
    sysroot = args.sysroot or os.environ.get("QEMU_LD_PREFIX") or \
        ("/usr/aarch64-linux-gnu" if os.path.isdir("/usr/aarch64-linux-gnu") else None)
    if sysroot and not os.path.isdir(sysroot):
        raise InputError(f"-L {sysroot}: not a directory")
    if args.swap_file and not args.swap:
        raise MteEmuError("--swap-file needs --swap SIZE")
    if args.swap_file and os.path.lexists(args.swap_file):
        raise InputError(f"--swap-file {args.swap_file}: exists; mteemu only creates a new swap file")
    return RunOptions(seed=args.seed, timeout=args.timeout, strace=args.strace,
                      mem_limit=parse_size(args.mem, "--mem") if args.mem else None,
                      mte_tcf_preferred=args.mte_tcf_preferred, root=args.root,
                      swap=parse_size(args.swap, "--swap") if args.swap else 0, swap_file=args.swap_file,
                      tag_storage_policy=args.tag_storage_policy, stats=args.stats, kmsg=args.kmsg,
                      fixes=tuple(f for f in FIXES if f not in args.without),
                      check_invariants=args.check_invariants or os.environ.get("MTEEMU_CHECK_INVARIANTS") == "1",
                      closed_stdio=CLOSED_STDIO, inherited_fds=INHERITED_FDS,
                      alloc_history=args.alloc_history_calls if args.alloc_history else 0,
                      sysroot=os.path.realpath(sysroot) if sysroot else None)


def _write_report_json(path: str, report: "TagFaultReport") -> None:
    """--report-json: the last tag-check fault that killed a process, as JSON (also when the
    run then ended by a timeout or a deadlock); a failure to write is said, not fatal."""
    import json

    from mteemu.atomicfile import write_text

    try:
        write_text(path, json.dumps(report.to_json(), indent=2) + "\n")
    except OSError as e:
        sys.stderr.write(f"mteemu: cannot write --report-json {path}: {e.strerror}\n")
    except MteEmuError as e:
        sys.stderr.write(f"mteemu: {e.message}\n")


def _start(board, options, program: str, argv: list[bytes], env: list[bytes]):  # noqa: ANN001, ANN202
    """Boot the kernel and load the program; a --mem too small for that is bad input,
    and the error names the least that works."""
    from mteemu.kernel.kernel import Kernel, min_pages_to_start
    from mteemu.kernel.mm.pagealloc import OutOfMemory

    kernel = None
    started = False
    try:
        kernel = Kernel(board, options)
        kernel.spawn(program, argv, env)
        started = True
        return kernel
    except OutOfMemory:
        if options.mem_limit is None:
            raise
        if kernel is not None:       # one kernel at a time: each reserves ~2 GiB of address space
            kernel.discard()
            kernel = None
        pages = min_pages_to_start(board, options, program, argv, env)
        raise MteEmuError(f"--mem {options.mem_limit} bytes is too small to start {program}: it needs at "
                          f"least {pages * 4}K (program, stack, page tables, kernel stack)") from None
    finally:
        if kernel is not None and not started:
            kernel.close()        # the swap file, if any, goes with it


def _board(args: argparse.Namespace):  # noqa: ANN202 - a Board
    from mteemu.board.model import default_board

    if not args.dtb:
        return default_board()
    from mteemu.board import info

    bf = info.read(args.dtb, include_dirs=tuple(args.include_dirs))
    if bf.errors and not args.force:
        for f in bf.errors:
            sys.stderr.write(f"mteemu: {args.dtb}: {f.severity} {f.rule} {f.node}: {f.message}\n")
        raise BoardError(f"{args.dtb}: the board fails validation ({len(bf.errors)} error(s)); "
                         "--force runs it anyway")
    return bf.board()


def _validate(args: argparse.Namespace) -> int:
    import json

    from mteemu.board import info
    from mteemu.board.rules import GROUPS

    args.rules = args.rules or GROUPS
    status = 0
    results = []
    for path in args.files:
        try:
            bf = info.read(path, args.rules, tuple(args.include_dirs))
        except MteEmuError as e:
            status = max(status, EXIT_BAD_INPUT)
            if args.format == "json":
                results.append({"file": path, "binding": None, "findings": [], "error": e.message})
            else:
                sys.stderr.write(f"mteemu: {e.message}\n")
            continue
        if bf.errors:
            status = max(status, 1)
        if args.format == "json":
            results.append({"file": path, "binding": bf.layout.binding,
                            "findings": [f.as_dict() for f in bf.findings]})
            continue
        print(f"{path}: binding {bf.layout.binding}, {len(bf.layout.memory)} memory node(s), "
              f"{len(bf.layout.tags)} tag storage node(s)")
        for f in bf.findings:
            print(f"  {f.severity:7} {f.rule:24} {f.node}: {f.message}")
        print(f"{path}: {'INVALID' if bf.errors else 'valid'} ({len(bf.errors)} error(s), "
              f"{len(bf.findings) - len(bf.errors)} other finding(s); rules: {','.join(args.rules)})")
    if args.format == "json":
        print(json.dumps(results, indent=2))
    return status


def _dtb_info(args: argparse.Namespace) -> int:
    from mteemu.board import info, svg

    bf = info.read(args.file, include_dirs=tuple(args.include_dirs))
    sys.stdout.write(info.describe(bf))
    if args.svg:
        out = os.path.abspath(args.svg)
        check_target(out, "--svg", (args.file,))
        regions = info.regions(bf)
        if not regions:
            raise BoardError(f"{args.file}: nothing to draw (no memory or tag regions)")
        from mteemu.atomicfile import write_text

        try:
            write_text(out, svg.draw(regions, f"{os.path.basename(args.file)}: physical memory map"))
        except OSError as e:
            raise InputError(f"--svg {args.svg}: cannot write: {e.strerror}") from None
        print(f"memory map drawn to {args.svg}")
    return 0


def _oracle(args: argparse.Namespace) -> int:
    """`mteemu oracle PROGRAM ARGS`: what Linux does with it, reported as `mteemu run` would:
    its stdout and stderr, its exit status (128 + N when signal N killed it)."""
    from mteemu.errors import EXIT_TIMEOUT
    from mteemu.oracle import fetch, runner

    machine = fetch.machine(args.qemu)
    if args.fetch:
        version = ".".join(map(str, fetch.qemu_version(machine.qemu, machine.qemu_env) or ()))
        print(f"mteemu: oracle ready: {machine.qemu} (QEMU {version}), kernel {machine.kernel_version}")
        return 0
    if args.program is None:
        raise InputError("oracle: a program to run is needed (or --fetch)")
    from mteemu.atomicfile import write_text
    from mteemu.kernel.loader import parse_elf
    from mteemu.kernel.signals import name as signal_name

    path = Path(args.program)
    try:
        parse_elf(args.program, path.read_bytes())       # a clear refusal before booting anything
    except OSError as e:
        raise InputError(f"{args.program}: {e.strerror}") from None
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    from mteemu.kernel.fs.procfs.pid import host_capabilities

    prog = runner.Program(path, list(args.args), dict(e.split("=", 1) for e in args.set_env), stdin,
                          uid=os.getuid(), gid=os.getgid(), timeout=max(1, math.ceil(args.timeout)),
                          capabilities=int(dict(host_capabilities())["CapBnd"], 16), name=path.name)
    outcomes, log = runner.run_batch([prog], machine)
    if args.kernel_log:
        write_text(args.kernel_log, log)
    o = outcomes[0]
    sys.stdout.flush()
    sys.stdout.buffer.write(o.stdout)
    sys.stdout.buffer.flush()
    sys.stderr.flush()
    os.write(2, o.stderr)
    if o.kind == runner.NOT_RUN:
        tail = "; ".join(log.strip().splitlines()[-3:])
        raise fetch.OracleError(f"oracle: the guest ended before the program finished: {tail}")
    if o.kind == runner.NOT_STARTED:
        raise InputError(f"oracle: {args.program}: Linux cannot execute it: {os.strerror(o.value)}")
    if o.kind == runner.TIMED_OUT:
        sys.stderr.write(f"mteemu: oracle: {args.program} did not finish within {args.timeout:g} s (--timeout)\n")
        return EXIT_TIMEOUT
    if o.kind == runner.SIGNALED:
        sys.stderr.write(f"mteemu: guest terminated by signal {o.value} ({signal_name(o.value)})\n")
    assert o.status is not None
    return o.status


def _races(args: argparse.Namespace) -> int:
    import json

    from mteemu.races.explorer import explore, format_text
    from mteemu.races.scenarios import SCENARIOS

    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        raise MteEmuError(f"unknown scenario {unknown[0]!r} (scenarios: {', '.join(SCENARIOS)})")
    fixes = tuple(f for f in FIXES if f not in args.without)
    reports = []
    for name in args.scenarios or list(SCENARIOS):
        report = explore(SCENARIOS[name], fixes, args.policy)
        reports.append(report)
        if args.format == "text":
            sys.stdout.write(format_text(report, None if args.all_traces else 3))
            sys.stdout.flush()
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    return 0 if all(r.ok for r in reports) else 1


class _Unfailing:
    """stderr that a failing write (2>/dev/full, a closed descriptor) cannot turn into
    another exit status: mteemu's own lines are best effort, its exit status is not."""

    def __init__(self, stream) -> None:  # noqa: ANN001 - a text stream, or None when fd 2 was closed
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text) if self._stream is not None else len(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            if self._stream is not None:
                self._stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._stream, name)


CLOSED_STDIO: tuple[int, ...] = ()
INHERITED_FDS: tuple[int, ...] = ()


def _hold_closed_stdio() -> tuple[int, ...]:
    """Which of fds 0-2 mteemu was started without. Each is held by /dev/null so that no
    file mteemu opens later (a swap file...) becomes a guest's stdin, stdout or stderr;
    the guest starts with them closed, as a program exec'd so would on Linux."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    return tuple(closed)


def _inherited_fds() -> tuple[int, ...]:
    """The descriptors above stdio mteemu was started with and would pass on at an exec
    (no FD_CLOEXEC): a shell's process substitution (/dev/fd/63), make's jobserver, socket
    activation. Python opens its own with FD_CLOEXEC (PEP 446), so at start-up these are
    exactly what the parent handed over; the guest gets each under its own number."""
    import fcntl

    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            if not fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                out.append(fd)
        except OSError:
            continue                  # listdir's own descriptor, closed by now
    return tuple(sorted(out))


def main(argv: Optional[Sequence[str]] = None) -> int:
    global CLOSED_STDIO, INHERITED_FDS
    if not isinstance(sys.stderr, _Unfailing):
        CLOSED_STDIO = _hold_closed_stdio()
        INHERITED_FDS = _inherited_fds()
        sys.stderr = _Unfailing(sys.stderr)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:                      # its own options: mteemu bench --help
        from mteemu.bench import main as bench_main

        try:
            return bench_main(argv[1:])
        except MteEmuError as e:
            sys.stderr.write(f"mteemu: {e.message}\n")
            return e.exit_status
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args, args.program, args.args)
        if args.command == "demo":
            return _run(args, str(DEMO), [])
        if args.command == "test":
            from mteemu.testing.cli import run_tests

            return run_tests(args)
        if args.command == "validate-dtb":
            return _validate(args)
        if args.command == "dtb-info":
            return _dtb_info(args)
        if args.command == "races":
            return _races(args)
        if args.command == "oracle":
            return _oracle(args)
        if args.command == "syscalls":
            from mteemu.report import syscalls

            table = syscalls.rows(include_missing=args.all)
            render = {"text": syscalls.text, "markdown": syscalls.markdown, "json": syscalls.as_json}[args.format]
            sys.stdout.write(render(table))
            return 0
        raise MteEmuError(f"unknown command {args.command}")
    except MteEmuError as e:
        sys.stdout.flush()
        sys.stderr.write(f"mteemu: {e.message}\n")
        for line in getattr(e, "details", ()):
            sys.stderr.write(f"mteemu:   {line}\n")
        return e.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`mteemu dtb-info ... | head`): end as a program
        # killed by SIGPIPE would, quietly; stdout is pointed at /dev/null so that Python's
        # final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 128 + 13
    except Exception as e:
        if os.environ.get("MTEEMU_DEBUG"):
            raise
        sys.stderr.write(f"mteemu: internal error: {e.__class__.__name__}: {e} "
                         "(rerun with MTEEMU_DEBUG=1 for a traceback)\n")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
