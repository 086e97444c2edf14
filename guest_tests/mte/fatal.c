/* A tag-check fault nobody handles: the process dies with SIGSEGV (exit status
   139 from mteemu) and mteemu prints the fault report (tests/test_report.py). */
#include "mte.h"
// signal: SIGSEGV
// si_code: SEGV_MTESERR
// qemu: differs: it prints no report

__attribute__((noinline)) void store_byte(char *p, long i) {
    p[i] = 1;
}

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    char *buf = tagged_mmap(4096);
    char *p = set_tag(buf + 256, 5);
    tag_range(p, 48);                    /* a 48-byte "object" with tag 5 */
    stg(set_tag(buf + 256 + 48, 3));     /* its neighbour has tag 3 */
    printf("writing one byte past a 48-byte object\n");
    fflush(stdout);
    store_byte(p, 48);
    printf("not reached\n");
    return 0;
}
