"""Boards from the real world (issue 17): DTS read through dtc (and cpp), so every
construct dtc accepts works; the fallback reader refuses, in one line naming it, what it
cannot read right; DTB properties decoded by name; memory as Linux reads it (placeholders,
disabled nodes, linux,usable-memory, none at all); the rules Linux applies to reserved
memory and disabled nodes; the DTS and the DTB of a board always get the same verdict."""
from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import pytest
from conftest import run_mteemu

from mteemu.board import binding, dt, info, rules
from mteemu.errors import BoardError

NO_DTC = {"MTEEMU_NO_DTC": "1"}

# A v3 board in the .dtsi + .dts pattern: the tag storage comes in a second root block.
BASE_DTSI = """/ {
    #address-cells = <2>;
    #size-cells = <2>;
    mem0: memory@80000000 { device_type = "memory"; reg = <0x0 0x80000000 0x0 0x7c000000>; };
    reserved-memory { #address-cells = <2>; #size-cells = <2>; ranges; };
};
"""
BOARD_TAIL = """
/ {
    tagmem: memory@fc000000 { device_type = "memory"; reg = <0x0 0xfc000000 0x0 0x3e00000>; };
};
&{/reserved-memory} {
    tags@fc000000 {
        compatible = "arm,mte-tag-storage";
        reg = <0x0 0xfc000000 0x0 0x3e00000>;
        block-size = <0x1000>;
        tagged-memory = <&mem0>;
        reusable;
    };
};
"""


def _validate(path: Path, *extra: str, env: dict | None = None) -> tuple[int, list]:
    r = run_mteemu(["validate-dtb", "--format", "json", *extra, str(path)], env=env)
    return r.returncode, json.loads(r.stdout)


def _findings(result: dict) -> set[tuple[str, str]]:
    return {(f["rule"], f["severity"]) for f in result["findings"]}


@pytest.mark.slow
def test_dtsi_and_dts_are_merged_by_dtc_and_refused_by_the_fallback(tmp_path: Path) -> None:
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "base.dtsi").write_text(BASE_DTSI)
    board = tmp_path / "board.dts"
    board.write_text('/dts-v1/;\n/include/ "base.dtsi"\n' + BOARD_TAIL)
    status, [result] = _validate(board, "-i", str(tmp_path / "inc"))
    # The tag node of the second block is seen: a v3 board, valid (1/32 of the memory it tags).
    assert (status, result["binding"], result["findings"]) == (0, "v3", []), result
    # The same with the C preprocessor's #include and a macro.
    board.write_text('/dts-v1/;\n#include "base.dtsi"\n#define TAG_BASE 0xfc000000\n'
                     + BOARD_TAIL.replace("0xfc000000 0x0", "TAG_BASE 0x0"))
    status2, [result2] = _validate(board, "-i", str(tmp_path / "inc"))
    assert (status2, result2["binding"], result2["findings"]) == (0, "v3", [])
    # A rule still sees through the merge: tags of the memory that holds them.
    board.write_text(board.read_text().replace("tagged-memory = <&mem0>;", "tagged-memory = <&tagmem>;"))
    status, [result] = _validate(board, "-i", str(tmp_path / "inc"))
    assert status == 1 and ("sanity.self-tagging", "error") in _findings(result), result
    # Without dtc: one line naming what it cannot do.
    board.write_text("/dts-v1/;\n" + BASE_DTSI + BOARD_TAIL)
    r = run_mteemu(["validate-dtb", str(board)], env=NO_DTC)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "second root block" in err and "dtc" in err, err


@pytest.mark.slow
@pytest.mark.parametrize("construct,words", [
    ('/dts-v1/;\n/ { a: n { }; };\n&a { x = <1>; };\n', "outside the root node"),
    ('/dts-v1/;\n/ { x = /bits/ 64 <1>; };\n', "/bits/"),
    ('/dts-v1/;\n/ { x = <(1 + 2)>; };\n', "expressions"),
    ('/dts-v1/;\n/ { x = <&{/n}>; n { }; };\n', "path references"),
    ('/dts-v1/;\n/ { n { }; };\n/delete-node/ &{/n};\n', "/delete-node/"),
    ('/dts-v1/;\n/include/ "x.dtsi"\n/ { };\n', "/include/"),
    ('/dts-v1/;\n#include <x.h>\n/ { };\n', "preprocessor"),
    ('/dts-v1/;\n/ { x = <&a>; a: n { }; m { phandle = <1>; }; };\n', "explicit 'phandle'"),
])
def test_fallback_refuses_what_it_cannot_read(tmp_path: Path, construct: str, words: str) -> None:
    f = tmp_path / "board.dts"
    f.write_text(construct)
    r = run_mteemu(["validate-dtb", str(f)], env=NO_DTC)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and words in err and "Traceback" not in err, err
    if "include" not in construct:                 # dtc reads every one of them
        r = run_mteemu(["validate-dtb", str(f)])
        assert r.returncode in (0, 1), r.stderr


@pytest.mark.slow
def test_labels_beside_explicit_phandles_resolve_right(tmp_path: Path) -> None:
    # What you get by adding a labelled node to a `dtc -O dts` dump: explicit phandle 1 on
    # one memory node, a label reference to another. dtc numbers them apart.
    f = tmp_path / "board.dts"
    f.write_text("""/dts-v1/;
/ {
    #address-cells = <2>; #size-cells = <2>;
    memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0 0x40000000>; phandle = <1>; };
    data: memory@880000000 { device_type = "memory"; reg = <0x8 0x80000000 0 0x40000000>; };
    tag-storage@8f8000000 { compatible = "arm,mte-tag-storage"; reg = <0x8 0xf8000000 0 0x2000000>;
                            block-size = <0x1000>; memory = <&data>; };
    memory@8f8000000 { device_type = "memory"; reg = <0x8 0xf8000000 0 0x2000000>; };
};
""")
    layout = binding.scan(dt.load(str(f)))
    assert layout.tags[0].tagged.path == "/memory@880000000"


@pytest.mark.slow
def test_duplicate_phandles_name_both_nodes(tmp_path: Path) -> None:
    src = tmp_path / "dup.dts"
    src.write_text('/dts-v1/;\n/ { a { phandle = <7>; }; b { phandle = <7>; }; };\n')
    dtb = tmp_path / "dup.dtb"
    subprocess.run(["dtc", "-f", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(src)], check=True)
    with pytest.raises(BoardError, match=r"phandle 0x7 is given to both /a and /b"):
        dt.load(str(dtb))
    r = run_mteemu(["validate-dtb", str(src)], env=NO_DTC)
    assert r.returncode == 2 and b"given to both /a and /b" in r.stderr


@pytest.mark.slow
def test_dtb_properties_are_decoded_by_name(tmp_path: Path) -> None:
    # With one address and one size cell, this reg is eight printable bytes ("AA0\0  0\0"):
    # fdt guesses a string list. It is a memory range all the same.
    src = tmp_path / "b.dts"
    src.write_text('/dts-v1/;\n/ { #address-cells = <1>; #size-cells = <1>;\n'
                   '  memory@41413000 { device_type = "memory"; reg = <0x41413000 0x20203000>; }; };\n')
    dtb = tmp_path / "b.dtb"
    subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(src)], check=True)
    for path in (src, dtb):
        layout = binding.scan(dt.load(str(path)))
        assert [m.ranges for m in layout.memory] == [[(0x41413000, 0x20203000)]], path


def _board(tmp_path: Path, body: str, name: str = "b.dts") -> Path:
    f = tmp_path / name
    f.write_text('/dts-v1/;\n/ {\n#address-cells = <2>; #size-cells = <2>;\n' + body + '\n};\n')
    return f


MEM = 'memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0 0x40000000>; };'


@pytest.mark.slow
def test_memory_as_linux_reads_it(tmp_path: Path) -> None:
    # A placeholder the bootloader fills in, and a disabled node: warnings, not errors.
    f = _board(tmp_path, MEM + 'memory@0 { device_type = "memory"; reg = <0 0 0 0>; };'
               'memory@100000000 { device_type = "memory"; reg = <1 0 0 0x1000000>; status = "disabled"; };')
    status, [result] = _validate(f)
    assert status == 0 and _findings(result) == {("kernel.memory", "warning")}, result
    assert [m.ranges for m in binding.scan(dt.load(str(f))).memory] == [[(0x8000_0000, 0x4000_0000)], []]
    # linux,usable-memory wins over reg.
    f = _board(tmp_path, 'memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0 0x40000000>;'
               ' linux,usable-memory = <0 0x80000000 0 0x20000000>; };')
    assert [m.ranges for m in binding.scan(dt.load(str(f))).memory] == [[(0x8000_0000, 0x2000_0000)]]
    [bank] = info.read(str(f)).board().memory          # less its hidden tag carve-out
    assert bank.base == 0x8000_0000 and 0x9E00_0000 < bank.end <= 0xA000_0000


@pytest.mark.slow
def test_no_usable_memory_is_said_the_same_everywhere(tmp_path: Path, guest) -> None:
    f = _board(tmp_path, 'memory@0 { device_type = "memory"; reg = <0 0 0 0>; };')
    status, [result] = _validate(f)
    assert status == 0 and ("kernel.no-memory", "warning") in _findings(result)
    words = binding.NO_MEMORY
    info_out = run_mteemu(["dtb-info", str(f)]).stdout.decode()
    assert words in info_out and "carve-out" not in info_out, info_out
    r = run_mteemu(["run", "--dtb", str(f), str(guest("hello"))])
    err = r.stderr.decode()
    assert r.returncode == 2 and words in err and err.count("\n") == 1, err


V2_TAGS = ('tag-storage@bf000000 {{ compatible = "arm,mte-tag-storage"; reg = <0 0xbe000000 0 0x2000000>; '
           'block-size = <0x1000>; memory = <&{target}>; {extra} }};')


@pytest.mark.slow
def test_rules_for_disabled_nodes(tmp_path: Path) -> None:
    data = 'data: memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0 0x3e000000>; %s };'
    # Tag storage whose tagged memory is a disabled node.
    f = _board(tmp_path, data % 'status = "disabled";' + V2_TAGS.format(target="data", extra=""))
    status, [result] = _validate(f)
    assert status == 1 and ("kernel.disabled-memory", "error") in _findings(result), result
    msg = next(x["message"] for x in result["findings"] if x["rule"] == "kernel.disabled-memory")
    assert "/memory@80000000" in msg
    # v3 tag storage lying in a memory node that is disabled: Linux does not have that memory.
    f = _board(tmp_path, data % "" + 'tm: memory@be000000 { device_type = "memory"; '
               'reg = <0 0xbe000000 0 0x2000000>; status = "disabled"; };'
               'reserved-memory { #address-cells = <2>; #size-cells = <2>; ranges; '
               'tags@be000000 { compatible = "arm,mte-tag-storage"; reg = <0 0xbe000000 0 0x1f00000>; '
               'block-size = <0x1000>; tagged-memory = <&data>; reusable; }; };')
    status, [result] = _validate(f)
    msgs = [x["message"] for x in result["findings"] if x["rule"] == "kernel.disabled-memory"]
    assert status == 1 and len(msgs) == 1 and "lies in" in msgs[0] and "/memory@be000000" in msgs[0], result
    # Tag storage itself disabled: ignored, as Linux ignores it (a note; the board has none).
    f = _board(tmp_path, data % "" + V2_TAGS.format(target="data", extra='status = "disabled";'))
    status, [result] = _validate(f)
    assert status == 0 and result["binding"] == "none", result
    assert ("kernel.disabled-tag-storage", "note") in _findings(result)


@pytest.mark.slow
def test_rules_for_firmware_memory(tmp_path: Path) -> None:
    data = 'data: memory@80000000 { device_type = "memory"; reg = <0 0x80000000 0 0x3e000000>; };'
    tags = V2_TAGS.format(target="data", extra="")
    nomap = ('reserved-memory { #address-cells = <2>; #size-cells = <2>; ranges; '
             'fw@bf000000 { reg = <0 0xbf000000 0 0x100000>; no-map; }; };')
    f = _board(tmp_path, data + tags + nomap)
    status, [result] = _validate(f)
    found = [x for x in result["findings"] if x["rule"] == "kernel.reserved-overlap"]
    assert status == 1 and len(found) == 1 and "/reserved-memory/fw@bf000000" in found[0]["message"], result
    f.write_text(f.read_text().replace("/dts-v1/;", "/dts-v1/;\n/memreserve/ 0xbe100000 0x1000;").replace(nomap, ""))
    status, [result] = _validate(f)
    found = [x for x in result["findings"] if x["rule"] == "kernel.reserved-overlap"]
    assert status == 1 and len(found) == 1 and "/memreserve/ entry 0" in found[0]["message"], result


def _variants(seed: int) -> list[str]:
    """Generated boards: banks, placeholders, disabled nodes, tag storage of each binding."""
    rng = random.Random(seed)
    out = []
    for _ in range(12):
        nodes = []
        banks = rng.randint(0, 3)
        for b in range(banks):
            base = 0x8000_0000 + b * 0x8000_0000
            cells = f"{base >> 32:#x} {base & 0xFFFF_FFFF:#x}"
            extra = rng.choice(["", "", 'status = "disabled";', f"linux,usable-memory = <{cells} 0 0x1000000>;"])
            size = rng.choice([0, 0x2000_0000, 0x4000_0000])
            nodes.append(f'm{b}: memory@{base:x} {{ device_type = "memory"; reg = <{cells} 0 {size:#x}>; {extra} }};')
        if banks and rng.random() < 0.7:
            t = rng.randrange(banks)
            tbase = 0x8000_0000 + t * 0x8000_0000 + 0x3e00_0000
            nodes.append(V2_TAGS.format(target=f"m{t}", extra="")
                         .replace("0 0xbe000000", f"{tbase >> 32:#x} {tbase & 0xFFFF_FFFF:#x}")
                         .replace("tag-storage@bf000000", f"tag-storage@{tbase:x}"))
        out.append("/dts-v1/;\n/ {\n#address-cells = <2>; #size-cells = <2>;\n" + "\n".join(nodes) + "\n};\n")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_dts_and_dtb_get_the_same_verdict(tmp_path: Path, seed: int) -> None:
    for i, text in enumerate(_variants(seed)):
        src = tmp_path / f"v{i}.dts"
        src.write_text(text)
        dtb = tmp_path / f"v{i}.dtb"
        subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(src)], check=True)
        verdicts = []
        for path, env in ((src, None), (dtb, None), (src, NO_DTC)):
            if env:
                os.environ.update(env)
            try:
                layout = binding.scan(dt.load(str(path)))
            finally:
                os.environ.pop("MTEEMU_NO_DTC", None)
            verdicts.append(sorted((f.rule, f.severity, f.node) for f in rules.validate(layout)))
        assert verdicts[0] == verdicts[1] == verdicts[2], text


@pytest.mark.slow
def test_each_dtb_has_only_its_own_memreserve_entries(tmp_path: Path) -> None:
    """The fdt library keeps /memreserve/ entries in a list shared by every tree it parses
    (a mutable default argument): a process reading many DTBs (a pytest worker, a board
    corpus) saw each one reserve the memory of all those read before."""
    blobs = []
    for i, addr in enumerate((0xbe10_0000, 0xbe20_0000)):
        src = tmp_path / f"r{i}.dts"
        src.write_text(f"/dts-v1/;\n/memreserve/ {addr:#x} 0x1000;\n/ {{ #address-cells = <2>; #size-cells = <2>; }};\n")
        dtb = tmp_path / f"r{i}.dtb"
        subprocess.run(["dtc", "-q", "-I", "dts", "-O", "dtb", "-o", str(dtb), str(src)], check=True)
        blobs.append(dtb)
    for _ in range(2):
        assert [dt.load(str(b)).memreserve for b in blobs] == [[(0xbe10_0000, 0x1000)], [(0xbe20_0000, 0x1000)]]
