"""--root DIR: a guest cannot reach a host file outside DIR — not by `..`, absolute paths,
symlinks it finds or makes, /proc/self/root, or directory descriptors — while ordinary
file work inside DIR behaves as on Linux."""
from __future__ import annotations

import pytest
from conftest import compile_guest, run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow

GUEST = r"""#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void try_read(const char *what, int dirfd, const char *path) {
    char buf[64] = {0};
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0) { printf("%s: %s\n", what, strerrorname_np(errno)); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    printf("%s: read \"%.*s\"\n", what, (int)(n > 0 ? n : 0), buf);
}

int main(int argc, char **argv) {
    const char *outside = argv[1];                     /* a host directory outside the root */
    char path[512], cwd[256], link[256] = {0};
    try_read("inside file", AT_FDCWD, "/inside.txt");
    snprintf(path, sizeof path, "%s/secret.txt", outside);
    try_read("absolute host path", AT_FDCWD, path);
    snprintf(path, sizeof path, "../../../../../../..%s/secret.txt", outside);
    try_read("dot-dot", AT_FDCWD, path);
    try_read("existing symlink out", AT_FDCWD, "escape/secret.txt");
    symlink(outside, "mylink");
    try_read("guest-made symlink", AT_FDCWD, "mylink/secret.txt");
    symlink("../../../../../../..", "up");
    snprintf(path, sizeof path, "up%s/secret.txt", outside);
    try_read("guest-made relative symlink", AT_FDCWD, path);
    snprintf(path, sizeof path, "/proc/self/root%s/secret.txt", outside);
    try_read("/proc/self/root", AT_FDCWD, path);
    readlink("/proc/self/root", link, sizeof link - 1);
    printf("readlink /proc/self/root: %s\n", link);
    mkdir("sub", 0755);
    int dfd = open("sub", O_RDONLY | O_DIRECTORY);
    snprintf(path, sizeof path, "../../../../..%s/secret.txt", outside);
    try_read("dirfd + dot-dot", dfd, path);
    for (int i = 0; i < 5; i++) chdir("..");
    getcwd(cwd, sizeof cwd);
    printf("cwd after chdir(..) x5: %s\n", cwd);
    snprintf(path, sizeof path, "%s/planted.txt", outside);
    symlink(path, "plant");
    int fd = open("plant", O_WRONLY | O_CREAT, 0644);  /* follows the link, inside the root: no such dir */
    printf("create through a symlink to the host path: %s\n", fd < 0 ? strerrorname_np(errno) : "created");
    symlink("/planted2.txt", "plant2");
    fd = open("plant2", O_WRONLY | O_CREAT, 0644);      /* "/" is the root */
    write(fd, "x", 1);
    close(fd);
    printf("create through a symlink to /planted2.txt: %d\n", access("/planted2.txt", F_OK) == 0);
    printf("O_NOFOLLOW on a symlink: %s\n", open("plant", O_RDONLY | O_NOFOLLOW) < 0 ? strerrorname_np(errno) : "opened");
    rename("sub", "sub2");
    unlink("mylink");
    printf("rename and unlink inside: %d %d\n", access("sub2", F_OK) == 0, access("mylink", F_OK) != 0);
    return 0;
}
"""


def test_no_escape_from_root(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET")
    (root / "inside.txt").write_text("inside")
    (root / "escape").symlink_to(outside)
    prog = compile_guest(tmp_path, "escape", GUEST)
    r = run_mteemu(["run", "--root", str(root), prog, str(outside)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "SECRET" not in out
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["inside file"] == 'read "inside"'
    for attempt in ("absolute host path", "dot-dot", "existing symlink out", "guest-made symlink",
                    "guest-made relative symlink", "/proc/self/root", "dirfd + dot-dot"):
        assert lines[attempt] == "ENOENT", attempt
    assert lines["readlink /proc/self/root"] == "/"
    assert lines["cwd after chdir(..) x5"] == "/"
    assert lines["create through a symlink to the host path"] == "ENOENT"
    assert not (outside / "planted.txt").exists()
    assert lines["create through a symlink to /planted2.txt"] == "1" and (root / "planted2.txt").exists()
    assert lines["O_NOFOLLOW on a symlink"] == "ELOOP"
    assert lines["rename and unlink inside"] == "1 1"
    assert (outside / "secret.txt").read_text() == "SECRET"


def test_root_must_be_a_directory(tmp_path, guest) -> None:
    r = run_mteemu(["run", "--root", str(tmp_path / "nope"), str(guest("hello"))])
    assert r.returncode == 2 and b"not a directory" in r.stderr
