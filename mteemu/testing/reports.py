"""Machine-readable results: JUnit XML (the testsuite/testcase/failure shape CI servers
read) and JSON."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Optional

from mteemu.testing.runner import ERROR, FAIL, Case, Result


def case_properties(cases: "list[Case]", shard: Optional[str]) -> dict[str, dict[str, str]]:
    """Per test, what a CI dashboard groups by: the board, the tag-check setup (the run
    options, e.g. GLIBC_TUNABLES or --mte-tcf-preferred), the seed, the shard."""
    out = {}
    for c in cases:
        spec = c.spec
        props = {"board": spec.board.name if spec and spec.board else "default",
                 "options": " ".join(spec.options) if spec and spec.options else "",
                 "seed": "0"}                   # every guest test runs with --seed 0
        if shard:
            props["shard"] = shard
        out[c.name] = props
    return out


def junit_xml(results: list[Result], suite: str = "mteemu",
              properties: Optional[dict[str, dict[str, str]]] = None) -> str:
    ts = ET.Element("testsuite", name=suite, tests=str(len(results)),
                    failures=str(sum(r.status == FAIL for r in results)),
                    errors=str(sum(r.status == ERROR for r in results)), skipped="0",
                    time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        classname, _, name = r.name.rpartition("/")
        tc = ET.SubElement(ts, "testcase", classname=(suite + "." + classname.replace("/", ".")).rstrip("."),
                           name=name, time=f"{r.seconds:.3f}")
        if properties and r.name in properties:
            props = ET.SubElement(tc, "properties")
            for key, value in properties[r.name].items():
                ET.SubElement(props, "property", name=key, value=value)
        if r.status in (FAIL, ERROR):
            el = ET.SubElement(tc, "failure" if r.status == FAIL else "error", message=r.message)
            el.text = r.details
        if r.oracle:
            name = "qemu-aarch64" if r.oracle_name == "qemu" else r.oracle_name
            ET.SubElement(tc, "system-out").text = f"oracle {name}: {r.oracle}"
    ET.indent(ts)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(ts, encoding="unicode") + "\n"


def as_json(results: list[Result]) -> str:
    return json.dumps([{"name": r.name, "status": r.status, "seconds": round(r.seconds, 3), "message": r.message,
                        "details": r.details, "oracle": r.oracle, "oracle_name": r.oracle_name if r.oracle else None}
                       for r in results], indent=2) + "\n"
