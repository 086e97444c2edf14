"""Two kernels in one process (issue 24): each CPU owns its native state (a `struct mte_ctx`
handed to Unicorn's hooks as user_data), so a second CPU no longer takes over the first's
TLB, undo log and callbacks; and a discarded kernel gives its address space back."""
from __future__ import annotations

import gc
import os

import pytest
from conftest import ROOT

from mteemu.board.model import default_board
from mteemu.kernel.kernel import Kernel
from mteemu.kernel.run import RunOptions

# Every test here runs a program.
pytestmark = pytest.mark.slow


def _vm_kib() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmSize:")[1].split()[0])


def test_two_kernels_run_side_by_side_and_give_their_memory_back(guest, capfd) -> None:
    prog = str(guest("mte/insns"))
    expected = (ROOT / "guest_tests" / "mte" / "insns.expected").read_text()
    gc.collect()
    before = _vm_kib()
    first, second = (Kernel(default_board(), RunOptions(timeout=120)) for _ in range(2))
    for k in (first, second):
        k.spawn(prog, [os.fsencode(prog)], [])
    # The second CPU was made last: before, its native state was the only one, and the
    # first kernel's MTE instructions ran against the second's TLB and RAM.
    assert first.run().status == 0
    out_first = capfd.readouterr().out
    assert second.run().status == 0
    out_second = capfd.readouterr().out
    assert out_first == out_second == expected
    for k in (first, second):
        k.discard()
    del first, second, k
    gc.collect()
    assert _vm_kib() - before < 512 * 1024, (before, _vm_kib(), _holders())   # each held ~2 GiB


def _holders() -> list[str]:
    """What still refers to a Kernel, if the address space did not come back."""
    alive = [o for o in gc.get_objects() if isinstance(o, Kernel)]
    return [type(r).__name__ for k in alive for r in gc.get_referrers(k)][:20]
