/* Helpers shared by the MTE guest programs: the Linux MTE ABI constants, tag
   arithmetic and the MTE instructions as inline assembly. */
#ifndef MTEEMU_GUEST_MTE_H
#define MTEEMU_GUEST_MTE_H
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PROT_MTE
#define PROT_MTE 0x20
#endif
#ifndef PR_SET_TAGGED_ADDR_CTRL
#define PR_SET_TAGGED_ADDR_CTRL 55
#define PR_GET_TAGGED_ADDR_CTRL 56
#define PR_TAGGED_ADDR_ENABLE (1UL << 0)
#endif
#ifndef PR_MTE_TCF_SYNC
#define PR_MTE_TCF_NONE 0UL
#define PR_MTE_TCF_SYNC (1UL << 1)
#define PR_MTE_TCF_ASYNC (1UL << 2)
#define PR_MTE_TAG_SHIFT 3
#endif
#ifndef SEGV_MTEAERR
#define SEGV_MTEAERR 8
#define SEGV_MTESERR 9
#endif
#ifndef SA_EXPOSE_TAGBITS
#define SA_EXPOSE_TAGBITS 0x800
#endif
#ifndef HWCAP2_MTE
#define HWCAP2_MTE (1 << 18)
#endif

#define ALL_TAGS (0xfffeUL << PR_MTE_TAG_SHIFT)   /* IRG may use tags 1..15 */

static inline int mte_enable(unsigned long tcf, unsigned long include) {
    return prctl(PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE | tcf | include, 0, 0, 0);
}

static inline void *tagged_mmap(size_t len) {
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE | PROT_MTE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap(PROT_MTE)");
        exit(99);
    }
    return p;
}

static inline void *set_tag(void *p, unsigned tag) {
    return (void *)(((uintptr_t)p & ~(0xfUL << 56)) | ((uintptr_t)tag << 56));
}
static inline unsigned tag_of(const void *p) { return ((uintptr_t)p >> 56) & 0xf; }
static inline uintptr_t untag(const void *p) { return (uintptr_t)p & ((1UL << 56) - 1); }

static inline void *irg(void *p, uint64_t exclude) {
    void *r;
    __asm__ volatile("irg %0, %1, %2" : "=r"(r) : "r"(p), "r"(exclude));
    return r;
}
static inline void stg(void *p) { __asm__ volatile("stg %0, [%0]" : : "r"(p) : "memory"); }
static inline void *ldg(void *p) {
    void *r = p;
    __asm__ volatile("ldg %0, [%1]" : "+r"(r) : "r"(p));
    return r;
}
/* Tag [p, p+len) with p's tag, one granule at a time. */
static inline void tag_range(void *p, size_t len) {
    for (size_t i = 0; i < len; i += 16)
        stg((char *)p + i);
}

/* A fault handler (SIGSEGV, SIGBUS, SIGILL...) that records si_code/si_addr and jumps
   back to the last FAULTED(). */
static sigjmp_buf fault_jmp;
static volatile int fault_code;
static volatile uintptr_t fault_addr;
static void record_fault(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    fault_code = si->si_code;
    fault_addr = (uintptr_t)si->si_addr;
    siglongjmp(fault_jmp, 1);
}
static inline void catch_signal(int sig, int flags) {
    struct sigaction sa = {0};
    sa.sa_sigaction = record_fault;
    sa.sa_flags = SA_SIGINFO | flags;
    sigaction(sig, &sa, NULL);
}
static inline void catch_segv(int flags) { catch_signal(SIGSEGV, flags); }
#define FAULTED() (fault_code = 0, fault_addr = 0, sigsetjmp(fault_jmp, 1))

static const char *code_name(int code) {
    switch (code) {
    case SEGV_MAPERR: return "SEGV_MAPERR";
    case SEGV_ACCERR: return "SEGV_ACCERR";
    case SEGV_MTEAERR: return "SEGV_MTEAERR";
    case SEGV_MTESERR: return "SEGV_MTESERR";
    default: return "?";
    }
}
#endif
