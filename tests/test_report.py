"""The report printed when a tag-check fault kills the guest, as text and as JSON."""
from __future__ import annotations

import json
import re

import pytest
from conftest import run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow


def test_fatal_tag_fault_report(guest, tmp_path) -> None:
    out = tmp_path / "report.json"
    r = run_mteemu(["run", "--report-json", str(out), str(guest("mte/fatal"))], cwd=tmp_path)
    assert r.returncode == 139
    text = r.stderr.decode()
    assert "Traceback" not in text
    assert re.search(r"^==mteemu== ERROR: tag-mismatch \(synchronous\) on address 0x500[0-9a-f]+ at pc 0x[0-9a-f]+$",
                     text, re.M)
    assert re.search(r"^WRITE of size 1 at 0x500[0-9a-f]+ tags: 5/3 \(ptr/mem\) in thread \d+", text, re.M)
    frames = re.findall(r"^    #(\d+) 0x[0-9a-f]+ in (\S+)$", text, re.M)
    assert frames[0][1].startswith("store_byte+")
    assert any(name.startswith("main+") for _, name in frames[1:])
    assert re.search(r"^\s+strb\s", text, re.M)                       # the faulting instruction
    grid = [line for line in text.splitlines() if re.match(r"^(=>|  )0x[0-9a-f]{12}:", line)]
    assert len(grid) == 7
    current = [line for line in grid if line.startswith("=>")]
    assert len(current) == 1 and "[3]" in current[0]
    assert " 5 " in current[0]                                          # the object's own granules
    assert re.search(r"^\s+x0 [0-9a-f]{16}", text, re.M)
    assert "Tag-check mode: tagged_addr_ctrl=0x7fff3 (TCF sync)" in text
    assert "mteemu: guest terminated by signal 11 (SIGSEGV)" in text

    report = json.loads(out.read_text())
    assert report["kind"] == "tag-mismatch" and report["mode"] == "sync"
    assert report["access"] == "WRITE" and report["size"] == 1
    assert (report["pointer_tag"], report["memory_tag"]) == (5, 3)
    assert report["address"] >> 56 == 5 and report["address"] & 0xF == 0      # the granule right after 48 bytes
    assert report["backtrace"][0]["symbol"].startswith("store_byte+")
    assert report["registers"]["pc"] == report["pc"]
    assert report["tagged_addr_ctrl"] == 0x7FFF3
    row = next(r for r in report["memory_tags"] if r["current"])
    assert 3 in row["tags"] and 5 in row["tags"]


def test_report_json_needs_an_existing_directory(guest, tmp_path) -> None:
    r = run_mteemu(["run", "--report-json", str(tmp_path / "no" / "such" / "r.json"), str(guest("mte/fatal"))])
    assert r.returncode == 2
    assert r.stderr.decode().count("\n") == 1 and "directory does not exist" in r.stderr.decode()
