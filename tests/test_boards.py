"""Boards from device trees: every file in dts/ gets the verdict its header states (as DTS
and, compiled by dtc, as DTB), each rule fires on a layout made for it, the memory map is
drawn, and `run --dtb` puts the tags where the board says."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT, run_mteemu

from mteemu.board import binding, dt, info, rules
from mteemu.board.build import board_from_layout
from mteemu.board.model import default_board
from mteemu.errors import BoardError

DTS = sorted((ROOT / "dts").glob("*.dts"))


def _header(path: Path) -> dict:
    text = path.read_text()
    expect = re.search(r"^//\s*expect:(.*)$", text, re.M)
    bind = re.search(r"^//\s*binding:\s*(\S+)", text, re.M)
    return {"unreadable": "// expect-unreadable" in text,
            "errors": set(expect.group(1).split()) if expect else set(),
            "binding": bind.group(1) if bind else None}


def _dtc(src: Path, out: Path) -> Path:
    if shutil.which("dtc") is None:
        pytest.fail("dtc is missing: run the README's test command to install device-tree-compiler")
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(out), str(src)], check=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", DTS, ids=[p.name for p in DTS])
def test_dts_verdict(path: Path, tmp_path) -> None:
    want = _header(path)
    r = run_mteemu(["validate-dtb", "--format", "json", str(path)])
    if want["unreadable"]:
        assert r.returncode == 2
        assert json.loads(r.stdout)[0]["error"].startswith(str(path))
        text = run_mteemu(["validate-dtb", str(path)])
        assert text.returncode == 2 and text.stderr.decode().count("\n") == 1
        return
    result = json.loads(r.stdout)[0]
    assert result["binding"] == want["binding"]
    assert {f["rule"] for f in result["findings"] if f["severity"] == "error"} == want["errors"]
    assert r.returncode == (1 if want["errors"] else 0)
    # The same file compiled by dtc gives the very same findings.
    dtb = _dtc(path, tmp_path / "board.dtb")
    r2 = run_mteemu(["validate-dtb", "--format", "json", str(dtb)])
    assert json.loads(r2.stdout)[0]["findings"] == result["findings"]
    assert r2.returncode == r.returncode
    # And mteemu's own DTS reader (no dtc) reads every board here the same way.
    r3 = run_mteemu(["validate-dtb", "--format", "json", str(path)], env={"MTEEMU_NO_DTC": "1"})
    assert json.loads(r3.stdout)[0]["findings"] == result["findings"] and r3.returncode == r.returncode


@pytest.mark.slow
def test_seed_layout_explains_the_arm_rules() -> None:
    r = run_mteemu(["validate-dtb", "--rules", "kernel", str(ROOT / "dts" / "fvp-v1-seed.dts")])
    assert r.returncode == 0 and b"valid (0 error(s)" in r.stdout
    r = run_mteemu(["validate-dtb", "--rules", "arm", str(ROOT / "dts" / "fvp-v1-seed.dts")])
    assert r.returncode == 1
    out = r.stdout.decode()
    assert "2GB-4GB, 34GB-64GB" in out and "cannot straddle" in out
    assert "lies above tag storage starting at 0xfc000000" in out


@pytest.mark.slow
def test_default_dts_is_the_built_in_board() -> None:
    bf = info.read(str(ROOT / "dts" / "default.dts"))
    b, d = bf.board(), default_board()
    assert [(r.base, r.size) for r in b.memory] == [(r.base, r.size) for r in d.memory]
    assert [(t.base, t.size, t.tagged.base, t.tagged.size) for t in b.tag_regions] == \
        [(t.base, t.size, t.tagged.base, t.tagged.size) for t in d.tag_regions]


# -- each rule on a layout made for it ----------------------------------------------------------
def _layout(body: str, cells: str = "#address-cells = <2>; #size-cells = <2>;") -> binding.Layout:
    return binding.scan(dt.parse_dts(f"/dts-v1/;\n/ {{\n{cells}\n{body}\n}};\n", "test.dts"))


def _errors(layout: binding.Layout) -> set[str]:
    return {f.rule for f in rules.validate(layout) if f.severity == "error"}


MEM0 = 'memory0: memory@80000000 { device_type = "memory"; reg = <0x0 0x80000000 0x0 0x80000000>; };'
MEM1 = 'memory1: memory@880000000 { device_type = "memory"; reg = <0x8 0x80000000 0x0 0x78000000>; };'


def _v2(reg: str, extra: str = 'block-size = <0x1000>; memory = <&memory0>;', name: str = "tag-storage@0") -> str:
    return f'{name} {{ compatible = "arm,mte-tag-storage"; reg = <{reg}>; {extra} }};'


def test_rule_max_regions() -> None:
    nodes = "\n".join(_v2(f"0x8 0x{0xf8000000 + i * 0x200000:x} 0x0 0x200000", f"block-size = <0x1000>; memory = <&m{i}>;",
                          f"tag-storage@{i}") + f'm{i}: memory@{i} {{ device_type = "memory"; reg = <0x0 '
                          f'0x{0x80000000 + i * 0x2000000:x} 0x0 0x2000000>; }};' for i in range(33))
    assert "kernel.max-regions" in _errors(_layout(nodes))


def test_rule_reg() -> None:
    assert _errors(_layout(MEM0 + MEM1 + _v2("0x8 0xf8000000 0x0 0x0"))) >= {"kernel.reg"}
    two = _v2("0x8 0xf8000000 0x0 0x2000000 0x8 0xfa000000 0x0 0x2000000")
    assert "kernel.reg" in _errors(_layout(MEM0 + MEM1 + two))
    bad_cells = 'memory@0 { device_type = "memory"; reg = <0x0 0x80000000 0x0>; };'
    assert "kernel.reg" in _errors(_layout(bad_cells))


def test_rule_tagged_memory_not_a_memory_node() -> None:
    body = MEM0 + MEM1 + 'other: other { }; ' + _v2("0x8 0xf8000000 0x0 0x4000000", "block-size = <0x1000>; memory = <&other>;")
    assert _errors(_layout(body)) == {"kernel.tagged-memory"}
    missing = MEM0 + MEM1 + _v2("0x8 0xf8000000 0x0 0x4000000", "block-size = <0x1000>;")
    assert _errors(_layout(missing)) == {"kernel.tagged-memory"}


def test_rule_zone_span() -> None:
    # v1/v2: a 12 KiB block crossing the 4 GiB zone boundary is an error...
    mem = 'm: memory@100000000 { device_type = "memory"; reg = <0x1 0x00000000 0x0 0x40000000>; };'
    cross = _v2("0x0 0xffe00000 0x0 0x2000000", "block-size = <0x3000>; memory = <&m>;", "tag-storage@ffe00000")
    found = [f for f in rules.validate(_layout(mem + cross)) if f.rule == "kernel.zone-span"]
    assert found and found[0].severity == "error"
    # ...v3 splits a region there (a note) when the boundary is block aligned.
    v3 = ('reserved-memory { #address-cells = <2>; #size-cells = <2>; ranges; '
          'tag-storage@ffe00000 { compatible = "arm,mte-tag-storage"; reg = <0x0 0xffe00000 0x0 0x400000>; '
          'block-size = <0x1000>; tagged-memory = <&m>; reusable; }; }; '
          'memory@ffe00000 { device_type = "memory"; reg = <0x0 0xffe00000 0x0 0x400000>; };')
    found = [f for f in rules.validate(_layout(mem + v3)) if f.rule == "kernel.zone-span"]
    assert found and found[0].severity == "note"


def test_rule_overlap_and_straddle_outside_windows() -> None:
    body = MEM0 + MEM1 + _v2("0x8 0xf8000000 0x0 0x4000000") + _v2("0x8 0xf9000000 0x0 0x3c00000",
                                                                   "block-size = <0x1000>; memory = <&memory1>;",
                                                                   "tag-storage@1")
    assert "sanity.overlap" in _errors(_layout(body))
    outside = MEM0 + 'x: memory@1f0000000 { device_type = "memory"; reg = <0x1 0xf0000000 0x0 0x4000000>; };' + \
        _v2("0x1 0xf0000000 0x0 0x4000000")
    errs = _errors(_layout(outside))
    assert "arm.straddle" in errs and "sanity.overlap" in errs


@pytest.mark.slow
def test_rule_groups_filter(tmp_path) -> None:
    r = run_mteemu(["validate-dtb", "--format", "json", "--rules", "sanity", str(ROOT / "dts" / "fvp-v1-seed.dts")])
    assert r.returncode == 0 and json.loads(r.stdout)[0]["findings"] == []
    bad = run_mteemu(["validate-dtb", "--rules", "kernel,bogus", str(ROOT / "dts" / "fvp-v2.dts")])
    assert bad.returncode == 2 and b"bogus" in bad.stderr


def test_block_size_pages_is_the_lcm() -> None:
    assert rules.block_size_pages(0x1000) == 1
    assert rules.block_size_pages(0x2000) == 2
    assert rules.block_size_pages(0x3000) == 3
    assert rules.block_size_pages(0x800) == 1      # a block smaller than a page: one page


# -- the picture ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_dtb_info_draws_every_region(tmp_path) -> None:
    out = tmp_path / "map.svg"
    r = run_mteemu(["dtb-info", "--svg", str(out), str(ROOT / "dts" / "fvp-v3.dts")])
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "tags of /memory@80000000" in text and "window 34GB-64GB" in text
    svg = ET.parse(out).getroot()
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    for name in ("/memory@80000000", "/memory@880000000", "/reserved-memory/tag-storage@8f8000000",
                 "/reserved-memory/tag-storage@8fc000000"):
        assert any(t and t.startswith(name + " ") for t in titles), name
    arrows = [p for p in svg.iter("{http://www.w3.org/2000/svg}path") if p.get("marker-end")]
    assert len(arrows) == 2


@pytest.mark.slow
def test_dtb_info_never_overwrites_its_input(tmp_path) -> None:
    src = tmp_path / "b.dts"
    src.write_text((ROOT / "dts" / "fvp-v2.dts").read_text())
    r = run_mteemu(["dtb-info", "--svg", str(src), str(src)])
    assert r.returncode == 2 and src.read_text() == (ROOT / "dts" / "fvp-v2.dts").read_text()


# -- running on a board ----------------------------------------------------------------------------
@pytest.mark.slow
def test_tags_live_in_the_boards_tag_storage(guest, capfd) -> None:
    from mteemu.kernel.kernel import Kernel
    from mteemu.kernel.run import RunOptions

    board = info.read(str(ROOT / "dts" / "fvp-v2.dts")).board()
    kernel = Kernel(board, RunOptions())
    binary = str(guest("mte/sync_basic"))
    kernel.spawn(binary, [binary.encode()], [])
    # Look at the tag storage after the guest's 4th tag write (its STG of 64 bytes); at
    # exit its pages, and the tag blocks reserved for them, have been given back.
    seen = {}
    set_range = kernel.tags.set_range

    def set_range_then_look(pa: int, length: int, tag: int) -> None:
        set_range(pa, length, tag)
        seen["writes"] = seen.get("writes", 0) + 1
        if seen["writes"] == 4:
            first = pa & ~63
            tr = next(tr for tr in board.tag_regions if tr.tagged.contains(first))
            # The tags of [first, first+80) are 5 nibbles at tag_base + (pa - mem_base) / 32.
            seen["bytes"] = bytes(kernel.physmem.view(tr.base + (first - tr.tagged.base) // 32, 3))
            seen["tags"] = [kernel.tags.get(first + 16 * i) for i in range(5)]
    kernel.tags.set_range = set_range_then_look
    assert kernel.run().status == 0
    assert "after STG: granule 0 tag 3" in capfd.readouterr().out
    # sync_basic tags 64 bytes (4 granules) with tag 3: two bytes 0x33 in the tag storage
    # of the memory its page came from, and the next granule's nibble still 0.
    assert seen["bytes"][:2] == b"\x33\x33" and seen["bytes"][2] & 0xF == 0
    assert seen["tags"] == [3, 3, 3, 3, 0]


@pytest.mark.slow
def test_run_refuses_an_invalid_board_unless_forced(guest) -> None:
    seed = str(ROOT / "dts" / "fvp-v1-seed.dts")
    r = run_mteemu(["run", "--dtb", seed, str(guest("hello"))])
    assert r.returncode == 2
    assert b"arm.straddle" in r.stderr and b"--force" in r.stderr and b"Traceback" not in r.stderr
    r = run_mteemu(["run", "--dtb", seed, "--force", str(guest("hello"))])
    assert r.returncode == 3 and r.stdout.startswith(b"hello")


@pytest.mark.slow
def test_board_builds_tag_regions_from_each_binding() -> None:
    for name in ("fvp-v2.dts", "fvp-v3.dts"):
        b = board_from_layout(binding.scan(dt.load(str(ROOT / "dts" / name))), name)
        assert sorted((t.base, t.size, t.tagged.base) for t in b.tag_regions) == [
            (0x8_F800_0000, 0x400_0000, 0x8000_0000), (0x8_FC00_0000, 0x3C0_0000, 0x8_8000_0000)]


# -- bad input ----------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("content,status,words", [
    (b"", 2, "not a device tree"),
    (b"\xd0\x0d\xfe\xed" + b"\x00" * 10, 2, "malformed DTB"),
    (b"\x7fELF garbage", 2, "not a device tree"),
    (b"\xff\xfe\x00\x01 binary garbage", 2, "neither a DTB"),
    (b"/dts-v1/;\n/ { a = <1 2; };\n", 2, "syntax error"),
    (b"/dts-v1/;\n#include <x.h>\n/ { };\n", 2, "x.h: No such file"),      # cpp's own words
    (b"/dts-v1/;\n/ { memory@0 { device_type = \"memory\"; reg = <1 2 3 4>; }; };\n", 1, "kernel.reg"),
    (b"/dts-v1/;\n/ { #address-cells = <2>; #size-cells = <2>; a: tag-storage@0 { compatible = "
     b"\"arm,mte-tag-storage\"; reg = <0 0 0xffffffff 0xffffffff>; block-size = <1>; memory = <&a>; }; };\n",
     1, "kernel.tagged-memory"),
])
def test_bad_board_files(tmp_path, content: bytes, status: int, words: str) -> None:
    f = tmp_path / "board.dts"
    f.write_bytes(content)
    r = run_mteemu(["validate-dtb", str(f)])
    assert r.returncode == status, (r.stdout, r.stderr)
    assert b"Traceback" not in r.stderr
    out = (r.stderr if status == 2 else r.stdout).decode()
    assert words in out
    if status == 2:
        assert out.count("\n") == 1


@pytest.mark.slow
def test_missing_and_directory(tmp_path) -> None:
    for path in (tmp_path / "nope.dtb", tmp_path):
        r = run_mteemu(["validate-dtb", str(path)])
        assert r.returncode == 2 and r.stderr.decode().count("\n") == 1
    r = run_mteemu(["run", "--dtb", str(tmp_path / "nope.dtb"), "/bin/true"])
    assert r.returncode == 2 and b"no such file" in r.stderr


@pytest.mark.slow
def test_truncated_dtbs_never_crash(tmp_path) -> None:
    whole = _dtc(ROOT / "dts" / "fvp-v3.dts", tmp_path / "v3.dtb").read_bytes()
    for cut in range(0, len(whole), max(1, len(whole) // 97)):
        try:
            rules.validate(binding.scan(dt.parse_dtb(whole[:cut])))
        except BoardError:
            pass


MULTI_BANK = """/dts-v1/;
/ {{
    #address-cells = <2>;
    #size-cells = <2>;
    model = "two banks, no tag-storage nodes (FVP-like)";
    {first}
    {second}
}};
"""
LOW = "memory@80000000 { device_type = \"memory\"; reg = <0x00 0x80000000 0x00 0x4000000>; };"
HIGH = "memory@880000000 { device_type = \"memory\"; reg = <0x08 0x80000000 0x00 0x4000000>; };"


@pytest.mark.slow
@pytest.mark.parametrize("order", ["low-first", "high-first"])
def test_every_bank_has_tags(tmp_path, guest, order: str) -> None:
    """A board with two banks and no tag-storage nodes: each bank gets its carve-out, so a
    tag-checked program passes whichever bank the allocator hands out (it used the
    highest first, where the tags were missing)."""
    board = tmp_path / "two-banks.dts"
    board.write_text(MULTI_BANK.format(first=LOW if order == "low-first" else HIGH,
                                       second=HIGH if order == "low-first" else LOW))
    bf = info.read(str(board))
    tagged = {tr.tagged.base for tr in bf.board().tag_regions}
    assert tagged == {0x8000_0000, 0x8_8000_0000}
    assert "each memory region" in info.describe(bf)
    r = run_mteemu(["run", "--dtb", str(board), str(guest("mte/sync_basic"))], cwd=tmp_path)
    expected = (ROOT / "guest_tests" / "mte" / "sync_basic.expected").read_bytes()
    assert r.returncode == 0 and r.stdout == expected, r.stderr.decode()[-1500:]


def test_tags_written_without_tag_storage_are_a_model_violation() -> None:
    from mteemu.board.model import Board, MemRegion
    from mteemu.errors import ModelViolation
    from mteemu.machine.physmem import PhysMem
    from mteemu.machine.tagstore import TagStore

    board = Board("untagged", memory=(MemRegion(base=0x8000_0000, size=1 << 20),))
    tags = TagStore(board, PhysMem(board))
    assert tags.get(0x8000_0000) == 0                      # reads: tag 0 (nothing stored)
    with pytest.raises(ModelViolation):
        tags.set_range(0x8000_0000, 16, 5)                 # writes: never silently dropped


def _svg(tmp_path, dts: str, name: str = "map.svg"):
    src, out = tmp_path / "b.dts", tmp_path / name
    src.write_text("/dts-v1/;\n/ {\n#address-cells = <2>; #size-cells = <2>;\n" + dts + "\n};\n")
    r = run_mteemu(["dtb-info", "--svg", str(out), str(src)])
    assert r.returncode == 0, r.stderr
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.parse(out).getroot()
    rects = {(t.text or "").split(" ")[0]: rect for rect in root.iter(f"{ns}rect")
             for t in rect.iter(f"{ns}title")}
    return out, root, rects


@pytest.mark.slow
def test_svg_errors_scale_legend_carveout_and_mode(tmp_path) -> None:
    # A v1 region inside the memory it tags: an error, drawn in the error colour (before,
    # the memory took the v3 colour and hid it).
    _, _, rects = _svg(tmp_path, 'd: memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0 0x80000000>; };'
                       'metadata@fc000000 { compatible = "arm,mte-tag-storage"; reg = <0 0xfc000000 0 0x4000000>;'
                       ' block-size = <0x1000>; memory = <&d>; };')
    assert rects["/metadata@fc000000"].get("fill") == "#e15759"
    assert rects["/memory@80000000"].get("fill") == "#4e79a7"
    # Two banks 15 GiB apart outside the windows: each drawn at a readable width, a break
    # between them; no tag storage: the hidden carve-outs are drawn, hatched.
    old = os.umask(0o027)
    try:
        out, root, rects = _svg(tmp_path, 'memory@10000000 { device_type = "memory"; reg = <0 0x10000000 0 0x10000000>; };'
                                'memory@400000000 { device_type = "memory"; reg = <0x4 0 0 0x40000000>; };', "new.svg")
    finally:
        os.umask(old)
    assert float(rects["/memory@10000000"].get("width")) > 100          # linear: under 2 px
    drawn = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if len(r)]     # regions have a title
    assert sum(r.get("fill") == "url(#hatch)" for r in drawn) == 2
    assert out.stat().st_mode & 0o777 == 0o640                            # 0666 & ~umask
    # Arrows bend below the legend, even with many tag regions.
    ns = "{http://www.w3.org/2000/svg}"
    for p in root.iter(f"{ns}path"):
        if p.get("marker-end"):
            ys = [float(v) for v in re.findall(r"[-\d.]+", p.get("d"))[1::2]]
            assert min(ys) >= 74, p.get("d")


@pytest.mark.slow
def test_validator_and_kernel_boot_agree_on_every_board() -> None:
    """board/bootchecks.py is the one home of the boot checks: for every board in dts/ the
    kernel model disables tag storage management exactly when the validator names one of
    those checks, and for the same reason."""
    from mteemu.board import bootchecks
    from mteemu.kernel.kmsg import KernelLog
    from mteemu.kernel.mm.tag_storage import dynamic_regions

    boot_rules = {r for r, _ in (bootchecks.TOO_MANY, bootchecks.UNALIGNED, bootchecks.RATIO, bootchecks.NOT_BLOCKS)}
    line_rule = {line: r for r, line in (bootchecks.TOO_MANY, bootchecks.UNALIGNED, bootchecks.RATIO,
                                         bootchecks.NOT_BLOCKS)}
    compared = 0
    for path in DTS:
        try:
            bf = info.read(str(path))
            board = bf.board()
        except BoardError:
            continue                        # unreadable, or no machine can be built from it
        if not any(t.reusable for t in board.tag_regions):
            continue
        log = KernelLog()
        enabled = bool(dynamic_regions(board, log))
        said = {line_rule[line] for line in log.lines if line in line_rule}
        named = {f.rule for f in bf.findings} & boot_rules
        assert enabled == (not named) and said <= named, (path.name, log.lines, named)
        compared += 1
    assert compared >= 3
