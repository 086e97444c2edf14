"""System calls: `table.py` dispatches them to handlers by family (one module per file of
Linux's: read_write, file, path, stat, attr, xattr, poll, mm, shm, exec, clone, exit, wait, thread,
futex, ids, prctl, sched, rlimit, signal, time, misc); `registry.py` is what a handler
declares, `args.py` how it reads its arguments, `numbers.py` arm64's numbers."""
