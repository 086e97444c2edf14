/* Plays a sequence of raw system calls and prints what each returned, so that the same
 * sequence can be compared under mteemu and under Linux (tests/fuzzers/oracle_syscalls.py).
 *
 * stdin: records of 7 little-endian u64 (number, x0..x5). Before playing, the program maps
 * fixed regions that the generator's pointers name (SCRATCH: data and path strings;
 * PLAYGROUND: where mmap/munmap/mprotect/madvise may land; TAGGED: PROT_MTE, tags 0..15 by
 * granule) and makes a fresh directory its working directory, so that both runs start from
 * the same state. Output, on fd 500 (stdout moved there; fd 1 is closed for the sequence): one line
 * per call, "nr result", where result is -errno, or the value when it is small (an fd, a
 * count), or "addr" for anything larger (an address).
 * Built by tests/conftest.py. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SCRATCH 0x200000000UL
#define PLAYGROUND 0x300000000UL
#define TAGGED 0x400000000UL
#define PROT_MTE_ 0x20

static const char *paths[] = {"a", "b", "dir", "dir/x", "..", ".", "a/b/c", "", "link", "dir/../a", "no/such",
                              "dir/y"};                /* relative: the same in both worlds */

int main(void) {
    static uint64_t calls[1 << 16][7];
    size_t n = fread(calls, sizeof calls[0], sizeof calls / sizeof calls[0], stdin);
    if (mmap((void *)SCRATCH, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
             0) != (void *)SCRATCH ||
        mmap((void *)PLAYGROUND, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
             -1, 0) != (void *)PLAYGROUND ||
        mmap((void *)TAGGED, 1 << 16, PROT_READ | PROT_WRITE | PROT_MTE_, MAP_PRIVATE | MAP_ANONYMOUS |
             MAP_FIXED_NOREPLACE, -1, 0) != (void *)TAGGED) {
        printf("setup: mmap failed: %d\n", errno);
        return 1;
    }
    char *s = (char *)SCRATCH;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        strcpy(s + 256 * i, paths[i]);          /* path i at SCRATCH + 256 * i */
    for (int i = 0; i < 4096; i++)
        s[0x8000 + i] = (char)i;                /* data to write */
    prctl(PR_SET_TAGGED_ADDR_CTRL, 1UL | (1UL << 1) | (0xfffeUL << 3), 0, 0, 0);   /* sync, tags 1-15 */
    for (uint64_t g = 0; g < (1 << 16) / 16; g++) {
        uint64_t p = (TAGGED + 16 * g) | (g % 16) << 56;
        __asm__ volatile(".arch_extension memtag\n\tstg %0, [%0]" : : "r"(p) : "memory");
    }
    FILE *results = fdopen(dup2(1, 500), "w");
    if (results == NULL)
        return 3;
    close(1);                                   /* the sequence's fd 1 is whatever it opens */
    mkdir("fuzz-cwd", 0700);
    if (chdir("fuzz-cwd") != 0)
        return 2;
    mkdir("dir", 0700);
    close(open("a", O_CREAT | O_WRONLY, 0600));
    for (size_t i = 0; i < n; i++) {
        uint64_t *c = calls[i];
        long r = syscall((long)c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
        if (r < 0)
            fprintf(results, "%lu -%d\n", (unsigned long)c[0], errno);
        else if (r < 65536)
            fprintf(results, "%lu %ld\n", (unsigned long)c[0], r);
        else
            fprintf(results, "%lu addr\n", (unsigned long)c[0]);
        fflush(results);
    }
    return 0;
}
