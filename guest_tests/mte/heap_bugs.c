/* glibc's own heap tagging (GLIBC_TUNABLES=glibc.mem.tagging=3 sync, =1 async):
   malloc returns tagged pointers, and a heap overflow by one granule and a
   use-after-free are caught with the si_code of the mode. Untagged (no tunable),
   neither is noticed. */
#include "mte.h"
// qemu: differs: untagged, there is nothing to compare
// qemu-variant: sync
// variant sync: -E GLIBC_TUNABLES=glibc.mem.tagging=3
// variant async: -E GLIBC_TUNABLES=glibc.mem.tagging=1

int main(void) {
    catch_segv(0);
    char *p = malloc(32);
    memset(p, 1, 32);
    printf("malloc returns a tagged pointer: %d, tagged_addr_ctrl TCF bits: %#lx\n", tag_of(p) != 0,
           (unsigned long)prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0) & 6);
    if (!FAULTED()) {
        ((volatile char *)p)[32] = 1;      /* one granule past the end of the block */
        getppid();                          /* a kernel entry, where async faults surface */
    }
    printf("overflow by one granule: %s\n", fault_code ? code_name(fault_code) : "not detected");
    char *q = malloc(48);
    strcpy(q, "freed");
    free(q);
    if (!FAULTED()) {
        (void)((volatile char *)q)[0];
        getppid();
    }
    printf("use after free: %s\n", fault_code ? code_name(fault_code) : "not detected");
    free(p);
    puts("heap still works after the faults");
    return 0;
}
