"""pytest plugin (entry point `pytest11`): `pytest guest_tests/` collects guest tests —
C sources with an expectation block, and ELFs with a PROGRAM.test sidecar — as pytest
items, so pytest-xdist (`-n auto`, or remote workers) spreads them over cores and
machines. Options: --mteemu-oracle qemu|linux, --mteemu-cache DIR.

With --mteemu-oracle linux, the first guest test a worker runs has every guest test of the
session run under the Linux oracle (testing/linux.py: a boot per batch, results cached by
what decides them, a lock so that pytest-xdist workers boot once between them), and each
test is then judged against its Linux run."""
from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from mteemu.testing import build as B
from mteemu.testing import linux, shard
from mteemu.testing.runner import PASS, Case, Result, Settings, cache_name, close_servers, run_case
from mteemu.testing.spec import ExpectationError, has_expectations, parse


def pytest_addoption(parser) -> None:  # noqa: ANN001
    group = parser.getgroup("mteemu", "mteemu guest tests")
    group.addoption("--mteemu-oracle", choices=("qemu", "linux"), default=None,
                    help="also run guest tests under qemu-aarch64 (qemu) or Linux (linux) and compare")
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
        self.add_marker(pytest.mark.slow)          # builds and runs a guest program

    def runtest(self) -> None:
        cfg = self.config
        oracle = cfg.getoption("mteemu_oracle")
        settings = Settings(oracle=oracle)
        cache = cfg.getoption("mteemu_cache")
        if cache:
            settings.cache = Path(cache)
        result = run_case(self.case, settings)
        if oracle == "linux" and self.case.spec is not None and result.binary is not None \
                and result.exit_status is not None:
            outcome = _linux_outcomes(self.session, settings).get(self.case.name)
            if outcome is None:
                program = linux.program_for(self.case.spec, result.binary)
                result.oracle_name, result.oracle = "linux", program if isinstance(program, str) else None
            else:
                linux.judge(self.case.spec, result, outcome)
        if result.oracle:
            self.user_properties.append(("qemu-aarch64" if result.oracle_name == "qemu" else "linux",
                                         result.oracle))
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


_LINUX: dict[str, object] = {}


def _linux_outcomes(session, settings: Settings) -> dict:  # noqa: ANN001
    """Every guest test of the session under Linux, by name (once per worker process)."""
    if "outcomes" in _LINUX:
        return _LINUX["outcomes"]  # type: ignore[return-value]
    from mteemu.oracle import fetch

    names, programs = [], []
    for item in session.items:
        spec = item.case.spec if isinstance(item, GuestItem) else None
        if spec is None:
            continue
        try:
            binary = B.build(spec.path, cache_name(spec), spec.build_flags, settings.cache) if spec.is_source \
                else spec.path
        except (B.BuildError, OSError):
            continue
        program = linux.program_for(spec, binary)
        if not isinstance(program, str):
            names.append(spec.name)
            programs.append(program)
    lock_path = fetch.cache_dir() / "lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # one boot between the workers: the rest read the cache
        outcomes = linux.linux_outcomes(programs, fetch.machine())
    _LINUX["outcomes"] = dict(zip(names, outcomes))
    return _LINUX["outcomes"]  # type: ignore[return-value]
