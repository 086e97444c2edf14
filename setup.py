"""Only the native hot path needs a setup script: pyproject.toml holds everything else.

The extension is optional: a machine without a C compiler still installs mteemu and runs
the pure-Python reference path (mteemu --version says which one runs)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("mteemu.machine._native", ["mteemu/machine/_native.c"], optional=True,
                             depends=["mteemu/machine/_allochist.c"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=c11"])])
