/* A guest for tests/test_oracle.py: what it does is named by argv[1].
 *   bytes    - every byte value 0..255 on stdout, and 255..0 on stderr
 *   big      - 3 MiB of a counting pattern on stdout
 *   echo     - stdin to stdout, byte for byte
 *   exit N   - exit status N
 *   segv     - a null store
 *   spin     - forever
 *   poweroff - reboot(RB_POWER_OFF): the guest machine ends mid-batch
 *   fds      - the descriptors it was started with (fstat of 0..63)
 *   granules - the granules of four PROT_MTE pages tagged 1 + (granule % 15), then each read
 *              back with LDG and loaded in sync mode with its own tag and with another: how
 *              many behave (QEMU before 8.0 gives even and odd granules one tag)
 * Built by tests/conftest.py. */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

static sigjmp_buf jump;
static void on_segv(int sig) { (void)sig; siglongjmp(jump, 1); }

static int loads_ok(volatile char *p) {
    if (sigsetjmp(jump, 1))
        return 0;
    (void)*p;
    return 1;
}

static char *with_tag(char *p, unsigned long tag) {
    return (char *)(((unsigned long)p & ~(0xfUL << 56)) | tag << 56);
}

int main(int argc, char **argv) {
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "bytes")) {
        unsigned char b[256];
        for (int i = 0; i < 256; i++)
            b[i] = (unsigned char)i;
        fwrite(b, 1, 256, stdout);
        for (int i = 0; i < 256; i++)
            b[i] = (unsigned char)(255 - i);
        fwrite(b, 1, 256, stderr);
    } else if (!strcmp(what, "big")) {
        static unsigned char b[3 << 20];
        for (size_t i = 0; i < sizeof b; i++)
            b[i] = (unsigned char)(i * 7 + i / 4096);
        fwrite(b, 1, sizeof b, stdout);
    } else if (!strcmp(what, "echo")) {
        char b[4096];
        size_t n;
        while ((n = fread(b, 1, sizeof b, stdin)) > 0)
            fwrite(b, 1, n, stdout);
    } else if (!strcmp(what, "exit")) {
        return atoi(argv[2]);
    } else if (!strcmp(what, "segv")) {
        *(volatile int *)0 = 1;
    } else if (!strcmp(what, "spin")) {
        for (;;)
            ;
    } else if (!strcmp(what, "fds")) {
        struct stat st;
        printf("open fds:");
        for (int fd = 0; fd < 64; fd++)
            if (fstat(fd, &st) == 0)
                printf(" %d", fd);
        printf("\n");
    } else if (!strcmp(what, "poweroff")) {
        sync();
        reboot(RB_POWER_OFF);
        return 1;
    } else if (!strcmp(what, "granules")) {
        enum { GRANULES = 4 * 4096 / 16 };
        char *page = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE | 0x20 /* PROT_MTE */, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED || prctl(55, 1UL | 2UL | (0xfffeUL << 3), 0, 0, 0)) {   /* sync, tags 1-15 */
            printf("no MTE\n");
            return 1;
        }
        for (int g = 0; g < GRANULES; g++) {
            char *p = with_tag(page + 16 * g, 1 + g % 15);
            __asm__ volatile("stg %0, [%0]" : : "r"(p) : "memory");
        }
        signal(SIGSEGV, on_segv);
        int read_back = 0, own = 0, other = 0;
        for (int g = 0; g < GRANULES; g++) {
            char *p = page + 16 * g;
            __asm__ volatile("ldg %0, [%0]" : "+r"(p));
            read_back += ((unsigned long)p >> 56 & 0xf) == 1UL + g % 15;
            own += loads_ok(with_tag(page + 16 * g, 1 + g % 15));
            other += !loads_ok(with_tag(page + 16 * g, 1 + (g + 1) % 15));
        }
        printf("tags read back: %d/%d, own tag loads: %d, other tag faults: %d\n", read_back, GRANULES, own, other);
    }
    return 0;
}
