"""pytest plugin (entry point `pytest11`): `pytest guest_tests/` collects guest tests —
C sources with an expectation block, and ELFs with a PROGRAM.test sidecar — as pytest
items, so pytest-xdist (`-n auto`, or remote workers) spreads them over cores and
machines. Options: --mteemu-oracle qemu, --mteemu-cache DIR."""
from __future__ import annotations

from pathlib import Path

import pytest

from mteemu.testing import shard
from mteemu.testing.runner import PASS, Case, Result, Settings, close_servers, run_case
from mteemu.testing.spec import ExpectationError, has_expectations, parse


def pytest_addoption(parser) -> None:  # noqa: ANN001
    group = parser.getgroup("mteemu", "mteemu guest tests")
    group.addoption("--mteemu-oracle", choices=("qemu",), default=None,
                    help="also run guest tests under qemu-aarch64 and compare")
    group.addoption("--mteemu-cache", default=None, help="where built guest programs are kept")
    group.addoption("--mteemu-shard", default=None, metavar="K/N",
                    help="collect only slice K of N of the guest tests (as mteemu test --shard)")
    group.addoption("--mteemu-durations", default=None, metavar="FILE",
                    help="balance --mteemu-shard by the times in an mteemu test --json file")


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001
    """--mteemu-shard: keep this machine's slice of the guest tests (other tests stay). The
    choice depends only on names, so every pytest-xdist worker agrees on it."""
    text = config.getoption("mteemu_shard")
    if not text:
        return
    k, n = shard.parse(text)
    path = config.getoption("mteemu_durations")
    guests = [item for item in items if isinstance(item, GuestItem)]
    chosen = shard.select((i.case.name for i in guests), k, n, shard.load_durations(path) if path else None)
    dropped = [i for i in guests if i.case.name not in chosen]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [i for i in items if not (isinstance(i, GuestItem) and i.case.name not in chosen)]
    for item in guests:
        item.user_properties.append(("shard", f"{k}/{n}"))


def pytest_collect_file(file_path: Path, parent):  # noqa: ANN001, ANN201
    if file_path.suffix == ".c" and has_expectations(file_path):
        return GuestFile.from_parent(parent, path=file_path)
    if file_path.suffix == ".test":
        program = file_path.with_suffix("")
        if program.is_file() and program.read_bytes()[:4] == b"\x7fELF":
            return GuestFile.from_parent(parent, path=program)
    return None


class GuestFile(pytest.File):
    def collect(self):  # noqa: ANN201
        name = self.path.stem if self.path.suffix == ".c" else self.path.name
        try:
            specs = parse(self.path, name).expanded()
        except (ExpectationError, OSError) as e:
            yield GuestItem.from_parent(self, name=name, case=Case(name, self.path, error=str(e)))
            return
        for spec in specs:
            yield GuestItem.from_parent(self, name=spec.name, case=Case(spec.name, self.path, spec))


class GuestTestFailed(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.message)
        self.result = result


class GuestItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs) -> None:  # noqa: ANN003
        super().__init__(**kwargs)
        self.case = case

    def runtest(self) -> None:
        cfg = self.config
        settings = Settings(oracle=cfg.getoption("mteemu_oracle"))
        cache = cfg.getoption("mteemu_cache")
        if cache:
            settings.cache = Path(cache)
        result = run_case(self.case, settings)
        if result.oracle:
            self.user_properties.append(("qemu-aarch64", result.oracle))
        if result.status != PASS:
            raise GuestTestFailed(result)

    def repr_failure(self, excinfo, style=None):  # noqa: ANN001, ANN201 - str or pytest's TerminalRepr
        if isinstance(excinfo.value, GuestTestFailed):
            r = excinfo.value.result
            return f"{r.status}: {r.message}" + (f"\n{r.details}" if r.details else "")
        return super().repr_failure(excinfo, style)

    def reportinfo(self):  # noqa: ANN201
        return self.path, None, f"guest test {self.name}"


def pytest_sessionfinish(session) -> None:  # noqa: ANN001
    close_servers()          # the fork servers the guest tests ran in (testing/forkserver.py)
