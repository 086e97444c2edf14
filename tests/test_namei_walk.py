"""namei.walk, which enforces --root, on random paths through a tree full of symlinks that
point up, out and around (hypothesis): whatever the path, what the walk holds is inside the
root, and it fails only with an errno."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mteemu.kernel.fs import namei
from mteemu.kernel.uaccess import SyscallError

LINKS = {"up": "..", "abs": "/", "out": "../../..", "etc": "/etc", "self": "self", "a_b": "a/b",
         "deep": "a/b/../../up/a", "outside": "../outside"}
COMPONENTS = st.sampled_from(["a", "b", "f", "..", ".", "", *LINKS, "missing", "outside"])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("walk")
    (top / "outside").write_text("secret")
    root = top / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "f").write_text("in")
    for d in (root, root / "a", root / "a" / "b"):
        for name, target in LINKS.items():
            (d / name).symlink_to(target)
    return root


def _held_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comps=st.lists(COMPONENTS, min_size=1, max_size=8), absolute=st.booleans(), follow=st.booleans())
def test_the_walk_never_leaves_the_root(tree: Path, comps: list[str], absolute: bool, follow: bool) -> None:
    root = namei.HostDir(str(tree))
    path = ("/" if absolute else "") + "/".join(comps)
    try:
        try:
            found = namei.walk(root, "/a", path, follow, {})
        except SyscallError:
            return                                   # ENOENT, ELOOP, ENOTDIR...: refused, fine
        with found:
            assert isinstance(found, namei.HostEntry)
            held = _held_path(found.dirfd)
            assert held == str(tree) or held.startswith(str(tree) + "/"), (path, held)
            if found.exists and found.name not in (".", ".."):
                # the entry names something in the held directory, never a way out
                assert "/" not in found.name
    finally:
        root.close()


def test_symlinks_resolve_against_the_guest_root(tree: Path) -> None:
    root = namei.HostDir(str(tree))
    try:
        with namei.walk(root, "/", "/a/b/out/f", True, {}) as r:      # ../../.. from /a/b stops at /
            assert isinstance(r, namei.HostEntry) and r.exists and r.gpath == "/f"
        with namei.walk(root, "/", "/abs/a/etc", False, {}) as r:     # a link itself when not followed
            assert isinstance(r, namei.HostEntry) and r.st is not None and os.path.islink(tree / "a" / "etc")
        with pytest.raises(SyscallError):
            namei.walk(root, "/", "/etc/passwd", True, {})              # the host's /etc is not under the root
        with pytest.raises(SyscallError):
            namei.walk(root, "/", "/a/self/x", True, {})                # a loop: ELOOP
    finally:
        root.close()
