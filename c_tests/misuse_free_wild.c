/* free of a wild, 16-aligned address that was never mapped (1 TiB): rejected without being read.
 * EXPECT: my_alloc: free(): invalid pointer (not allocated by my_alloc) */
#include "misuse.h"

int main(void) {
    busy_heap();
    void *volatile p = (void *)(uintptr_t)0x10000000000ULL;
    free(p); /* the misuse */
    return 0; /* not reached */
}
