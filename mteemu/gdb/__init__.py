"""A GDB remote-protocol server for `mteemu run -g`: the wire (rsp.py), the target
description (tdesc.py) and the debugging session (session.py)."""
