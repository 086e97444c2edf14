"""The race explorer: every scenario runs clean in every interleaving with the RFC's fixes,
and breaks — with a trace naming the page, the tag block and the victim — without the fix
that guards it. Both tag-storage policies. And `mteemu races` as a command."""
from __future__ import annotations

import json

import pytest
from conftest import run_mteemu

from mteemu.kernel.mm.fixes import FIXES
from mteemu.races.explorer import explore, format_text, interleavings
from mteemu.races.scenarios import SCENARIOS

INTERLEAVINGS = {"race-a": 6, "race-b": 20, "race-c": 3, "fatal-signal": 12}


def test_interleavings_are_every_merge_of_the_threads() -> None:
    threads = [["a1", "a2"], ["b1"], ["c1", "c2"]]
    merges = list(interleavings(threads))
    assert len(merges) == 30 == len({tuple(m) for m in merges})       # 5! / (2! 1! 2!)
    for m in merges:
        assert m.index("a1") < m.index("a2") and m.index("c1") < m.index("c2")


@pytest.mark.parametrize("policy", ["metadata", "cma"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_is_safe_with_the_fixes_and_broken_without_its_fix(name: str, policy: str) -> None:
    scenario = SCENARIOS[name]
    report = explore(scenario, FIXES, policy)
    assert report.runs == INTERLEAVINGS[name]
    assert report.ok, format_text(report, None)
    for fix in scenario.guarded_by:
        report = explore(scenario, [f for f in FIXES if f != fix], policy)
        assert report.runs == INTERLEAVINGS[name]
        assert report.broken, f"{name} without {fix}: no interleaving broke"
        text = format_text(report, None)
        # The trace shows the corruption: the tag write into the victim's page.
        assert "model violation: tags of pfn 0x" in text and "which is not reserved and holds data" in text
        assert "data of victim (pid 2000)" in text
        for b in report.broken:
            assert b.trace[0].startswith(" 1. T")


def test_fault_on_access_is_backed_up_by_the_set_pte_backstop() -> None:
    """mprotect's rewrite of each entry goes through set_pte_at(): with fault-on-access off
    alone nothing breaks; with the backstop off too, race A and race C do."""
    off_one = [f for f in FIXES if f != "fault-on-access"]
    off_both = [f for f in off_one if f != "set-pte-backstop"]
    for name in ("race-a", "race-c"):
        assert explore(SCENARIOS[name], off_one).ok
        assert not explore(SCENARIOS[name], off_both).ok


@pytest.mark.slow
def test_the_races_command() -> None:
    r = run_mteemu(["races", "race-c", "fatal-signal"])
    assert r.returncode == 0, r.stderr.decode()
    assert b"race-c: " in r.stdout and b"3 interleavings, 0 broke" in r.stdout
    r = run_mteemu(["races", "--format", "json", "--without", "pfn-tag-save", "race-a"])
    assert r.returncode == 1
    (report,) = json.loads(r.stdout)
    assert report["scenario"] == "race-a" and report["fixes_off"] == ["pfn-tag-save"]
    assert report["interleavings"] == 6 and report["violations"] == len(report["broken"]) >= 1
    assert any("model violation" in line for b in report["broken"] for line in b["trace"])
    for bad in (["races", "race-z"], ["races", "--without", "nope"], ["races", "--policy", "x"]):
        r = run_mteemu(bad)
        assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
