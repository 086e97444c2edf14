// /proc/meminfo and /proc/vmstat describe the emulated board's memory, not the host's:
// the default board gives the kernel 992 MiB (the rest holds tags), and touching 8 MiB
// takes at least 8 MiB from MemFree.
// exit: 0
// | MemTotal: 1016800 kB
// | MemFree below MemTotal: 1
// | touching 8 MiB took at least 8 MiB: 1
// | nr_free_pages matches MemFree: 1
// qemu: differs: it shows the host's /proc/meminfo
// linux: differs: MemTotal is the machine's: mteemu's default board has 1 GiB less its reservations, the oracle's VM 1 GiB less the kernel's
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long field(const char *file, const char *name) {
    char line[128];
    long value = -1;
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, strlen(name)))
            value = atol(line + strlen(name));
    fclose(f);
    return value;
}

int main(void) {
    long total = field("/proc/meminfo", "MemTotal:"), before = field("/proc/meminfo", "MemFree:");
    printf("MemTotal: %ld kB\n", total);
    printf("MemFree below MemTotal: %d\n", before > 0 && before < total);
    char *p = malloc(8 << 20);
    memset(p, 1, 8 << 20);
    long after = field("/proc/meminfo", "MemFree:");
    printf("touching 8 MiB took at least 8 MiB: %d\n", before - after >= 8192);
    long pages = field("/proc/vmstat", "nr_free_pages ");
    after = field("/proc/meminfo", "MemFree:");
    printf("nr_free_pages matches MemFree: %d\n", pages * 4 == after);
    return p[100] - 1;
}
