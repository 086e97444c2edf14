from __future__ import annotations

import sys

from mteemu.cli import main

sys.exit(main())
