/* Checking mode: malloc(0) gets a trailer like any block; a write into it is found when it is
 * freed.
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: free(): heap buffer overflow */
#include "misuse.h"

int main(void) {
    busy_heap();
    volatile char *volatile p = malloc(0);
    p[0] = 'W'; /* the write into a block of 0 bytes */
    free((void *)p);
    return 0; /* not reached */
}
