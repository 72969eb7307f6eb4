/* free of a heap pointer plus one: misaligned, rejected before anything is read.
 * EXPECT: my_alloc: free(): invalid pointer (misaligned) */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(100);
    memset(a, 'a', 100);
    char *volatile p = a + 1;
    free(p); /* the misuse */
    return 0; /* not reached */
}
