"""The kernel log (dmesg): the lines the modelled kernel prints, with the time since boot."""
from __future__ import annotations

import time


class KernelLog:
    def __init__(self) -> None:
        self._boot = time.monotonic()
        self.lines: list[str] = []

    def log(self, text: str) -> None:
        self.lines.append(f"[{time.monotonic() - self._boot:12.6f}] {text}")

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)
