/* Shared by the tagged workloads: turn on sync tag checking, map PROT_MTE memory. */
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
static char *tagged(size_t len) {
    prctl(55, 1 | 2 | (0xfffeUL << 3), 0, 0, 0);      /* PR_SET_TAGGED_ADDR_CTRL: sync, tags 1-15 */
    return mmap(0, len, PROT_READ | PROT_WRITE | 0x20, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}
static inline char *with_tag(char *p, unsigned t) {
    return (char *)(((uintptr_t)p & ~(0xfUL << 56)) | ((uintptr_t)t << 56));
}
