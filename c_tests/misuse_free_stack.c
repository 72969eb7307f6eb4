/* free of the address of a local variable in another function's frame, with a busy heap (the
 * page map tells the stack is not the heap's; nothing is read from the pointer).
 * EXPECT: my_alloc: free(): invalid pointer (not allocated by my_alloc) */
#include "misuse.h"

static void __attribute__((noinline)) release(void *p) { free(p); }

static void __attribute__((noinline)) work(void) {
    struct { long id; char name[48]; } record;
    memset(&record, 0, sizeof record);
    void *volatile p = &record;
    release(p); /* the misuse */
}

int main(void) {
    busy_heap();
    work();
    return 0; /* not reached */
}
