/* A write of 8 bytes just before a block (as a buffer underflow would do) changes its header;
 * the header's keyed check catches it on free, and the block is identified as overwritten (the
 * pointer is where a block starts).
 * EXPECT: my_alloc: free(): corrupted block header (overwritten) at */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(200), *b = malloc(200), *c = malloc(200);
    memset(a, 'a', 200);
    memset(b, 'b', 200);
    memset(c, 'c', 200);
    volatile uint64_t *w = (volatile uint64_t *)b;
    w[-1] ^= 0x100; /* the underflow */
    free(a);
    free(b); /* detected here */
    free(c);
    return 0; /* not reached */
}
