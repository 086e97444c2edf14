"""The Python "Linux": a Kernel composed of services (tasks.py, sched.py, delivery.py,
exits.py, traps.py, programs.py) over its data model (process.py, signals.py, uaccess.py,
loader.py...), seen by its parts through api.py's Protocols; file systems in fs/, system
calls in syscalls/, the memory manager of the tag-storage RFC in mm/."""
