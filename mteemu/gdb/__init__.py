"""A GDB remote-protocol server for `mteemu run -g`: the wire (rsp.py), the target
description (tdesc.py), the debugging session (session.py: the kernel's tracer and its stop
loop) and its packets (registers.py, memory.py, queries.py, points.py, hostio.py), Ctrl-C
(ctrl_c.py), and the listening socket (listen.py)."""
