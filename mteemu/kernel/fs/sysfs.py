"""The guest's /sys: the few kernel objects programs read, generated from the emulated
machine (drivers/base/cpu.c, arch/arm64/kernel/mte.c, mm/hugetlb.c).

What the emulated kernel has, and says so consistently:
* one CPU: `devices/system/cpu/{online,possible,present}` read "0", with `cpu0/`;
* `cpu0/mte_tcf_preferred`, Linux's real knob: reading it shows, writing it (root only)
  changes, the preferred tag-check mode (`--mte-tcf-preferred`);
* hugetlb configured with an empty pool (`kernel/mm/hugepages/hugepages-2048kB/`,
  matching /proc/meminfo and /proc/sys/vm/nr_hugepages);
* transparent huge pages configured off (`never`);
* no KSM (CONFIG_KSM off): `/sys/kernel/mm/ksm` does not exist, and madvise(MADV_MERGEABLE)
  is EINVAL, as on such a kernel.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from mteemu.kernel import mte
from mteemu.kernel.fs import procfs
from mteemu.kernel.fs.pseudofs import Dir, File, Node, static
from mteemu.kernel.uaccess import SyscallError

if TYPE_CHECKING:
    from mteemu.kernel.api import KernelApi


def _cpu_list() -> bytes:
    return b"0\n" if procfs.NR_CPUS == 1 else f"0-{procfs.NR_CPUS - 1}\n".encode()


def _cpu(k: "KernelApi") -> dict[str, Node]:
    def set_preferred(data: bytes) -> None:
        # mte_tcf_preferred_store(): "async", "sync" or "asymm" (this CPU has FEAT_MTE3).
        mode = data.strip().decode("ascii", errors="replace")
        if mode not in mte.PREFERRED_MODES:
            raise SyscallError(errno.EINVAL)
        k.set_mte_tcf_preferred(mode)
    return {"mte_tcf_preferred": File(lambda: k.options.mte_tcf_preferred.encode() + b"\n", set_preferred,
                                      mode=0o644)}


def _hugepages() -> dict[str, Node]:
    size: dict[str, Node] = {name: File(static("0\n")) for name in ("free_hugepages", "resv_hugepages",
                                                                    "surplus_hugepages")}
    size["nr_hugepages"] = File(static("0\n"), procfs.set_hugepage_pool, mode=0o644)
    size["nr_overcommit_hugepages"] = File(static("0\n"), procfs.set_hugepage_pool, mode=0o644)
    return {f"hugepages-{procfs.HUGEPAGE_KB}kB": Dir(lambda: size)}


def root(k: "KernelApi") -> Dir:
    cpus = {f"cpu{i}": Dir(lambda: _cpu(k)) for i in range(procfs.NR_CPUS)}
    cpu = Dir(lambda: {"online": File(_cpu_list), "possible": File(_cpu_list), "present": File(_cpu_list),
                       "kernel_max": File(static(f"{procfs.NR_CPUS - 1}\n")), **cpus})
    thp = Dir(lambda: {"enabled": File(static("always madvise [never]\n"), mode=0o644),
                       "defrag": File(static("always defer defer+madvise madvise [never]\n"), mode=0o644)})
    mm = Dir(lambda: {"hugepages": Dir(_hugepages), "transparent_hugepage": thp})
    return Dir(lambda: {
        "devices": Dir(lambda: {"system": Dir(lambda: {"cpu": cpu})}),
        "kernel": Dir(lambda: {"mm": mm}),
        "fs": Dir(dict),
    })
