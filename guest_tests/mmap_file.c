// exit: 0
// qemu: same
#define _GNU_SOURCE
// Shared and private file mappings: shared writes reach the file, private ones do not.
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
    const char *path = "mteemu-mmap-test.dat";
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0) { perror("open"); return 1; }
    ftruncate(fd, 8192);
    char *sh = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *pr = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (sh == MAP_FAILED || pr == MAP_FAILED) { perror("mmap"); return 1; }
    strcpy(sh + 4096, "shared write");
    msync(sh, 8192, MS_SYNC);
    char buf[32] = {0}; pread(fd, buf, 12, 4096);
    printf("file sees: %s\n", buf);
    strcpy(pr, "private");
    pread(fd, buf, 7, 0);
    printf("private write reached the file: %d\n", memcmp(buf, "private", 7) == 0);
    munmap(sh, 8192); munmap(pr, 8192); close(fd); unlink(path);
    int mfd = memfd_create("demo", 0);
    write(mfd, "memfd data", 10);
    char *mm = mmap(0, 4096, PROT_READ, MAP_SHARED, mfd, 0);
    printf("memfd mapping: %.10s\n", mm);
    return 0;
}
