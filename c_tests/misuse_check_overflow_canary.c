/* Checking mode: a write 3 bytes past the end of a 20-byte block lands in the canary bytes between
 * the requested size and the trailer (inside the block's rounding slack, which the default mode
 * cannot see); free reports the overflow and its offset.
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: free(): heap buffer overflow past the end of */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(20), *b = malloc(20);
    memset(a, 'a', 20);
    memset(b, 'b', 20);
    volatile char *va = a;
    va[20] = 'X'; /* writes the 3 bytes past the end */
    va[21] = 'Y';
    va[22] = 'Z';
    free(b);
    free(a); /* detected here */
    return 0; /* not reached */
}
