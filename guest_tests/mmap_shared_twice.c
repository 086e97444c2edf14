/* Two shared mappings of one file see each other's writes, and write(2) to the
   file is visible through both; a private mapping keeps its own copy. */
// exit: 0
// qemu: same
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void) {
    const char *path = "shared_twice.tmp";
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ftruncate(fd, 8192);
    char *a = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    p[4096] = 'P';   /* private copy of the second page from now on */
    strcpy(a + 4096, "written through a");
    printf("b sees: %s\n", b + 4096);
    printf("private sees: %s\n", p + 4096);
    pwrite(fd, "via pwrite", 11, 0);
    printf("a sees: %s, b sees: %s\n", a, b);
    munmap(a, 8192);
    munmap(b, 8192);
    munmap(p, 8192);
    char buf[32] = {0};
    pread(fd, buf, 17, 4096);
    printf("file has: %s\n", buf);
    close(fd);
    unlink(path);
    return 0;
}
