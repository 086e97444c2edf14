"""Extended attributes and copy_file_range, as `ls -l`, `cp -a`, `sed -i` and `diff` use
them: the host file's own attributes, and copies between regular files, compared with
qemu-aarch64 (which passes the calls to the host kernel)."""
from __future__ import annotations

import subprocess

import pytest
from conftest import compile_guest, run_mteemu

pytestmark = pytest.mark.slow                 # runs guest programs

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>
static void show(const char *what, long r) {
    printf("%s: %ld %s\n", what, r, r < 0 ? strerror(errno) : "");
}
int main(void) {
    int a = open("a", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(a, "0123456789abcdef", 16);
    int b = open("b", O_RDWR | O_CREAT | O_TRUNC, 0644);
    loff_t in = 4, out = 2;
    show("copy_file_range 8 from 4 to 2", copy_file_range(a, &in, b, &out, 8, 0));
    printf("offsets now %lld %lld\n", (long long)in, (long long)out);
    lseek(a, 10, SEEK_SET);
    show("copy_file_range from the file position", copy_file_range(a, NULL, b, NULL, 100, 0));
    char buf[64] = {0};
    pread(b, buf, sizeof buf - 1, 0);
    printf("b holds %zu bytes: %s\n", strlen(buf + 2) + 2, buf + 2);
    show("flags", copy_file_range(a, NULL, b, NULL, 1, 1));
    int d = open(".", O_RDONLY | O_DIRECTORY);
    show("from a directory", copy_file_range(d, NULL, b, NULL, 1, 0));

    show("getxattr of none", getxattr("a", "user.mteemu", buf, sizeof buf));
    show("setxattr", setxattr("a", "user.mteemu", "value", 5, 0));
    show("setxattr XATTR_CREATE again", setxattr("a", "user.mteemu", "value", 5, XATTR_CREATE));
    show("getxattr size", getxattr("a", "user.mteemu", NULL, 0));
    show("getxattr too small", getxattr("a", "user.mteemu", buf, 2));
    memset(buf, 0, sizeof buf);
    show("fgetxattr", fgetxattr(a, "user.mteemu", buf, sizeof buf));
    printf("value: %s\n", buf);
    char list[256];
    ssize_t n = listxattr("a", list, sizeof list);
    for (char *p = list; n > 0 && p < list + n; p += strlen(p) + 1)
        if (!strncmp(p, "user.", 5)) printf("listed %s\n", p);
    memset(buf, 0, sizeof buf);
    show("lgetxattr of the file itself", lgetxattr("a", "user.mteemu", buf, sizeof buf));
    printf("value: %s\n", buf);
    show("llistxattr of the file itself", llistxattr("a", list, sizeof list));
    symlink("a", "link");
    show("lgetxattr of the link", lgetxattr("link", "user.mteemu", buf, sizeof buf));
    show("getxattr through the link", getxattr("link", "user.mteemu", buf, sizeof buf));
    show("removexattr", removexattr("a", "user.mteemu"));
    show("removexattr again", removexattr("a", "user.mteemu"));
    show("empty name", getxattr("a", "", buf, sizeof buf));
    return 0;
}
"""


def test_xattrs_and_copy_file_range_answer_as_linux(tmp_path) -> None:
    prog = compile_guest(tmp_path, "xattr", SOURCE)
    runs = {}
    for name, cmd in (("mteemu", None), ("qemu", ["qemu-aarch64", prog])):
        work = tmp_path / name
        work.mkdir()
        if cmd is None:
            r = run_mteemu(["run", prog], cwd=work)
        else:
            r = subprocess.run(cmd, capture_output=True, cwd=work, timeout=60)
        assert r.returncode == 0, r.stderr
        runs[name] = r.stdout.decode()
    assert runs["mteemu"] == runs["qemu"]
    out = runs["mteemu"].splitlines()
    assert out[:4] == ["copy_file_range 8 from 4 to 2: 8 ", "offsets now 12 10",
                       "copy_file_range from the file position: 6 ", "b holds 10 bytes: cdef89ab"]
    assert "listed user.mteemu" in out and "value: value" in out
