// Compaction: memory is filled and then every other page given back, so there is plenty
// of free memory but all of it in single pages; every new thread needs a 16 KiB physically
// contiguous kernel stack (an order-2 unmovable allocation; 128 threads alive at once),
// which only compaction — migrating movable pages out of the way — can provide. The
// threads run; the data moved by compaction is intact.
// board: ../../dts/small-v3.dts
// build: -pthread
// variant cma: --tag-storage-policy cma
// | threads ran: 128
// | compaction ran: yes
// | data survived compaction: yes
// qemu: differs: it has no physical memory model
#include <pthread.h>
#include "mm.h"

enum { THREADS = 128 };

static pthread_barrier_t all_started;

/* Fill until ordinary memory is down to its reserve (less than 2.5 MiB free in all). */
static int memory_full(void) { return meminfo_kb("MemFree") < 2560; }

static void *worker(void *arg) {
    pthread_barrier_wait(&all_started);     /* every thread (and its kernel stack) alive at once */
    return arg;
}

int main(void) {
    fill_until(memory_full, 80);
    for (int i = 0; i < nchunks; i++)            /* every other page back: free, but fragmented */
        for (unsigned long p = PAGE; p < MiB; p += 2 * PAGE)
            madvise(chunks[i] + p, PAGE, MADV_DONTNEED);
    pthread_t t[THREADS];
    pthread_barrier_init(&all_started, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(long)(i + 1)))
            return 97;
    pthread_barrier_wait(&all_started);
    int ran = 0;
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        ran += ret == (void *)(long)(i + 1);
    }
    printf("threads ran: %d\n", ran);
    printf("compaction ran: %s\n", vmstat("compact_stall") > 0 ? "yes" : "no");
    int ok = 1;
    for (int i = 0; i < nchunks; i++)
        for (unsigned long p = 0; p < MiB; p += 2 * PAGE)
            ok &= page_ok(chunks[i] + p, (unsigned long)i << 8 | p / PAGE);
    printf("data survived compaction: %s\n", ok ? "yes" : "no");
    return 0;
}
