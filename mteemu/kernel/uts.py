"""The emulated machine's names (include/linux/utsname.h): what uname(2) and
/proc/sys/kernel/{ostype,hostname,osrelease,version} report."""
from __future__ import annotations

# sysname, nodename, release, version, machine, domainname
UTS = (b"Linux", b"mteemu", b"6.8.0-mteemu", b"#1 SMP PREEMPT mteemu", b"aarch64", b"(none)")
