/* Tags follow the memory through the kernel's hands: fork copies tags and the
   tag-check settings (and copy-on-write keeps each side's tags its own);
   MADV_DONTNEED on private anonymous memory zeroes data and tags; mremap moves
   the tags with the pages. */
#define _GNU_SOURCE
#include "mte.h"
#include <sys/wait.h>
// qemu: differs: it loses the tags on mremap

int main(void) {
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    setvbuf(stdout, NULL, _IONBF, 0);
    char *buf = tagged_mmap(3 * 4096);
    char *t4 = set_tag(buf, 4);
    tag_range(t4, 3 * 4096);
    strcpy(t4, "parent data");

    pid_t pid = fork();
    if (pid == 0) {
        printf("child: ctrl %#lx, tag %u, data '%s'\n", (unsigned long)prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0),
               tag_of(ldg(buf)), t4);
        stg(set_tag(buf, 11));                       /* copy-on-write: the child's own page */
        printf("child: retagged to %u\n", tag_of(ldg(buf)));
        *(volatile char *)set_tag(buf + 4096, 9) = 1; /* wrong tag: killed with SIGSEGV */
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("parent: child %s %d; my tag is still %u\n", WIFSIGNALED(status) ? "killed by signal" : "exited",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), tag_of(ldg(buf)));

    madvise(buf + 4096, 4096, MADV_DONTNEED);
    printf("after MADV_DONTNEED: tag %u, byte %d\n", tag_of(ldg(buf + 4096)), *(char *)(buf + 4096));

    char *moved = mremap(buf, 3 * 4096, 6 * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, buf + 64 * 4096);
    printf("after mremap: moved %d, tags %u %u %u, data '%s'\n", moved != MAP_FAILED, tag_of(ldg(moved)),
           tag_of(ldg(moved + 4096)), tag_of(ldg(moved + 2 * 4096)), (char *)set_tag(moved, 4));
    printf("grown part: tag %u\n", tag_of(ldg(moved + 4 * 4096)));
    return 0;
}
