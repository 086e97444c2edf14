"""The shape of the code, checked from its source: the layers' import rules and no import
cycle inside the kernel (TYPE_CHECKING imports included: a cycle closed only for the type
checker still means no part can be read, built or tested alone)."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "mteemu"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports anywhere (top level, functions, TYPE_CHECKING)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        out.update(n for n in names if n in modules)
    return out


@functools.lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    modules = set(files)
    return {m: _imports(p, modules) - {m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]], nodes: set[str]) -> list[str]:
    """One import cycle among `nodes`, or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n] & nodes):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return []

    for n in sorted(nodes):
        if n not in state and (found := visit(n)):
            return found
    return []


SUBPACKAGES = ("mteemu.kernel.fs", "mteemu.kernel.syscalls", "mteemu.kernel.mm")
# The kernel's services (each an object the Kernel composes); the other modules of
# mteemu/kernel/ are its data model (process, signals, tasks, uaccess, api...).
SERVICES = tuple(f"mteemu.kernel.{m}" for m in ("kernel", "sched", "delivery", "exits", "traps", "programs"))


def _unit(module: str) -> "str | None":
    for p in SUBPACKAGES:
        if module == p or module.startswith(p + "."):
            return p
    return module if module in SERVICES else None


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Subpackages and services, and which reaches which: directly or through the data model."""
    out: dict[str, set[str]] = {}
    for m in graph:
        u = _unit(m)
        if u is None:
            continue
        out.setdefault(u, set())
        seen: set[str] = set()
        todo = list(graph[m])
        while todo:
            d = todo.pop()
            if d in seen or not d.startswith("mteemu.kernel"):
                continue
            seen.add(d)
            if _unit(d) is None:
                todo.extend(graph[d])
            elif _unit(d) != u:
                out[u].add(_unit(d))      # type: ignore[arg-type]
    return out


def test_no_import_cycle_between_the_kernels_parts() -> None:
    units = unit_graph(import_graph())
    assert set(units) == set(SUBPACKAGES) | set(SERVICES)
    assert _cycle(units, set(units)) == []


def test_the_data_model_imports_no_service() -> None:
    for m, deps in import_graph().items():
        if m.startswith("mteemu.kernel") and _unit(m) is None:
            assert not {d for d in deps if _unit(d) in SERVICES or _unit(d) == "mteemu.kernel.syscalls"}, m


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph, set(graph)) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}, {"a", "b"}) == []


def test_layers() -> None:
    graph = import_graph()
    for m, deps in graph.items():
        if m.startswith("mteemu.machine"):       # the machine never knows the kernel above it
            assert not {d for d in deps if d.startswith("mteemu.kernel")}, m
        if m.startswith("mteemu.kernel.mm"):     # the memory manager runs without processes or files
            assert not {d for d in deps if d.startswith(("mteemu.kernel.process", "mteemu.kernel.fs"))}, m
        if m.startswith("mteemu.kernel"):        # the kernel neither renders nor parses the command line
            assert not {d for d in deps if d.startswith(("mteemu.cli", "mteemu.gdb", "mteemu.testing"))}, m
    # The kernel's parts see the kernel through kernel/api.py's protocols, never its class.
    users = sorted(m for m, deps in graph.items() if "mteemu.kernel.kernel" in deps)
    assert users == ["mteemu.cli", "mteemu.testing.forkserver"]


def test_no_private_name_is_imported_from_another_module() -> None:
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mteemu"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                assert not private, f"{path.relative_to(PKG.parent)} imports {private} from {node.module}"


def test_no_class_is_over_300_lines() -> None:
    """A class that big does more than one job (Cpu did five before it was split)."""
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                lines = node.end_lineno - node.lineno + 1      # type: ignore[operator]
                assert lines <= 300, f"{path.relative_to(PKG.parent)}: class {node.name} is {lines} lines"


def test_no_function_is_more_complex_than_c() -> None:
    """radon's cyclomatic complexity, rank C at most (20): more is a function doing several
    things (invariants.violations was F-55, one function per invariant now)."""
    from radon.complexity import cc_visit

    worst = [(block.complexity, f"{path.relative_to(PKG.parent)}:{block.lineno} {block.fullname}")
             for path in PKG.rglob("*.py") for block in cc_visit(path.read_text()) if block.complexity > 20]
    assert not worst, sorted(worst, reverse=True)
