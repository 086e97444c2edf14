/* Where PROT_MTE is accepted (Linux: VM_MTE_ALLOWED): anonymous memory, private or
   shared, memfd, and files on tmpfs such as /dev/shm, private or shared; a file on
   a disk file system gets EINVAL from mmap and mprotect. New tagged pages carry
   tag 0; adding PROT_MTE keeps the data and starts the tags at 0; PROT_MTE is
   sticky (an mprotect without it leaves tag checking on); unknown prot bits are
   EINVAL from mprotect and ignored by mmap (do_mmap() does not validate them). Run with the program's own path as argv[0] (a file on disk). */
#define _GNU_SOURCE
#include "mte.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
// qemu: differs: it accepts PROT_MTE on disk files, does not tag tmpfs files and drops MTE on mprotect
// linux: differs: the oracle's files are on tmpfs (its initramfs), where PROT_MTE is allowed; mteemu runs the program from a disk file system

static const char *res(void *p) { return p == MAP_FAILED ? (errno == EINVAL ? "EINVAL" : "other error") : "ok"; }
static const char *rc(int r) { return r ? (errno == EINVAL ? "EINVAL" : "other error") : "ok"; }

/* Does a tag-5 store into a tag-0 granule of p fault? */
static const char *checked(char *p) {
    if (!FAULTED()) {
        *(volatile char *)set_tag(p, 5) = 1;
        return "not checked";
    }
    return code_name(fault_code);
}

static void tagged_file(const char *what, int fd, int flags) {
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_MTE, flags, fd, 0);
    printf("%-26s mmap: %s", what, res(p));
    if (p != MAP_FAILED) {
        stg(set_tag(p, 6));
        printf(", STG/LDG: %u, checked: %s", tag_of(ldg(p)), checked(p + 16));
    }
    printf("\n");
}

int main(int argc, char **argv) {
    (void)argc;
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    catch_segv(0);

    char *a = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_MTE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("%-26s mmap: %s, fresh tag %u, checked: %s\n", "anonymous private", res(a), tag_of(ldg(a)), checked(a));
    char *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_MTE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    printf("%-26s mmap: %s, fresh tag %u, checked: %s\n", "anonymous shared", res(s), tag_of(ldg(s)), checked(s));

    int mfd = memfd_create("mte", 0);
    ftruncate(mfd, 4096);
    tagged_file("memfd shared", mfd, MAP_SHARED);
    char *m2 = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_MTE, MAP_SHARED, mfd, 0);
    printf("%-26s the tag set through another mapping: %u\n", "memfd second mapping", tag_of(ldg(m2)));
    tagged_file("memfd private", mfd, MAP_PRIVATE);

    char shm[64];
    snprintf(shm, sizeof shm, "/dev/shm/mteemu-prot-mte-%d", getpid());
    int sfd = open(shm, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ftruncate(sfd, 4096);
    tagged_file("/dev/shm file shared", sfd, MAP_SHARED);
    tagged_file("/dev/shm file private", sfd, MAP_PRIVATE);
    char *sp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    printf("%-26s mprotect(+PROT_MTE): %s\n", "/dev/shm file", rc(mprotect(sp, 4096, PROT_READ | PROT_WRITE | PROT_MTE)));
    unlink(shm);

    int dfd = open(argv[0], O_RDONLY);
    char *d = mmap(NULL, 4096, PROT_READ | PROT_MTE, MAP_PRIVATE, dfd, 0);
    printf("%-26s mmap: %s\n", "disk file private", res(d));
    d = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, dfd, 0);
    printf("%-26s mprotect(+PROT_MTE): %s\n", "disk file private", rc(mprotect(d, 4096, PROT_READ | PROT_MTE)));

    printf("%-26s mmap: %s\n", "unknown prot bit 0x40",
           res(mmap(NULL, 4096, PROT_READ | 0x40, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)));
    printf("%-26s mprotect: %s\n", "unknown prot bit 0x40", rc(mprotect(a, 4096, PROT_READ | 0x40)));

    char *u = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    strcpy(u, "kept");
    printf("%-26s checked before: %s\n", "mprotect(+PROT_MTE)", checked(u + 32));
    printf("%-26s mprotect: %s, data: %s, tag: %u, checked: %s\n", "mprotect(+PROT_MTE)",
           rc(mprotect(u, 4096, PROT_READ | PROT_WRITE | PROT_MTE)), u, tag_of(ldg(u)), checked(u + 48));
    printf("%-26s mprotect: %s, still checked: %s\n", "mprotect(-PROT_MTE)",
           rc(mprotect(u, 4096, PROT_READ | PROT_WRITE)), checked(u + 64));
    return 0;
}
