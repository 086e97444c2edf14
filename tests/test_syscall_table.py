"""The system call table as data: every handler module is in it, every call says how fully it
is modelled, `mteemu syscalls` prints it, and the docs' copy is the code's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mteemu import cli
from mteemu.kernel.syscalls import registry, table
from mteemu.kernel.syscalls.numbers import SYSCALL_NUMBERS
from mteemu.report import docs

SYSCALLS_DIR = Path(table.__file__).parent
NOT_HANDLERS = {"__init__", "registry", "args", "table", "numbers"}


def test_every_handler_module_is_in_the_table() -> None:
    files = {p.stem for p in SYSCALLS_DIR.glob("*.py")} - NOT_HANDLERS
    assert files == {m.__name__.rsplit(".", 1)[1] for m in table.MODULES}


def test_a_call_handled_twice_is_refused() -> None:
    import types

    a, b = types.ModuleType("a"), types.ModuleType("b")
    a.f = registry.syscall("getpid")(lambda k, t: 1)       # type: ignore[attr-defined]
    b.g = registry.syscall("getpid")(lambda k, t: 2)       # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="getpid is handled twice"):
        table.collect((a, b))


def test_partial_and_refused_calls_say_why() -> None:
    with pytest.raises(ValueError, match="needs a note"):
        registry.syscall("mlock", support=registry.Support.PARTIAL)
    for h in table.HANDLERS.values():
        assert h.nr == SYSCALL_NUMBERS[h.name]
        assert (h.support is registry.Support.FULL) == (h.note == ""), h.name


def test_mteemu_syscalls_lists_every_implemented_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["syscalls", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)["syscalls"]
    assert {r["name"] for r in listed} == {h.name for h in table.HANDLERS.values()}
    assert {r["name"]: r["support"] for r in listed}["mlock"] == "partial"
    assert cli.main(["syscalls", "--all"]) == 0
    text = capsys.readouterr().out
    assert " missing " in text and "ENOSYS" in text      # arm64 calls not implemented are listed too
    assert cli.main(["syscalls"]) == 0
    assert " missing " not in capsys.readouterr().out


def test_the_docs_known_differences_are_the_tables() -> None:
    assert docs.stale() == [], "run scripts/gen-docs"
    page = (docs.ROOT / "docs/known-differences.md").read_text()
    for h in table.HANDLERS.values():
        if h.support is not registry.Support.FULL:
            assert f"| `{h.name}` |" in page
