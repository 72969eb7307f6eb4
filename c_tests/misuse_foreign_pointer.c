/* A pointer the allocator never handed out (here, the address of a local array) is recognised
 * and rejected with a diagnosis, not trusted.
 * EXPECT: my_alloc: free(): invalid pointer (not allocated by my_alloc) */
#include "check.h"

int main(void) {
    char local[64];
    void *volatile p = local + 16;
    free(malloc(10)); /* make sure the heap exists */
    free(p);
    return 0; /* not reached: free aborts */
}
