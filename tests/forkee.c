/* A guest for tests/test_forkserver.py: what it does is named by argv[1].
 *   print CODE  - its arguments and $WHO on stdout, a line on stderr, what stdin gives
 *                 (nothing: /dev/null), exit status CODE
 *   segv        - a null store (killed by SIGSEGV)
 *   spin        - forever
 * Built by tests/conftest.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "segv"))
        *(volatile int *)0 = 1;
    if (argc > 1 && !strcmp(argv[1], "spin"))
        for (;;)
            ;
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    const char *who = getenv("WHO");
    printf("WHO=%s\n", who ? who : "(unset)");
    char buf[16];
    printf("stdin gave %zd bytes\n", read(0, buf, sizeof buf));
    fprintf(stderr, "to stderr\n");
    return argc > 2 ? atoi(argv[2]) : 0;
}
