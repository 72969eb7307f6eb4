/* A tiny check helper shared by the C tests: CHECK(cond) counts and reports, DONE() summarises. */
#ifndef MY_ALLOC_CHECK_H
#define MY_ALLOC_CHECK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>

static unsigned long checks_run __attribute__((unused)), checks_failed __attribute__((unused));

/* The bytes of metadata before every user pointer (an in-use block has a header and no footer;
 * see DESIGN.md, "The block"): a block's size is its usable size plus this, and the next block's
 * user pointer follows a block's last usable byte by this much. */
#define BLOCK_HEADER_BYTES 8

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        checks_run++;                                                                    \
        if (!(cond)) {                                                                   \
            checks_failed++;                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

/* Prints "<name>: N checks, all passed" (or the failure count) and returns the exit status. */
#define DONE(name)                                                                       \
    (printf("%s: %lu checks, %s\n", (name), checks_run,                                 \
            checks_failed ? "FAILED" : "all passed"),                                    \
     checks_failed ? 1 : 0)

/* Deterministic xorshift64* so every run sees the same sequence. */
static inline unsigned long long rng_next(unsigned long long *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

#endif

#include <dlfcn.h>

/* Whether my_alloc serves this process (linked or preloaded): its own extra is then visible. */
static inline int using_my_alloc(void) { return dlsym(RTLD_DEFAULT, "my_alloc_check_heap") != NULL; }

/* Runs my_alloc's heap invariant check; 0 when sound (or -2 when my_alloc is not loaded). */
static inline int heap_check(void) {
    int (*f)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "my_alloc_check_heap");
    return f ? f() : -2;
}
