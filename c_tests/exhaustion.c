/* Memory exhaustion: with the address space capped (RLIMIT_AS) at current usage + 128 MiB, the
 * program allocates mixed sizes (small, ~50 KB, ~4 MiB) until every kind fails, then checks that
 * - every failure is NULL with errno == ENOMEM (malloc, calloc, realloc, memalign, aligned_alloc,
 *   valloc; posix_memalign returns ENOMEM), impossible sizes included;
 * - a failed realloc leaves the old block in place and intact;
 * - the heap invariant check passes while exhausted;
 * - a second thread allocating and freeing while memory is exhausted (its thread cache may not be
 *   creatable) gets memory or NULL + ENOMEM, and never crashes;
 * - freeing half of the blocks makes allocation succeed again, and after the limit is raised a
 *   64 MiB allocation succeeds;
 * - every surviving block keeps its fill pattern throughout. */
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#define MIB (1024UL * 1024)
#define HEADROOM (128 * MIB)
#define CAPACITY (1 << 20)
#define MUST_FAIL (16 * MIB) /* more than can be left once 4 MiB blocks fail */

struct blk { unsigned char *p; size_t n; unsigned char tag; };

static struct blk *blocks; /* mapped before the limit is set */
static size_t nblocks;

static void fill(unsigned char *p, size_t n, unsigned char tag) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tag + (i >> 4));
}

static int intact(const unsigned char *p, size_t n, unsigned char tag) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag + (i >> 4))) return 0;
    return 1;
}

static void keep(void *p, size_t n) {
    if (nblocks >= CAPACITY) abort();
    unsigned char tag = (unsigned char)(nblocks * 7 + 1);
    fill(p, n, tag);
    blocks[nblocks++] = (struct blk){ p, n, tag };
}

/* VmSize of this process in bytes, read without stdio (which would allocate). */
static size_t vm_size(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) return 0;
    buf[len] = 0;
    char *s = strstr(buf, "VmSize:");
    return s ? strtoul(s + 7, NULL, 10) * 1024 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The second thread: created before the limit, starts allocating once memory is exhausted. */

static pthread_barrier_t start;
static unsigned long helper_got, helper_null, helper_bad;

static void *helper(void *arg) {
    (void)arg;
    pthread_barrier_wait(&start);
    unsigned long long s = 77;
    void *held[32] = { 0 };
    size_t held_n[32] = { 0 };
    for (int op = 0; op < 20000; op++) {
        int i = (int)(rng_next(&s) % 32);
        if (held[i]) {
            if (!intact(held[i], held_n[i], (unsigned char)i)) helper_bad++;
            free(held[i]);
            held[i] = NULL;
            continue;
        }
        unsigned long long r = rng_next(&s) % 100;
        size_t n = r < 70 ? 1 + rng_next(&s) % 500 : r < 95 ? 1000 + rng_next(&s) % 60000 : 2 * MIB;
        errno = 0;
        void *p = (op % 5 == 0) ? calloc(1, n) : malloc(n);
        if (!p) {
            helper_null++;
            if (errno != ENOMEM) helper_bad++;
            continue;
        }
        helper_got++;
        fill(p, n, (unsigned char)i);
        held[i] = p;
        held_n[i] = n;
    }
    for (int i = 0; i < 32; i++)
        if (held[i]) {
            if (!intact(held[i], held_n[i], (unsigned char)i)) helper_bad++;
            free(held[i]);
        }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */

/* Calls that may succeed or fail at exhaustion: a failure must be NULL + ENOMEM. */
static void small_requests(void) {
    void *p;
    errno = 0;
    p = malloc(64);
    CHECK(p || errno == ENOMEM);
    if (p) keep(p, 64);
    errno = 0;
    p = calloc(10, 10);
    CHECK(p || errno == ENOMEM);
    if (p) keep(p, 100);
    errno = 0;
    p = memalign(64, 200);
    CHECK(p ? ((uintptr_t)p & 63) == 0 : errno == ENOMEM);
    if (p) keep(p, 200);
    void *q = NULL;
    int rc = posix_memalign(&q, 256, 300);
    CHECK(rc == 0 ? ((uintptr_t)q & 255) == 0 : rc == ENOMEM);
    if (rc == 0) keep(q, 300);
}

/* Calls that cannot succeed (too big for what is left, or impossible sizes). */
static void must_fail(size_t size) {
    volatile size_t hide = size; /* keeps the compiler from judging the size at compile time */
    size_t n = hide;
    void *p;
    errno = 0; p = malloc(n);
    CHECK(p == NULL && errno == ENOMEM);
    errno = 0; p = calloc(1, n);
    CHECK(p == NULL && errno == ENOMEM);
    errno = 0; p = calloc(n / 4096 + 1, 4096);
    CHECK(p == NULL && errno == ENOMEM);
    errno = 0; p = memalign(4096, n);
    CHECK(p == NULL && errno == ENOMEM);
    errno = 0; p = aligned_alloc(4096, n & ~(size_t)4095);
    CHECK(p == NULL && errno == ENOMEM);
    errno = 0; p = valloc(n);
    CHECK(p == NULL && errno == ENOMEM);
    void *q = (void *)&q;
    CHECK(posix_memalign(&q, 64, n) == ENOMEM);
    /* realloc of a small and of a medium block: NULL + ENOMEM, the old block unchanged */
    for (size_t k = 0; k < nblocks; k++) {
        struct blk *b = &blocks[k];
        if (k != 0 && b->n < 40000) continue; /* the first block (small) and the first medium */
        errno = 0;
        p = realloc(b->p, n);
        CHECK(p == NULL && errno == ENOMEM);
        CHECK(intact(b->p, b->n, b->tag));
        CHECK(malloc_usable_size(b->p) >= b->n);
        if (k != 0) break;
    }
}

int main(void) {
    CHECK(using_my_alloc());
    unsigned long long s = 2024;
    blocks = mmap(NULL, CAPACITY * sizeof *blocks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (blocks == MAP_FAILED) return 1;
    /* Some ordinary work first, and the helper thread (its stack is mapped now). */
    for (int i = 0; i < 1000; i++) free(malloc(1 + i * 13 % 3000));
    pthread_barrier_init(&start, NULL, 2);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, helper, NULL) == 0);
    CHECK(heap_check() == 0);

    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_AS, &old) == 0);
    size_t base = vm_size();
    CHECK(base > 0);
    lim.rlim_cur = base + HEADROOM;
    lim.rlim_max = old.rlim_max;
    CHECK(setrlimit(RLIMIT_AS, &lim) == 0);

    /* Allocate until every kind fails. */
    int failed[3] = { 0, 0, 0 };
    unsigned long got[3] = { 0, 0, 0 }, nulls_wrong_errno = 0;
    for (unsigned long i = 0; !(failed[0] && failed[1] && failed[2]); i++) {
        int kind = (int)(i % 3);
        if (failed[kind]) continue;
        size_t n = kind == 0 ? 1 + rng_next(&s) % 1000
                 : kind == 1 ? 45000 + rng_next(&s) % 10000
                 : 4 * MIB - 8192 + rng_next(&s) % 16384;
        errno = 0;
        void *p = (i % 7 == 0) ? calloc(1, n) : malloc(n);
        if (!p) {
            if (errno != ENOMEM) nulls_wrong_errno++;
            failed[kind] = 1;
            continue;
        }
        got[kind]++;
        keep(p, n);
    }
    CHECK(nulls_wrong_errno == 0);
    CHECK(got[0] > 0 && got[1] > 0 && got[2] > 0);
    size_t used = 0;
    for (size_t k = 0; k < nblocks; k++) used += blocks[k].n;
    CHECK(used > HEADROOM / 2); /* the limit, not something else, stopped us */

    /* Exhausted: the helper thread runs meanwhile. */
    pthread_barrier_wait(&start);
    small_requests();
    must_fail(MUST_FAIL);
    must_fail(SIZE_MAX);
    must_fail(SIZE_MAX - 4096);
    must_fail((size_t)PTRDIFF_MAX + 1);
    volatile size_t half = SIZE_MAX / 2 + 1; /* half * 2 overflows */
    errno = 0;
    CHECK(calloc(half, 2) == NULL && errno == ENOMEM);
    errno = 0;
    CHECK(reallocarray(blocks[0].p, half, 2) == NULL && errno == ENOMEM);
    CHECK(intact(blocks[0].p, blocks[0].n, blocks[0].tag));
    small_requests();
    CHECK(heap_check() == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(helper_bad == 0);
    CHECK(helper_got + helper_null > 0);
    must_fail(MUST_FAIL);
    CHECK(heap_check() == 0);

    /* Free every other block: allocation of every kind succeeds again. */
    size_t live = 0;
    unsigned long damaged = 0;
    for (size_t k = 0; k < nblocks; k++) {
        if (k % 2) {
            if (!intact(blocks[k].p, blocks[k].n, blocks[k].tag)) damaged++;
            free(blocks[k].p);
        } else {
            blocks[live++] = blocks[k];
        }
    }
    CHECK(damaged == 0);
    nblocks = live;
    CHECK(heap_check() == 0);
    size_t again[] = { 100, 50000, 4 * MIB };
    for (int i = 0; i < 3; i++) {
        void *p = malloc(again[i]);
        CHECK(p != NULL);
        if (p) keep(p, again[i]);
    }
    void *q = NULL;
    CHECK(posix_memalign(&q, 4096, 1 * MIB) == 0);
    if (q) keep(q, 1 * MIB);

    /* The limit raised again: a big allocation succeeds. */
    CHECK(setrlimit(RLIMIT_AS, &old) == 0);
    size_t big = 64 * MIB;
    unsigned char *p = malloc(big);
    CHECK(p != NULL);
    if (p) {
        fill(p, big, 0x3c);
        CHECK(intact(p, big, 0x3c));
        free(p);
    }

    /* Every survivor intact, then all freed. */
    unsigned long bad = 0;
    for (size_t k = 0; k < nblocks; k++) {
        if (!intact(blocks[k].p, blocks[k].n, blocks[k].tag)) bad++;
        free(blocks[k].p);
    }
    CHECK(bad == 0);
    CHECK(heap_check() == 0);
    printf("exhaustion: %lu small, %lu medium, %lu large before exhaustion (%zu MiB); helper thread: %lu allocations, %lu NULL\n",
           got[0], got[1], got[2], used / MIB, helper_got, helper_null);
    return DONE("exhaustion");
}
