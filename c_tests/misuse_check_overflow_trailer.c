/* Checking mode: a one-byte write past the requested size of a 24-byte block lands on the sealed
 * size trailer that follows it; free verifies the trailer and reports the overflow.
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: free(): heap buffer overflow */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(24), *b = malloc(24);
    memset(a, 'a', 24);
    memset(b, 'b', 24);
    volatile char *va = a;
    va[24] = 'X'; /* off by one */
    free(b);
    free(a); /* detected here */
    return 0; /* not reached */
}
