// System V shared memory: a segment attached by a parent and (through fork) its child is
// one memory; IPC_STAT counts the attachments; shmdt and IPC_RMID end it; a read-only
// attachment refuses writes with SIGSEGV.
// exit: 0
// | child wrote: hello from the child
// | attachments: 2 while both hold it
// | size 8192, mode 600
// | after shmdt: 0 attachments
// | read-only attach, write: SIGSEGV
// | after IPC_RMID: shmget by key ENOENT
// qemu: same
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

static sigjmp_buf jmp;
static void on_segv(int sig) { (void)sig; siglongjmp(jmp, 1); }

int main(void) {
    /* A key of this run's own: under qemu-aarch64 the segment is the host's, and the
       oracle may run this program twice at once (the plugin and test_guests.py). */
    key_t key = 0x5eed0000 | (getpid() & 0xffff);
    int id = shmget(key, 8192, IPC_CREAT | IPC_EXCL | 0600);
    if (id < 0) {
        printf("shmget: %s\n", strerrorname_np(errno));
        return 1;
    }
    char *p = shmat(id, NULL, 0);
    int done[2], counted[2];
    pipe(done);
    pipe(counted);
    pid_t child = fork();
    if (child == 0) {
        strcpy(p, "hello from the child");
        write(done[1], "x", 1);
        char c;
        read(counted[0], &c, 1);         /* wait until the parent has counted */
        _exit(0);
    }
    close(done[1]);                      /* a child that dies early is EOF, not a hang */
    close(counted[0]);
    char c;
    read(done[0], &c, 1);
    printf("child wrote: %s\n", p);
    struct shmid_ds ds;
    shmctl(id, IPC_STAT, &ds);
    printf("attachments: %lu while both hold it\n", (unsigned long)ds.shm_nattch);
    printf("size %zu, mode %o\n", ds.shm_segsz, ds.shm_perm.mode & 0777);
    write(counted[1], "x", 1);
    waitpid(child, NULL, 0);
    shmdt(p);
    shmctl(id, IPC_STAT, &ds);
    printf("after shmdt: %lu attachments\n", (unsigned long)ds.shm_nattch);
    char *ro = shmat(id, NULL, SHM_RDONLY);
    signal(SIGSEGV, on_segv);
    if (sigsetjmp(jmp, 1))
        printf("read-only attach, write: SIGSEGV\n");
    else {
        ro[0] = 1;
        printf("read-only attach, write: allowed\n");
    }
    shmdt(ro);
    shmctl(id, IPC_RMID, NULL);
    errno = 0;
    shmget(key, 0, 0);
    printf("after IPC_RMID: shmget by key %s\n", strerrorname_np(errno));
    return 0;
}
