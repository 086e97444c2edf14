"""The guest's file systems (Linux's fs/): the namespace (vfs.py: lookup and open; namei.py:
the walk by held descriptors that enforces --root), open file descriptions and their kinds
(file.py, fdtable.py, hostfile.py, pipe.py, memfd.py, exefile.py), and the generated trees
mounted over the root (pseudofs.py; procfs/, sysfs.py, devfs.py)."""
