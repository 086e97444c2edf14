"""Sharding a guest suite over CI machines: `mteemu test --shard K/N` and the pytest
plugin's `--mteemu-shard K/N` select disjoint slices that cover the suite exactly once,
the same whatever order the tests are found in; with an earlier run's durations the
slices differ in time by less than the longest test; JUnit carries what a dashboard
groups by."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, run_mteemu
from hypothesis import given, settings
from hypothesis import strategies as st

from mteemu.errors import InputError
from mteemu.testing import shard

names_ = st.lists(st.text("abcdefgh/_[]", min_size=1, max_size=12), min_size=0, max_size=60, unique=True)


@settings(max_examples=300, deadline=None)
@given(names=names_, n=st.integers(1, 12), data=st.data())
def test_shards_are_disjoint_and_complete(names: list[str], n: int, data) -> None:
    durations = data.draw(st.none() | st.fixed_dictionaries({}, optional={
        name: st.floats(0, 100, allow_nan=False) for name in names}))
    slices = [shard.select(names, k, n, durations) for k in range(1, n + 1)]
    assert sum(len(s) for s in slices) == len(names) and set().union(*slices) == set(names)
    shuffled = data.draw(st.permutations(names))
    assert [shard.select(shuffled, k, n, durations) for k in range(1, n + 1)] == slices   # order-free


@settings(max_examples=300, deadline=None)
@given(durations=st.dictionaries(st.text("abcdef", min_size=1, max_size=8), st.floats(0.01, 50, allow_nan=False),
                                 min_size=1, max_size=50), n=st.integers(1, 8))
def test_balanced_shards_differ_by_less_than_the_longest_test(durations: dict[str, float], n: int) -> None:
    loads = [sum(durations[x] for x in shard.select(durations, k, n, durations)) for k in range(1, n + 1)]
    assert max(loads) - min(loads) <= max(durations.values()) + 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "2/1001"])
def test_bad_shard_specs(text: str) -> None:
    with pytest.raises(InputError):
        shard.parse(text)
    r = run_mteemu(["test", "--shard", text, str(ROOT / "guest_tests" / "hello.c")])
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1


SMALL = ["hello", "args_env", "determinism", "random_bytes", "files", "float_simd"]


@pytest.fixture
def suite(tmp_path):
    d = tmp_path / "suite"
    d.mkdir()
    for name in SMALL:
        for ext in (".c", ".expected"):
            if (ROOT / "guest_tests" / f"{name}{ext}").exists():
                shutil.copy(ROOT / "guest_tests" / f"{name}{ext}", d / f"{name}{ext}")
    return d


def _names(report) -> list[str]:
    return [r["name"] for r in json.loads(report.read_text())]


@pytest.mark.slow
def test_mteemu_test_shards_cover_the_suite_once(tmp_path, suite) -> None:
    full = tmp_path / "full.json"
    assert run_mteemu(["test", "--json", str(full), str(suite)], cwd=tmp_path).returncode == 0
    everything = _names(full)
    for durations in ([], ["--durations", str(full)]):
        seen = []
        for k in (1, 2, 3):
            out, junit = tmp_path / f"s{k}.json", tmp_path / f"s{k}.xml"
            r = run_mteemu(["test", "--shard", f"{k}/3", *durations, "--json", str(out), "--junit-xml", str(junit),
                            str(suite)], cwd=tmp_path)
            assert r.returncode == 0, r.stdout + r.stderr
            seen += _names(out)
            props = {p.get("name"): p.get("value") for p in ET.parse(junit).iter("property")}
            assert props["shard"] == f"{k}/3" and props["board"] == "default" and props["seed"] == "0"
        assert sorted(seen) == sorted(everything)


@pytest.mark.slow
def test_pytest_plugin_shards(tmp_path, suite) -> None:
    def collected(*extra: str) -> set[str]:
        r = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                            "-o", "addopts=", *extra, str(suite)], capture_output=True, text=True, cwd=tmp_path)
        return {line for line in r.stdout.splitlines() if "::" in line}
    everything = collected()
    parts = [collected("--mteemu-shard", f"{k}/4") for k in range(1, 5)]
    assert everything and sum(len(p) for p in parts) == len(everything) and set().union(*parts) == everything
