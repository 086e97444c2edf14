"""What the Linux oracle runs on, fetched by Debian package name and cached, never
installed: a private apt (its own sources list, package lists and download cache under
the cache directory) downloads the packages and `dpkg-deb -x` unpacks them.

* QEMU: `qemu-system-aarch64` from the host when it is 8.0 or later, else Debian
  bookworm-backports' `qemu-system-arm` (with the libraries it needs that the host lacks).
  QEMU 7.2, Debian bookworm's own, drops a tag's offset in its page (even and odd granules
  share tags; fixed upstream by "target/arm: Fix physical address resolution for MTE"), so
  it is never used. `--qemu PATH` names another.
* The kernel: Debian's arm64 cloud kernel (`linux-image-cloud-arm64`, 6.1, CONFIG_ARM64_MTE=y)
  and the virtio modules it keeps out of its image.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mteemu.errors import InputError

SOURCES = """\
deb [arch=amd64,arm64 signed-by={keyring}] {mirror} bookworm main
deb [arch=amd64,arm64 signed-by={keyring}] {mirror} bookworm-backports main
deb [arch=amd64,arm64 signed-by={keyring}] {security} bookworm-security main
"""
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
KERNEL_META = "linux-image-cloud-arm64"
# The kernel keeps virtio out of its image (CONFIG_VIRTIO*=m): loaded by init (which finds
# their order: the package has no modules.dep).
MODULES = ("drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio.ko", "drivers/virtio/virtio_mmio.ko",
           "drivers/block/virtio_blk.ko")
MIN_QEMU = (8, 0)


class OracleError(InputError):
    """The oracle cannot run: what it needs cannot be fetched or found."""


@dataclass(frozen=True)
class Machine:
    qemu: Path
    qemu_env: dict[str, str]        # LD_LIBRARY_PATH for a fetched QEMU
    kernel: Path
    modules: tuple[Path, ...]       # in load order
    kernel_version: str


def cache_dir() -> Path:
    base = os.environ.get("MTEEMU_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mteemu")
    return Path(base) / "oracle"


class PrivateApt:
    """apt-get and apt-cache with their own state under `root`: the host's apt sources,
    lists and caches are read by nothing and written by nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for d in ("lists/partial", "archives/partial", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        mirror = os.environ.get("MTEEMU_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        security = os.environ.get("MTEEMU_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
        (root / "etc" / "sources.list").write_text(SOURCES.format(keyring=KEYRING, mirror=mirror, security=security))
        self.options = [
            "-o", f"Dir::Etc::sourcelist={root}/etc/sources.list", "-o", "Dir::Etc::sourceparts=/nonexistent",
            "-o", f"Dir::State::Lists={root}/lists", "-o", f"Dir::Cache={root}", "-o",
            f"Dir::Cache::archives={root}/archives", "-o", "APT::Architectures::=amd64", "-o",
            "APT::Architectures::=arm64", "-o", "APT::Sandbox::User=root", "-o",
            "Dir::Etc::preferencesparts=/nonexistent",
        ]

    def _run(self, tool: str, *args: str, cwd: Optional[Path] = None) -> str:
        if shutil.which(tool) is None:
            raise OracleError(f"{tool} is not installed: the Linux oracle fetches Debian packages with it")
        r = subprocess.run([tool, *self.options, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            raise OracleError(f"{tool} {' '.join(args)}: {last}")
        return r.stdout

    def update(self) -> None:
        self._run("apt-get", "update", "-qq")

    def field(self, package: str, name: str) -> str:
        """A field of the package's record that apt would choose (Depends, Version...)."""
        m = re.search(rf"^{name}: (.*)$", self._run("apt-cache", "show", "--no-all-versions", package), re.M)
        if m is None:
            raise OracleError(f"apt-cache show {package}: no {name}")
        return m.group(1)

    def download(self, package: str, into: Path) -> Path:
        """The package's .deb in `into` (downloaded unless it is there already)."""
        into.mkdir(parents=True, exist_ok=True)
        self._run("apt-get", "download", "-qq", package, cwd=into)
        name = re.split(r"[:/]", package)[0]
        debs = sorted(into.glob(f"{name}_*.deb"), key=lambda p: p.stat().st_mtime)
        if not debs:
            raise OracleError(f"apt-get download {package}: nothing was downloaded")
        return debs[-1]


def _unpack(deb: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["dpkg-deb", "-x", str(deb), str(into)], capture_output=True, text=True)
    if r.returncode != 0:
        raise OracleError(f"dpkg-deb -x {deb.name}: {r.stderr.strip()[:200]}")


def qemu_version(qemu: Path, env: Optional[dict[str, str]] = None) -> Optional[tuple[int, int]]:
    try:
        r = subprocess.run([str(qemu), "--version"], capture_output=True, text=True, timeout=30,
                           env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+)\.(\d+)", r.stdout)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _missing_libraries(binary: Path, env: dict[str, str]) -> list[str]:
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env={**os.environ, **env})
    return re.findall(r"^\s*(\S+) => not found", r.stdout, re.M)


def _installed(package: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return r.returncode == 0 and "install ok installed" in r.stdout


def _depends(apt: PrivateApt, package: str) -> list[str]:
    """The packages a package depends on (the first of each alternative)."""
    try:
        text = apt.field(package, "Depends")
    except OracleError:
        return []
    return [re.split(r"[\s(:]", alt.split("|")[0].strip())[0] for alt in text.split(",") if alt.strip()]


def _fetch_qemu(apt: PrivateApt, root: Path) -> tuple[Path, dict[str, str]]:
    """bookworm-backports' qemu-system-arm and the shared libraries it needs that the host
    has not installed (its Depends, followed through libraries), unpacked side by side and
    found through LD_LIBRARY_PATH."""
    qroot = root / "qemu"
    binary = qroot / "usr" / "bin" / "qemu-system-aarch64"
    libdirs = [qroot / "usr" / "lib" / "x86_64-linux-gnu", qroot / "lib" / "x86_64-linux-gnu"]
    env = {"LD_LIBRARY_PATH": ":".join(str(d) for d in libdirs)}
    if binary.exists() and not _missing_libraries(binary, env):
        return binary, env
    _unpack(apt.download("qemu-system-arm/bookworm-backports", root / "debs"), qroot)
    seen: set[str] = set()
    todo = _depends(apt, "qemu-system-arm/bookworm-backports")
    while todo:
        name = todo.pop()
        if name in seen or not name.startswith("lib") or _installed(name):
            continue
        seen.add(name)
        _unpack(apt.download(name, root / "debs"), qroot)
        todo += _depends(apt, name)
    missing = _missing_libraries(binary, env)
    if missing:
        raise OracleError(f"QEMU still lacks {', '.join(missing)}")
    return binary, env


def machine(qemu: Optional[str] = None, fetch: bool = True) -> Machine:
    """The QEMU and kernel to run the oracle on, fetched into the cache on first use."""
    root = cache_dir()
    apt = PrivateApt(root / "apt")
    lists_ready = any((root / "apt" / "lists").glob("*Packages*"))

    def ensure_lists() -> None:
        nonlocal lists_ready
        if not lists_ready:
            if not fetch:
                raise OracleError("the oracle's packages are not fetched yet (mteemu oracle --fetch)")
            apt.update()
            lists_ready = True

    qemu_env: dict[str, str] = {}
    if qemu is not None:
        qpath = Path(qemu)
        if not os.access(qpath, os.X_OK):
            raise OracleError(f"{qemu}: not an executable")
    else:
        host = shutil.which("qemu-system-aarch64")
        if host is not None and (qemu_version(Path(host)) or (0, 0)) >= MIN_QEMU:
            qpath = Path(host)
        else:
            if not (root / "qemu" / "usr" / "bin" / "qemu-system-aarch64").exists():
                ensure_lists()
            qpath, qemu_env = _fetch_qemu(apt, root)
    version = qemu_version(qpath, qemu_env)
    if version is None:
        raise OracleError(f"{qpath}: cannot run it (--version)")
    if version < MIN_QEMU:
        raise OracleError(f"{qpath} is QEMU {version[0]}.{version[1]}: its MTE gives even and odd granules "
                          "the same tag before 8.0 (use Debian bookworm-backports' qemu-system-arm)")
    kroot = root / "kernel"
    kernels = sorted(kroot.glob("boot/vmlinuz-*"))
    if not kernels:
        ensure_lists()
        depends = apt.field(f"{KERNEL_META}:arm64", "Depends")        # bookworm's 6.1 (backports: lower priority)
        m = re.match(r"(linux-image-[^\s,(]+)", depends)
        if m is None:
            raise OracleError(f"{KERNEL_META}: cannot tell its kernel package from {depends!r}")
        _unpack(apt.download(f"{m.group(1)}:arm64", root / "debs"), kroot)
        kernels = sorted(kroot.glob("boot/vmlinuz-*"))
        if not kernels:
            raise OracleError(f"{m.group(1)}: no vmlinuz in the package")
    kernel = kernels[-1]
    kver = kernel.name[len("vmlinuz-"):]
    modules = tuple(kroot / "lib" / "modules" / kver / "kernel" / m for m in MODULES)
    absent = [m.name for m in modules if not m.exists()]
    if absent:
        raise OracleError(f"the kernel {kver} lacks {', '.join(absent)}")
    return Machine(qpath, qemu_env, kernel, modules, kver)
