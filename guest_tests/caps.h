/* Helpers shared by the guest programs that behave differently with and without a
   capability (mteemu's guest holds the capabilities mteemu itself runs with). */
#ifndef MTEEMU_GUEST_CAPS_H
#define MTEEMU_GUEST_CAPS_H
#include <stdio.h>

/* Whether capability `cap` is in the effective set, as /proc/self/status shows it. */
static int has_cap(int cap) {
    char line[256];
    unsigned long long eff = 0;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &eff) == 1)
            break;
    if (f)
        fclose(f);
    return (int)(eff >> cap & 1);
}
#endif
