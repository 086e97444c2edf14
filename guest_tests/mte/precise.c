/* A synchronous tag-check fault is precise: the faulting instruction has no
   architectural effect — no byte written (not even the matching half of a pair or
   of an unaligned access), no destination register written, no base writeback —
   and the signal frame's PC is the faulting instruction. */
#include "mte.h"
#include <ucontext.h>
// qemu: differs: it keeps the tag bits in si_addr and writes the first half of a pair

static volatile uint64_t r1, r2, r3, pc_word, far_off, v0_lo;
static char *area;

static void handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    ucontext_t *uc = ctx;
    r1 = uc->uc_mcontext.regs[1];
    r2 = uc->uc_mcontext.regs[2];
    r3 = uc->uc_mcontext.regs[3];
    pc_word = *(uint32_t *)uc->uc_mcontext.pc;
    far_off = (uintptr_t)si->si_addr - untag(area);
    fault_code = si->si_code;
    siglongjmp(fault_jmp, 1);
}

static int untouched(size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        if ((unsigned char)((char *)set_tag(area, 3))[i] != 0xee)
            return 0;
    return 1;
}

static void report(const char *what, char *ptr) {
    printf("%-28s %s far=+%lu x1_kept=%d x2=%#lx x3=%#lx insn=%08lx\n", what, code_name(fault_code),
           (unsigned long)far_off, r1 == (uintptr_t)ptr, (unsigned long)r2, (unsigned long)r3,
           (unsigned long)pc_word);
}

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    area = tagged_mmap(4096);
    char *t3 = set_tag(area, 3);
    tag_range(t3, 4096);
    stg(set_tag(area + 32, 4));          /* granule 2 (bytes 32..47) has tag 4 */
    memset(t3, 0xee, 32);
    memset(t3 + 48, 0xee, 64);
    struct sigaction sa = {0};
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);

    /* STP whose second half lands in the tag-4 granule */
    char *p = t3 + 24;
    if (!sigsetjmp(fault_jmp, 1))
        __asm__ volatile("mov x1, %0\n\tmov x2, #0x1111\n\tmov x3, #0x2222\n\tstp x2, x3, [x1], #16" : : "r"(p) : "x1", "x2", "x3", "memory");
    report("stp post-index", p);
    printf("  bytes 24..39 untouched: %d\n", untouched(24, 32));

    /* LDP with pre-index: first load fine, second in the tag-4 granule */
    p = t3 + 8;
    if (!sigsetjmp(fault_jmp, 1))
        __asm__ volatile("mov x1, %0\n\tmov x2, #7\n\tmov x3, #9\n\tldp x2, x3, [x1, #16]!" : : "r"(p) : "x1", "x2", "x3", "memory");
    report("ldp pre-index", p);

    /* post-index store straight into the tag-4 granule */
    p = t3 + 32;
    if (!sigsetjmp(fault_jmp, 1))
        __asm__ volatile("mov x1, %0\n\tmov x2, #5\n\tmov x3, #6\n\tstr x2, [x1], #8" : : "r"(p) : "x1", "x2", "x3", "memory");
    report("str post-index", p);

    /* an unaligned 8-byte store from byte 28: 4 bytes match, 4 do not */
    p = t3 + 28;
    if (!sigsetjmp(fault_jmp, 1))
        __asm__ volatile("mov x1, %0\n\tmov x2, #-1\n\tmov x3, #0\n\tstr x2, [x1]" : : "r"(p) : "x1", "x2", "x3", "memory");
    report("unaligned str", p);
    printf("  bytes 28..31 untouched: %d\n", untouched(28, 32));

    /* ST1 of two SIMD registers: the second one lands in the tag-4 granule */
    p = t3 + 16;
    if (!sigsetjmp(fault_jmp, 1))
        __asm__ volatile("mov x1, %0\n\tmovi v0.16b, #1\n\tmovi v1.16b, #2\n\tmov x2, #0\n\tmov x3, #0\n\t"
                         "st1 {v0.16b, v1.16b}, [x1]" : : "r"(p) : "x1", "x2", "x3", "v0", "v1", "memory");
    report("st1 two registers", p);
    printf("  bytes 16..31 untouched: %d\n", untouched(16, 32));

    /* an atomic add with the wrong tag: neither memory nor the register change */
    p = set_tag(area + 48, 4);
    if (!sigsetjmp(fault_jmp, 1))
        __asm__ volatile("mov x1, %0\n\tmov x2, #1\n\tmov x3, #0x33\n\tldadd x2, x3, [x1]" : : "r"(p) : "x1", "x2", "x3", "memory");
    report("ldadd", p);
    printf("  bytes 48..55 untouched: %d\n", untouched(48, 56));
    return 0;
}
