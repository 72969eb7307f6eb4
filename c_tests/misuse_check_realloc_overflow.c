/* Checking mode: an overflow past the end of a block is detected when the block is passed to
 * realloc (which verifies the trailer before copying).
 * ENV: MY_ALLOC_CHECK=1
 * EXPECT: my_alloc: realloc(): heap buffer overflow */
#include "misuse.h"

int main(void) {
    busy_heap();
    char *a = malloc(50), *b = malloc(50);
    memset(a, 'a', 50);
    memset(b, 'b', 50);
    volatile char *va = a;
    for (int k = 50; k < 58; k++) va[k] = 'X'; /* 8 bytes past the end */
    char *q = realloc(a, 500); /* detected here */
    free(q);
    free(b);
    return 0; /* not reached */
}
