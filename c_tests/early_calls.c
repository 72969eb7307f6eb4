/* Allocation before my_alloc's constructor has run: a constructor with a high priority runs
 * first when the library is linked statically (ld.so and other libraries' constructors call
 * malloc that early too). Every entry point must work there, and threads started that early
 * must be able to allocate. */
#include "check.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

static int early_ok = 1, early_ran;

static void *early_thread(void *arg) {
    (void)arg;
    void *p = malloc(100);
    if (p) memset(p, 1, 100);
    free(p);
    return p;
}

__attribute__((constructor(101))) static void before_everything(void) {
    early_ran = 1;
    char *a = malloc(10), *b = calloc(100, 10), *c = NULL, *d = aligned_alloc(64, 128);
    if (!a || !b || !d || ((uintptr_t)d & 63)) early_ok = 0;
    for (int i = 0; i < 1000; i++) if (b && b[i]) early_ok = 0;
    if (posix_memalign((void **)&c, 256, 1000) != 0 || ((uintptr_t)c & 255)) early_ok = 0;
    a = realloc(a, 100000);
    if (!a) early_ok = 0;
    if (malloc_usable_size(a) < 100000) early_ok = 0;
    char *big = malloc(8 << 20);
    if (!big) early_ok = 0; else big[(8 << 20) - 1] = 1;
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, early_thread, NULL) != 0 || pthread_join(t, &r) != 0 || !r) early_ok = 0;
    free(a); free(b); free(c); free(d); free(big);
}

int main(void) {
    CHECK(using_my_alloc());
    CHECK(early_ran);
    CHECK(early_ok);
    CHECK(heap_check() == 0);
    return DONE("early_calls");
}
