// argv and the environment (-E NAME=VALUE, -U NAME).
// args: one "two words"
// env: MTEEMU_TEST_VAR=forty two
// qemu: same
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    const char *v = getenv("MTEEMU_TEST_VAR"), *u = getenv("MTEEMU_TEST_UNSET");
    printf("MTEEMU_TEST_VAR=%s\nMTEEMU_TEST_UNSET=%s\n", v ? v : "(unset)", u ? u : "(unset)");
    return 0;
}
