"""Guest test expectations: what a test program must do, written next to it.

In a C source, `// key: value` lines in the header (the comment lines, `#include`s and
block comments before the first line of code); for a prebuilt ELF, the same lines
without `//` in a sidecar file `PROGRAM.test`. Keys:

    exit: N                 the exit status (default 0)
    signal: SIGSEGV         killed by this signal instead (exit status 128+N)
    si_code: SEGV_MTESERR   ...with this si_code (a fault signal)
    args: ARGS...           guest arguments (shell words)
    env: NAME=VALUE         one guest environment variable (repeatable); nothing else
                            is in the guest's environment
    options: OPTIONS...     extra `mteemu run` options (e.g. --mte-tcf-preferred sync)
    board: FILE             a device tree, relative to the test file (run --dtb)
    timeout: SECONDS        per-run limit (default 60)
    build: FLAGS...         extra compiler flags (C sources only)
    qemu: same              qemu-aarch64 agrees with Linux here (compared in oracle mode)
    qemu: differs: WHY      a known, documented difference of qemu-aarch64 from Linux
    variant V: OPTIONS...   also run with these options, as test NAME[V]
    variant-exit V: N       ...expecting this exit status
    qemu-variant: V         qemu-aarch64 agrees for variant V too
    linux: differs: WHY     a known, justified difference of mteemu from Linux (the Linux
                            oracle, `mteemu test --oracle linux`, says so instead of failing)

Expected stdout: a sidecar `NAME.expected` (exact; `NAME.V.expected` for a variant), or
header lines `// | text` (this exact line) and `// ~ regex` (a line matching this
regular expression). Without either, stdout is not checked.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from mteemu.kernel import signals as S

DEFAULT_TIMEOUT = 60.0
KEYS = {"exit", "signal", "si_code", "args", "env", "options", "board", "timeout", "build", "qemu",
        "qemu-variant", "variant", "variant-exit", "linux"}
_SI_CODES = {
    "SEGV_MAPERR": 1, "SEGV_ACCERR": 2, "SEGV_MTEAERR": 8, "SEGV_MTESERR": 9,
    "BUS_ADRALN": 1, "BUS_ADRERR": 2, "ILL_ILLOPC": 1, "ILL_ILLOPN": 2, "TRAP_BRKPT": 1, "SI_KERNEL": 0x80,
}
_LINE = re.compile(r"^(?P<key>[a-z_-]+)(?:\s+(?P<var>\w+))?:\s*(?P<value>.*)$")


class ExpectationError(Exception):
    """A malformed expectation block: the test is reported as an error."""


@dataclass
class TestSpec:
    name: str
    path: Path                       # the C source or the ELF
    is_source: bool
    exit: int = 0
    signal: Optional[int] = None
    si_code: Optional[int] = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    options: list[str] = field(default_factory=list)
    board: Optional[Path] = None
    timeout: float = DEFAULT_TIMEOUT
    build_flags: list[str] = field(default_factory=list)
    stdout_exact: Optional[str] = None
    stdout_lines: Optional[list[tuple[str, str]]] = None   # ("|", text) or ("~", regex)
    qemu: Optional[str] = None       # "same", or the documented reason it differs
    qemu_variants: set[str] = field(default_factory=set)
    linux: Optional[str] = None      # why mteemu differs from Linux here, where it does on purpose
    variant: Optional[str] = None
    variants: dict[str, list[str]] = field(default_factory=dict)
    variant_exit: dict[str, int] = field(default_factory=dict)

    @property
    def status(self) -> int:
        """The exit status mteemu must end with."""
        return 128 + self.signal if self.signal else self.exit

    @property
    def qemu_same(self) -> bool:
        return self.qemu == "same" if self.variant is None else self.variant in self.qemu_variants

    def expanded(self) -> list["TestSpec"]:
        """This test and one test per variant."""
        out = [self]
        for v, opts in self.variants.items():
            exp = self.path.with_name(f"{self.path.stem}.{v}.expected")
            out.append(replace(self, name=f"{self.name}[{v}]", variant=v, options=self.options + opts,
                               exit=self.variant_exit.get(v, self.exit),
                               stdout_exact=exp.read_text() if exp.exists() else None, variants={}))
        return out


def _number(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"expected {what}, got {text!r}") from None


def _signal_number(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        return int(t)
    for n in range(1, 65):
        if S.name(n) == t or S.name(n) == "SIG" + t:
            return n
    raise ValueError(f"unknown signal {text!r}")


def _si_code(text: str) -> int:
    t = text.strip().upper()
    if t.isdigit():
        return int(t)
    if t not in _SI_CODES:
        raise ValueError(f"unknown si_code {text!r}")
    return _SI_CODES[t]


def header_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text after //) of the C header's comment lines."""
    out = []
    in_block = False
    for no, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.strip()
        if in_block:
            in_block = "*/" not in line
            continue
        if line.startswith("/*"):
            in_block = "*/" not in line
            continue
        if line.startswith("//"):
            out.append((no, line[2:].strip()))
        elif line and not line.startswith(("#include", "#define", "#ifndef", "#endif", "#if ")):
            break
    return out


def has_expectations(path: Path) -> bool:
    """Does this C file declare itself a guest test (any key of the format)?"""
    try:
        return any((m := _LINE.match(text)) is not None and m.group("key") in KEYS for _, text in header_lines(path))
    except OSError:
        return False


def parse(path: Path, name: str) -> TestSpec:
    """The spec of a C source (its header) or an ELF (its sidecar PROGRAM.test)."""
    is_source = path.suffix == ".c"
    if is_source:
        lines = header_lines(path)
        where = path
    else:
        sidecar = path.with_name(path.name + ".test")
        where = sidecar
        lines = list(enumerate(sidecar.read_text().splitlines(), 1)) if sidecar.exists() else []
    spec = TestSpec(name=name, path=path, is_source=is_source)
    stdout_lines: list[tuple[str, str]] = []
    for no, text in lines:
        if text[:2] in ("| ", "~ ") or text in ("|", "~"):
            kind, rest = text[0], text[2:]
            if kind == "~":
                try:
                    re.compile(rest)
                except re.error as e:
                    raise ExpectationError(f"{where}:{no}: bad regular expression: {e}") from None
            stdout_lines.append((kind, rest))
            continue
        m = _LINE.match(text)
        if m is None or m.group("key") not in KEYS:
            if is_source:
                continue          # prose in the header comment
            raise ExpectationError(f"{where}:{no}: not 'key: value': {text!r}")
        key, var, value = m.group("key"), m.group("var"), m.group("value").strip()
        try:
            _apply(spec, key, var, value, path)
        except (ValueError, IndexError) as e:
            raise ExpectationError(f"{where}:{no}: {key}: {e}") from None
    if spec.si_code is not None and spec.signal is None:
        raise ExpectationError(f"{where}: si_code without signal")
    if stdout_lines:
        spec.stdout_lines = stdout_lines
    expected = path.with_name(f"{path.stem}.expected") if is_source else path.with_name(path.name + ".expected")
    if expected.exists():
        if stdout_lines:
            raise ExpectationError(f"{where}: expected stdout both inline and in {expected.name}")
        spec.stdout_exact = expected.read_text()
    return spec


def _apply(spec: TestSpec, key: str, var: Optional[str], value: str, path: Path) -> None:
    if key in ("variant", "variant-exit"):
        if not var:
            raise ValueError("needs a variant name: 'variant NAME: ...'")
        if key == "variant":
            spec.variants[var] = shlex.split(value)
        else:
            spec.variant_exit[var] = _number(value, "an exit status 0..255")
        return
    setter = _SETTERS.get(key)
    if setter is not None:
        setter(spec, value, path)


def _set_exit(spec: TestSpec, value: str, path: Path) -> None:
    spec.exit = _number(value, "an exit status 0..255")
    if not 0 <= spec.exit <= 255:
        raise ValueError(f"expected an exit status 0..255, got {value!r}")


def _set_env(spec: TestSpec, value: str, path: Path) -> None:
    name, eq, val = value.partition("=")
    if not eq or not name:
        raise ValueError("expected NAME=VALUE")
    spec.env[name] = val


def _set_timeout(spec: TestSpec, value: str, path: Path) -> None:
    try:
        spec.timeout = float(value)
    except ValueError:
        raise ValueError(f"expected seconds, got {value!r}") from None
    if spec.timeout <= 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")


def _set_qemu(spec: TestSpec, value: str, path: Path) -> None:
    if value == "same":
        spec.qemu = "same"
    elif value.startswith("differs"):
        spec.qemu = value.partition(":")[2].strip() or "differs"
    else:
        raise ValueError("expected 'same' or 'differs: WHY'")


def _set_linux(spec: TestSpec, value: str, path: Path) -> None:
    if not value.startswith("differs:") or not value.partition(":")[2].strip():
        raise ValueError("expected 'differs: WHY'")
    spec.linux = value.partition(":")[2].strip()


def _set(field: str, parse: Callable[[str], object]) -> Callable[[TestSpec, str, Path], None]:
    return lambda spec, value, path: setattr(spec, field, parse(value))


def _extend(field: str) -> Callable[[TestSpec, str, Path], None]:
    return lambda spec, value, path: getattr(spec, field).extend(shlex.split(value))


# What each header key sets (variant and variant-exit take a name: _apply).
_SETTERS: dict[str, Callable[[TestSpec, str, Path], None]] = {
    "exit": _set_exit, "signal": _set("signal", _signal_number), "si_code": _set("si_code", _si_code),
    "args": _set("args", shlex.split), "env": _set_env, "options": _extend("options"),
    "board": lambda spec, value, path: setattr(spec, "board", (path.parent / value).resolve()),
    "timeout": _set_timeout, "build": _extend("build_flags"), "qemu": _set_qemu,
    "qemu-variant": lambda spec, value, path: spec.qemu_variants.add(value), "linux": _set_linux,
}
