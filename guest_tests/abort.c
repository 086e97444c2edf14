// abort() kills the program with SIGABRT (status 134), after flushing nothing more.
// signal: SIGABRT
// qemu: same
#include <stdio.h>
#include <stdlib.h>
int main(void) { puts("about to abort"); fflush(stdout); abort(); }
