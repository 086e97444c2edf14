"""The docs' generated parts: each is the text between `<!-- generated: NAME -->` and
`<!-- end generated -->` in a page, rendered from the code. `python -m mteemu.report.docs
--write` (scripts/gen-docs) rewrites them; `stale()` is what a test checks."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
_SECTION = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def _syscalls() -> str:
    from mteemu.report import syscalls

    return syscalls.markdown(syscalls.rows())


GENERATORS: dict[str, Callable[[], str]] = {"syscalls": _syscalls}
PAGES = ("docs/known-differences.md",)


def render(text: str) -> str:
    return _SECTION.sub(lambda m: m.group(1) + GENERATORS[m.group("name")]() + m.group(4), text)


def stale(root: Path = ROOT) -> list[str]:
    """The pages whose generated parts differ from what the code renders now."""
    return [page for page in PAGES if render((root / page).read_text()) != (root / page).read_text()]


def main(argv: list[str]) -> int:
    if argv != ["--write"]:
        sys.stderr.write("usage: python -m mteemu.report.docs --write\n")
        return 2
    for page in PAGES:
        path = ROOT / page
        path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
