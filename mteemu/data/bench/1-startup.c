// name: start-up (hello world)
// target: 15
#include <stdio.h>
int main(void) { puts("hi"); return 0; }
