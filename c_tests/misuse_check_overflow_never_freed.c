/* Checking mode: an overflow of a block that is never freed is found by the scan of the live
 * blocks' canaries at exit.
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: exit(): heap buffer overflow past the end of */
#include "misuse.h"

int main(void) {
    busy_heap();
    volatile char *volatile p = malloc(20);
    p[20] = 'W'; /* the overflow, into the canary; the block is never freed */
    return 0;    /* detected at exit */
}
