"""execve under --root: the new program is found inside the root and becomes the process's
program (/proc/self/exe, its name), what is not an arm64 program (or a dynamic one whose
loader is nowhere) is ENOEXEC with the caller going on, and `#!` interpreters loop at most
four levels deep (ELOOP)."""
from __future__ import annotations

import shutil
import subprocess

import build_guests
import pytest
from conftest import run_mteemu

# Every test here runs a program.
pytestmark = pytest.mark.slow

CALLER = r"""#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void try_exec(const char *path) {
    char *args[] = {(char *)path, "arg", NULL};
    execv(path, args);
    printf("%s: %s\n", path, strerrorname_np(errno));
    fflush(stdout);
}
int main(void) {
    try_exec("/bin/host-true");     /* an x86-64 ELF */
    try_exec("/bin/dynamic");       /* an arm64 program that needs ld-linux */
    try_exec("/loop1.sh");          /* #! -> /loop2.sh -> /loop1.sh ... */
    try_exec("/etc/passwd");        /* not in the root */
    try_exec("/bin/callee");        /* this one runs */
    return 1;
}
"""

CALLEE = r"""#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char exe[256] = {0};
    readlink("/proc/self/exe", exe, sizeof exe - 1);
    char comm[32] = {0};
    FILE *f = fopen("/proc/self/comm", "r");
    fgets(comm, sizeof comm, f);
    printf("callee: argv %s %s, exe %s, comm %s", argv[0], argc > 1 ? argv[1] : "-", exe, comm);
    return 3;
}
"""


def _build(tmp_path, name: str, source: str, static: bool = True) -> str:
    src, out = tmp_path / f"{name}.c", tmp_path / name
    src.write_text(source)
    subprocess.run([build_guests.CC, *(["-static"] if static else []), "-O1", str(src), "-o", str(out)], check=True)
    return str(out)


def test_exec_under_root(tmp_path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    caller = _build(tmp_path, "caller", CALLER)
    shutil.copy(_build(tmp_path, "callee", CALLEE), root / "bin" / "callee")
    shutil.copy(_build(tmp_path, "dynamic", CALLEE, static=False), root / "bin" / "dynamic")
    shutil.copy(shutil.which("true"), root / "bin" / "host-true")
    (root / "loop1.sh").write_text("#!/loop2.sh\n")
    (root / "loop2.sh").write_text("#!/loop1.sh\n")
    for script in ("loop1.sh", "loop2.sh"):
        (root / script).chmod(0o755)
    empty = tmp_path / "no-sysroot"               # so that /bin/dynamic has no program interpreter
    empty.mkdir()
    r = run_mteemu(["run", "-L", str(empty), "--root", str(root), caller], cwd=root)
    assert r.returncode == 3, r.stderr
    assert r.stdout.decode().splitlines() == [
        "/bin/host-true: ENOEXEC", "/bin/dynamic: ENOEXEC", "/loop1.sh: ELOOP", "/etc/passwd: ENOENT",
        "callee: argv /bin/callee arg, exe /bin/callee, comm callee"]
    assert b"dynamically linked" in r.stderr and b"interpreter" in r.stderr and r.stderr.count(b"\n") == 1
