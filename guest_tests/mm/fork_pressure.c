// fork of tagged memory under memory pressure: the child copies every page on write
// (copy-on-write copies tags with the data), more than RAM holds, so pages of both go
// to swap and back; each process finds its own data and tags.
// board: ../../dts/small-v3.dts
// options: --mem 16M --swap 64M
// variant cma: --tag-storage-policy cma
// | child: its copies hold its data and tags: yes
// | child exited: 0
// | parent: its pages hold its data and tags: yes
// | swapped under pressure: yes
// qemu: differs: it has no swap model
#include <sys/wait.h>
#include "mm.h"

int main(void) {
    if (mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS))
        return 99;
    size_t len = 8 * MiB;
    char *t = tagged_mmap(len);
    for (size_t p = 0; p < len; p += PAGE)
        fill_tagged_page(t + p, p / PAGE);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t p = 0; p < len; p += PAGE)
            fill_tagged_page(t + p, 50000 + p / PAGE);
        int ok = 1;
        for (size_t p = 0; p < len; p += PAGE)
            ok &= tagged_page_ok(t + p, 50000 + p / PAGE);
        printf("child: its copies hold its data and tags: %s\n", ok ? "yes" : "no");
        return ok ? 0 : 1;
    }
    int status;
    waitpid(pid, &status, 0);
    printf("child exited: %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    int ok = 1;
    for (size_t p = 0; p < len; p += PAGE)
        ok &= tagged_page_ok(t + p, p / PAGE);
    printf("parent: its pages hold its data and tags: %s\n", ok ? "yes" : "no");
    printf("swapped under pressure: %s\n", vmstat("pswpout") > 0 && vmstat("pswpin") > 0 ? "yes" : "no");
    return 0;
}
