/* The tagged address ABI: with PR_TAGGED_ADDR_ENABLE syscalls take tagged pointers;
   without it a tagged pointer is not a user address (EFAULT). In SYNC mode the
   kernel's own accesses to user buffers are tag checked and a mismatch is EFAULT,
   never a signal (a pipe copies a page at a time: a mismatch further in is EFAULT too, with
   nothing written); in ASYNC and NONE modes they are not checked. */
#include "mte.h"
#include <errno.h>
#include <fcntl.h>
// qemu: differs: it does not tag-check syscall buffers

static const char *result(ssize_t r) {
    static char text[32];
    if (r < 0)
        return errno == EFAULT ? "EFAULT" : "other error";
    snprintf(text, sizeof text, "%zd bytes", r);
    return text;
}

int main(void) {
    char *buf = tagged_mmap(4096);
    char *good = set_tag(buf, 3), *bad = set_tag(buf, 9);
    tag_range(good, 128);
    memcpy(good, "tagged data\n", 12);
    int fds[2];
    pipe(fds);
    catch_segv(0);

    prctl(PR_SET_TAGGED_ADDR_CTRL, PR_MTE_TCF_SYNC | ALL_TAGS, 0, 0, 0);   /* no PR_TAGGED_ADDR_ENABLE */
    printf("ABI off, tagged pointer: write %s\n", result(write(fds[1], good, 12)));
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    printf("sync, right tag: write %s\n", result(write(fds[1], good, 12)));
    printf("sync, wrong tag: write %s\n", result(write(fds[1], bad, 12)));
    printf("sync, right tag: read %s\n", result(read(fds[0], good + 64, 12)));
    write(fds[1], "more\n", 5);
    printf("sync, wrong tag: read %s\n", result(read(fds[0], bad + 64, 5)));
    printf("sync, wrong tag: open path %s\n", result(open(bad, O_RDONLY)));
    read(fds[0], good + 64, 5);
    stg(set_tag(buf + 32, 9));                 /* granule 2 now has another tag */
    ssize_t w = write(fds[1], good, 48);
    printf("sync, mismatch 32 bytes in: write %s\n", result(w));
    printf("no signal so far: %d\n", fault_code == 0);
    if (w > 0)
        read(fds[0], good + 64, (size_t)w);

    mte_enable(PR_MTE_TCF_ASYNC, ALL_TAGS);
    printf("async, wrong tag: write %s\n", result(write(fds[1], bad, 12)));
    printf("async, wrong tag: read %s\n", result(read(fds[0], bad + 64, 12)));
    mte_enable(PR_MTE_TCF_NONE, ALL_TAGS);
    write(fds[1], "none\n", 5);
    printf("none, wrong tag: read %s\n", result(read(fds[0], bad + 64, 5)));
    printf("no signal at all: %d\n", fault_code == 0);
    return 0;
}
