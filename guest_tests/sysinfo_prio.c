// sysinfo(2) as glibc reads it (mem_unit, so sysconf(_SC_PHYS_PAGES) and _SC_AVPHYS_PAGES are
// not 0: GNU sort sizes its buffer from them), posix_fadvise (advice only), and the nice
// value: getpriority/setpriority and nice(2), raising it freely, lowering it only with
// CAP_SYS_NICE. Found with Debian's tools (issue 28) and checked against the Linux oracle.
// exit: 0
// qemu: same
// | sysinfo: mem_unit 1, totalram > freeram > 0: 1, procs >= 1: 1
// | sysconf: phys pages > avphys pages > 0: 1
// | posix_fadvise: 0 SEQUENTIAL, 22 bad advice, 29 pipe, 9 bad fd
// | nice: 0, raised: 5, getpriority: 5, child inherits: 5, lowered by 1: allowed as CAP_SYS_NICE says
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caps.h"

int main(void) {
    struct sysinfo si;
    sysinfo(&si);
    printf("sysinfo: mem_unit %u, totalram > freeram > 0: %d, procs >= 1: %d\n", si.mem_unit,
           si.totalram > si.freeram && si.freeram > 0, si.procs >= 1);
    long phys = sysconf(_SC_PHYS_PAGES), av = sysconf(_SC_AVPHYS_PAGES);
    printf("sysconf: phys pages > avphys pages > 0: %d\n", phys > av && av > 0);
    int fd = open("/proc/self/exe", O_RDONLY), p[2];
    pipe(p);
    printf("posix_fadvise: %d SEQUENTIAL, %d bad advice, %d pipe, %d bad fd\n",
           posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL), posix_fadvise(fd, 0, 0, 77),
           posix_fadvise(p[0], 0, 0, POSIX_FADV_NORMAL), posix_fadvise(99, 0, 0, POSIX_FADV_NORMAL));
    errno = 0;
    int before = getpriority(PRIO_PROCESS, 0);
    int raised = nice(5);
    int got = getpriority(PRIO_PROCESS, 0);
    int child = -1, status;
    pid_t pid = fork();
    if (pid == 0)
        _exit(getpriority(PRIO_PROCESS, 0));
    waitpid(pid, &status, 0);
    child = WEXITSTATUS(status);
    int lowered = setpriority(PRIO_PROCESS, 0, 4) == 0;
    printf("nice: %d, raised: %d, getpriority: %d, child inherits: %d, lowered by 1: %s\n", before, raised, got,
           child, lowered == has_cap(23) ? "allowed as CAP_SYS_NICE says" : "wrong");
    return 0;
}
