/* free of the address of a global variable (in the program's data segment, which lies near the
 * sbrk heap): rejected by the page map.
 * EXPECT: my_alloc: free(): invalid pointer (not allocated by my_alloc) */
#include "misuse.h"

static char table[4096] __attribute__((aligned(16)));

int main(void) {
    busy_heap();
    memset(table, 1, sizeof table);
    void *volatile p = table + 256;
    free(p); /* the misuse */
    return 0; /* not reached */
}
