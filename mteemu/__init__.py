"""mteemu: an arm64 Linux user-mode emulator with Arm Memory Tagging (MTE)."""
from __future__ import annotations

__version__ = "0.1.0"
