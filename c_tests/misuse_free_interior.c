/* free of a pointer into the middle of a live block (p + 64 of a 1000-byte block; 16-aligned, so
 * only the header check catches it): the diagnosis names the block it falls in.
 * EXPECT: inside the block at */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(1000), *b = malloc(1000);
    memset(a, 'a', 1000);
    memset(b, 'b', 1000);
    char *volatile p = a + 64;
    free(p); /* the misuse */
    return 0; /* not reached */
}
