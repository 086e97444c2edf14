// A file mapping split by MAP_FIXED, munmap and mprotect in its middle (what a dynamic
// loader does to every library): each piece keeps reading the file at its own offset.
// exit: 0
// | fixed over the middle: 1 1 1
// | after munmap of a middle page: 1 1
// | after mprotect of a middle page: 1 1 1
// qemu: same
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 16
static char file[PAGES * 4096];

static int same(const char *p, long off) { return !memcmp(p, file + off, 4096); }

int main(void) {
    for (int i = 0; i < (int)sizeof file; i++)
        file[i] = (char)(i / 4096 * 7 + i % 251);
    int fd = open("split.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, file, sizeof file);
    char *m = mmap(0, sizeof file, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    volatile char touch = m[5 * 4096];
    (void)touch;
    /* Pages 6-8 become file pages 2-4, read-write. */
    char *d = mmap(m + 6 * 4096, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 2 * 4096);
    printf("fixed over the middle: %d %d %d\n", same(d, 2 * 4096), same(m + 5 * 4096, 5 * 4096),
           same(m + 10 * 4096, 10 * 4096));
    munmap(m + 12 * 4096, 4096);
    printf("after munmap of a middle page: %d %d\n", same(m + 11 * 4096, 11 * 4096), same(m + 13 * 4096, 13 * 4096));
    mprotect(m + 3 * 4096, 4096, PROT_READ);
    printf("after mprotect of a middle page: %d %d %d\n", same(m + 3 * 4096, 3 * 4096), same(m + 2 * 4096, 2 * 4096),
           same(m + 4 * 4096, 4 * 4096));
    return 0;
}
