/* An allocator of the program's own — a bump allocator over PROT_MTE memory that tags each
   object with IRG and STG, and retags it on free — whose bugs the fault report explains
   from the tag stores alone (tests/test_alloc_history.py: mteemu knows no such allocator by
   name). Without an argument it allocates and frees without a bug. */
#include "mte.h"
// | bump ok
// qemu: same

static char *arena, *next_free;
static unsigned last_tag;

__attribute__((noinline)) void *bump_alloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    /* Never tag 0 (the arena's untouched granules), nor the previous object's. */
    char *p = irg(next_free, 1 | 1UL << last_tag);
    last_tag = tag_of(p);
    next_free += n;
    tag_range(p, n);
    return p;
}

__attribute__((noinline)) void bump_free(void *p, size_t n) {
    void *retagged = irg(p, 1UL << tag_of(p) | 1);     /* any other tag */
    tag_range(retagged, (n + 15) & ~(size_t)15);
}

__attribute__((noinline)) char read_at(char *p, long i) { return ((volatile char *)p)[i]; }

int main(int argc, char **argv) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    arena = next_free = tagged_mmap(1 << 16);
    char *a = bump_alloc(64);
    char *b = bump_alloc(32);
    const char *bug = argc > 1 ? argv[1] : "";
    if (!strcmp(bug, "overflow")) {
        read_at(a, 64 + 8);                   /* 8 bytes into b: right of a */
    } else if (!strcmp(bug, "use-after-free")) {
        bump_free(b, 32);
        read_at(b, 16);
    } else {
        bump_free(a, 64);
        bump_free(b, 32);
        puts("bump ok");
        return 0;
    }
    puts("not reached");
    return 1;
}
