/* A mapping threshold the user set stays where it was set, as glibc's MALLOC_MMAP_THRESHOLD_ does:
 * freeing a mapped block does not raise it. (Unset, such a free raises it to the block's size, so
 * that a program cycling big blocks reuses heap memory.)
 * ENV: MY_ALLOC_MMAP_THRESHOLD=131072 */
#include <malloc.h>
#include <string.h>
#include "check.h"

int main(void) {
    char *p = malloc(1 << 20);
    CHECK(p != NULL);
    memset(p, 1, 1 << 20);
    CHECK(mallinfo2().hblks == 1);
    free(p);
    CHECK(mallinfo2().hblks == 0);
    /* Beyond the threshold set, below the block just freed: still a mapping of its own. */
    char *q = malloc(512 << 10);
    CHECK(q != NULL);
    CHECK(mallinfo2().hblks == 1);
    free(q);
    /* Below the threshold: the heap. */
    char *r = malloc(100 << 10);
    CHECK(r != NULL);
    CHECK(mallinfo2().hblks == 0);
    free(r);
    return DONE("mmap_threshold_option");
}
