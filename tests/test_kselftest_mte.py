"""The kernel's own arm64 MTE selftests (built at install time from Debian's linux-source-6.1
by scripts/kselftest-mte, never committed), under mteemu and under the Linux oracle: the
same TAP results, and with -DDEBUG the same synchronous faults at the same PCs in the same
order, and asynchronous ones only where Linux delivers them too (it also delivers at timer
interrupts, so its own vary from run to run). check_buffer_fill found two bugs this way: an asynchronous
fault reported right after its store instead of at the next system call (a second async
mismatch was taken for a kernel entry), and a synchronous fault reported with the PC of an
earlier block (Unicorn's skip_sync_pc_on_exit, left set by a hook that wrote the PC).
The other selftests are compared by `scripts/kselftest-mte` (minutes, not CI's seconds)."""
from __future__ import annotations

from importlib.machinery import SourceFileLoader

import pytest
from conftest import ROOT

# Every test here runs a program.
pytestmark = pytest.mark.slow

kselftest = SourceFileLoader("kselftest_mte", str(ROOT / "scripts" / "kselftest-mte")).load_module()


@pytest.fixture(scope="module")
def linux() -> dict[str, str]:
    binaries = [kselftest.OUT / "debug" / t for t in ("check_buffer_fill", "check_child_memory")]
    if not all(b.exists() for b in binaries):
        pytest.fail("the MTE selftests are not built: run the README's test command (scripts/kselftest-mte --fetch)")
    return dict(zip(("check_buffer_fill", "check_child_memory"), kselftest.run_linux(binaries)))


@pytest.mark.parametrize("name", ["check_buffer_fill", "check_child_memory"])
def test_the_kernels_mte_selftests_fault_as_under_linux(linux, name: str) -> None:
    ours = kselftest.run_mteemu(kselftest.OUT / "debug" / name, timeout=600)
    assert kselftest.results(ours) == kselftest.results(linux[name])
    assert all(r.startswith("ok") for r in kselftest.results(ours)), ours[-2000:]
    assert kselftest.same_faults(kselftest.faults(ours), kselftest.faults(linux[name]))
