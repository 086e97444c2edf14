/* The tag-check mode is per thread (prctl sets the calling thread's SCTLR_EL1.TCF0):
   a thread that turns checking off does not turn it off for the others, and a new
   thread inherits its creator's mode. */
#include "mte.h"
#include <pthread.h>
// build: -pthread
// qemu: same

static char *buf;
static pthread_barrier_t barrier;

static void *unchecked_worker(void *arg) {
    (void)arg;
    printf("worker inherits: %#lx\n", (unsigned long)prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0));
    mte_enable(PR_MTE_TCF_NONE, ALL_TAGS);
    for (int i = 0; i < 1000; i++) {
        ((volatile char *)set_tag(buf, 9))[i % 64] = 1;   /* wrong tag, unchecked here */
        if (i == 500)
            pthread_barrier_wait(&barrier);               /* let main run in between */
    }
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    mte_enable(PR_MTE_TCF_SYNC, ALL_TAGS);
    buf = tagged_mmap(4096);
    tag_range(set_tag(buf, 3), 64);
    catch_segv(0);
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_t t;
    pthread_create(&t, NULL, unchecked_worker, NULL);
    pthread_barrier_wait(&barrier);
    if (!FAULTED())
        ((volatile char *)set_tag(buf, 9))[0] = 2;
    printf("main, still sync: %s\n", fault_code ? code_name(fault_code) : "no signal");
    pthread_join(t, NULL);
    printf("main after join: %#lx\n", (unsigned long)prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0));
    return 0;
}
