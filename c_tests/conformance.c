/* Conformance of every exported function against glibc's documented behaviour: alignment,
 * usable sizes, non-overlap, zeroing, realloc semantics, errno on failure, the aligned
 * allocators' argument checks, the sized frees, the original my_alloc names, the __libc_*
 * aliases, malloc_trim/malloc_stats, and a long randomized mix with content verification.
 *
 * The functions glibc does not let a program link against (cfree is a compat symbol, free_sized
 * is not in glibc 2.36) and my_alloc's own names (absent from the plain LD_PRELOAD build) are
 * looked up with dlsym, typed from my_alloc.h where it declares them. */
#include "check.h"
#include "my_alloc.h"

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

static __typeof__(my_alloc) *f_my_alloc;
static __typeof__(freee) *f_freee;
static __typeof__(call_oc) *f_call_oc;
static __typeof__(reall_oc) *f_reall_oc;
static __typeof__(my_alloc_check_heap) *f_check_heap;
static void (*f_cfree)(void *);
static void (*f_free_sized)(void *, size_t);
static void (*f_free_aligned_sized)(void *, size_t, size_t);

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define PAGE_SIZE 4096
#define ERRNO_SENTINEL 12345
#define IS_ALIGNED(p, a) (((uintptr_t)(p) & ((uintptr_t)(a) - 1)) == 0)

/* Hides a constant from the compiler, which would otherwise reject (-Walloc-size-larger-than,
 * alignment attributes) the deliberately impossible arguments this test passes. */
static size_t hide(size_t x) {
    volatile size_t v = x;
    return v;
}

/* Same shared object (or executable, when linked statically) as my_alloc_check_heap? */
static int from_my_alloc(void *fn) {
    Dl_info a, b;
    return fn && dladdr(fn, &a) && dladdr((void *)f_check_heap, &b) && a.dli_fbase == b.dli_fbase;
}

/* ---- content patterns ------------------------------------------------------------------------
 * A block is filled with one 8-byte word derived from its id, repeated. Checking is two memcmp
 * calls: the first word, and the block against itself shifted by 8 (which holds exactly when the
 * whole block repeats that word). Distinct ids make any overlap between blocks visible. */

static uint64_t pattern_word(uint64_t id) { return (id + 1) * 0x9E3779B97F4A7C15ULL ^ 0x5A5A5A5A5A5A5A5AULL; }

static void fill(void *p, size_t n, uint64_t id) {
    unsigned char *b = p;
    uint64_t w = pattern_word(id);
    if (n <= 8) {
        memcpy(b, &w, n);
        return;
    }
    memcpy(b, &w, 8);
    for (size_t done = 8; done < n;) {
        size_t c = done < n - done ? done : n - done;
        memcpy(b + done, b, c);
        done += c;
    }
}

static int intact(const void *p, size_t n, uint64_t id) {
    const unsigned char *b = p;
    uint64_t w = pattern_word(id);
    if (n <= 8) return memcmp(b, &w, n) == 0;
    return memcmp(b, &w, 8) == 0 && memcmp(b, b + 8, n - 8) == 0;
}

static int all_zero(const void *p, size_t n) {
    const unsigned char *b = p;
    return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

/* Sizes no allocator can serve: beyond PTRDIFF_MAX (glibc refuses those outright), or below it
 * but far larger than any address space (the mapping itself fails). */
static const size_t impossible[] = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - PAGE_SIZE, SIZE_MAX / 2 + 1 /* PTRDIFF_MAX + 1 */,
    (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX / 4,
};
#define N_IMPOSSIBLE (sizeof impossible / sizeof impossible[0])

/* Checks that an allocation call returned NULL with the expected errno; frees any block it
 * wrongly returned. `arg` identifies the case in the failure message. */
#define EXPECT_FAIL(call, err, arg)                                                                 \
    do {                                                                                           \
        errno = 0;                                                                                 \
        void *r_ = (call);                                                                         \
        int e_ = errno;                                                                            \
        CHECK(r_ == NULL && e_ == (err));                                                          \
        if (r_ != NULL || e_ != (err)) {                                                           \
            fprintf(stderr, "  %s with %zu: got %p, errno %d\n", #call, (size_t)(arg), r_, e_);   \
            free(r_);                                                                              \
        }                                                                                          \
    } while (0)

/* After a failure path: the heap is sound and ordinary allocation still works. */
static void still_works(void) {
    CHECK(heap_check() == 0);
    char *p = malloc(100);
    CHECK(p != NULL);
    if (p) {
        fill(p, 100, 1);
        CHECK(intact(p, 100, 1));
    }
    free(p);
}

/* ---- malloc: alignment, usable size, malloc(0) ---------------------------------------------- */

/* Allocates every size in [0, max] with `alloc` (keeping a ring of live blocks so that sizes
 * interleave in the heap) and checks alignment and usable size; every 7th block is filled
 * completely and verified when freed, the others have their first and last usable byte written. */
static void sweep_sizes(void *(*alloc)(size_t), size_t max, size_t step) {
    enum { RING = 32 };
    void *ring[RING] = {0};
    size_t ring_use[RING] = {0};
    unsigned long nulls = 0, misaligned = 0, short_usable = 0, clobbered = 0;
    size_t k = 0;
    for (size_t n = 0; n <= max; n += step, k++) {
        size_t r = k % RING;
        if (ring[r]) {
            if (!intact(ring[r], ring_use[r], r)) clobbered++;
            free(ring[r]);
            ring[r] = NULL;
        }
        unsigned char *p = alloc(n);
        if (!p) { nulls++; continue; }
        if (!IS_ALIGNED(p, 16)) misaligned++;
        size_t use = malloc_usable_size(p);
        if (use < n) short_usable++;
        if (k % 7 == 0) {
            fill(p, use, r);
            ring[r] = p;
            ring_use[r] = use;
        } else {
            if (use) { p[0] = 1; p[use - 1] = 2; }
            free(p);
        }
    }
    for (size_t r = 0; r < RING; r++) {
        if (ring[r] && !intact(ring[r], ring_use[r], r)) clobbered++;
        free(ring[r]);
    }
    CHECK(nulls == 0);
    CHECK(misaligned == 0);
    CHECK(short_usable == 0);
    CHECK(clobbered == 0);
}

static void *via_malloc(size_t n) { return malloc(n); }
static void *via_calloc(size_t n) { return calloc(1, n); }
static void *via_realloc_null(size_t n) { return realloc(NULL, n); }
static void *via_my_alloc(size_t n) { return f_my_alloc(n); }
static void *via_libc_malloc(size_t n) { return __libc_malloc(n); }

static void test_malloc_sizes(void) {
    sweep_sizes(via_malloc, 70000, 1);
    sweep_sizes(via_calloc, 70000, 13);
    sweep_sizes(via_realloc_null, 70000, 29);

    /* Sizes around every power of two up to 64 MiB (class, quick-limit and mmap boundaries),
     * written over their whole usable size. */
    for (int k = 5; k <= 26; k++) {
        for (int d = -17; d <= 17; d += 17) {
            size_t n = ((size_t)1 << k) + d;
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            if (!p) continue;
            CHECK(IS_ALIGNED(p, 16));
            size_t use = malloc_usable_size(p);
            CHECK(use >= n);
            fill(p, use, k);
            CHECK(intact(p, use, k));
            free(p);
        }
    }
    CHECK(heap_check() == 0);
}

static void test_malloc_zero(void) {
    /* malloc(0) gives distinct, non-NULL, freeable pointers (glibc: a minimal chunk). */
    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL);
    CHECK(a != b);
    CHECK(IS_ALIGNED(a, 16) && IS_ALIGNED(b, 16));
    free(a);
    free(b);
    CHECK(malloc_usable_size(NULL) == 0);
    CHECK(heap_check() == 0);
}

/* ---- impossible sizes -------------------------------------------------------------------------- */

static void test_impossible_sizes(void) {
    for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
        size_t n = hide(impossible[i]);
        EXPECT_FAIL(malloc(n), ENOMEM, n);
        EXPECT_FAIL(calloc(1, n), ENOMEM, n);
        EXPECT_FAIL(calloc(n, 1), ENOMEM, n);
        EXPECT_FAIL(realloc(NULL, n), ENOMEM, n);
        EXPECT_FAIL(reallocarray(NULL, n, 1), ENOMEM, n);
        EXPECT_FAIL(aligned_alloc(64, n), ENOMEM, n);
        EXPECT_FAIL(aligned_alloc(8192, n), ENOMEM, n);
        EXPECT_FAIL(memalign(64, n), ENOMEM, n);
        EXPECT_FAIL(memalign(1 << 20, n), ENOMEM, n);
        EXPECT_FAIL(valloc(n), ENOMEM, n);
        EXPECT_FAIL(pvalloc(n), ENOMEM, n);
        still_works();
    }
    /* nmemb * size overflows (calloc, reallocarray), and products that fit but are impossible. */
    static const size_t pairs[][2] = {
        {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
        {SIZE_MAX, SIZE_MAX}, {65537, (SIZE_MAX / 65536)}, {(size_t)1 << 31, (size_t)1 << 31},
        {(size_t)PTRDIFF_MAX / 8, 2},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        size_t a = hide(pairs[i][0]), b = hide(pairs[i][1]);
        EXPECT_FAIL(calloc(a, b), ENOMEM, i);
        EXPECT_FAIL(reallocarray(NULL, a, b), ENOMEM, i);
        still_works();
    }
}

/* ---- calloc -------------------------------------------------------------------------------------- */

static void test_calloc(void) {
    /* A dirty block freed and asked for again at the same size must come back zeroed, in every
     * size range (thread cache, quick lists, coalescing heap, mapped). */
    static const size_t sizes[] = {1, 8, 24, 100, 1000, 4000, 20000, 32000, 33000, 50000,
                                   100000, 250000, 300000, 2 * MiB, 5 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        for (int round = 0; round < 3; round++) {
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            if (!p) continue;
            memset(p, 0xAA, malloc_usable_size(p));
            free(p);
            unsigned char *q = round == 2 ? calloc(n / 4 ? n / 4 : 1, n / 4 ? 4 : n) : calloc(1, n);
            CHECK(q != NULL);
            if (!q) continue;
            CHECK(IS_ALIGNED(q, 16));
            CHECK(malloc_usable_size(q) >= n);
            CHECK(all_zero(q, n));
            free(q);
        }
    }
    /* A big calloc after the heap has been dirtied is all zero, over several MiB. */
    unsigned char *big = calloc(3, 4 * MiB);
    CHECK(big != NULL);
    if (big) {
        CHECK(all_zero(big, 12 * MiB));
        free(big);
    }
    /* calloc(0, n) and calloc(n, 0) behave as malloc(0). */
    void *z1 = calloc(0, 10), *z2 = calloc(10, 0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    free(z1);
    free(z2);
    CHECK(heap_check() == 0);
}

/* ---- realloc ---------------------------------------------------------------------------------------- */

/* Walks one block through a sequence of sizes with `re`, checking at every step that the common
 * prefix survived, then refilling it. */
static void realloc_chain(void *(*re)(void *, size_t), const size_t *sizes, size_t count, uint64_t id) {
    unsigned char *p = re(NULL, sizes[0]);
    CHECK(p != NULL);
    if (!p) return;
    fill(p, sizes[0], id);
    for (size_t i = 1; i < count; i++) {
        size_t old = sizes[i - 1], n = sizes[i];
        unsigned char *q = re(p, n);
        CHECK(q != NULL);
        if (!q) break;
        p = q;
        int ok = IS_ALIGNED(p, 16) && malloc_usable_size(p) >= n && intact(p, old < n ? old : n, id);
        CHECK(ok);
        if (!ok)
            fprintf(stderr, "  realloc step %zu -> %zu: %p, usable %zu\n", old, n, (void *)p, malloc_usable_size(p));
        id++;
        fill(p, n, id);
    }
    free(p);
}

static void *re_realloc(void *p, size_t n) { return realloc(p, n); }
static void *re_reall_oc(void *p, size_t n) { return f_reall_oc(p, n); }
static void *re_libc_realloc(void *p, size_t n) { return __libc_realloc(p, n); }
/* reallocarray with a real product when the size allows one (nmemb * 16 == n). */
static void *re_reallocarray(void *p, size_t n) { return n % 16 ? reallocarray(p, n, 1) : reallocarray(p, n / 16, 16); }

static const size_t chain[] = {10, 100 * KiB, 8 * MiB, 20, 1, 40000, 300000, 16 * MiB, 4 * MiB,
                               200 * KiB, 100 * KiB, 40 * KiB, 33000, 32000, 100, 1};
#define CHAIN_LEN (sizeof chain / sizeof chain[0])

/* Failing realloc leaves the block as it was: same contents, still freeable. */
static void realloc_failure(void *(*re)(void *, size_t), size_t n) {
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    if (!p) return;
    fill(p, n, 77);
    for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
        errno = 0;
        void *q = re(p, hide(impossible[i]));
        CHECK(q == NULL && errno == ENOMEM);
        if (q) { p = q; break; }
        CHECK(intact(p, n, 77));
    }
    free(p);
    still_works();
}

static void test_realloc(void) {
    /* realloc(NULL, n) is malloc(n). */
    static const size_t fresh[] = {0, 1, 100, 50000, 1 * MiB};
    for (size_t i = 0; i < sizeof fresh / sizeof fresh[0]; i++) {
        unsigned char *p = realloc(NULL, fresh[i]);
        CHECK(p != NULL && IS_ALIGNED(p, 16));
        if (!p) continue;
        CHECK(malloc_usable_size(p) >= fresh[i]);
        fill(p, fresh[i], i);
        free(p);
    }
    /* realloc(p, 0) frees p and returns NULL (glibc), at every size range. */
    static const size_t live[] = {1, 100, 50000, 8 * MiB};
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
        void *p = malloc(live[i]);
        CHECK(p != NULL);
        CHECK(realloc(p, 0) == NULL);
        CHECK(heap_check() == 0);
    }

    realloc_chain(re_realloc, chain, CHAIN_LEN, 1000);
    realloc_chain(re_reallocarray, chain, CHAIN_LEN, 2000);

    /* One byte at a time up, then down: every in-place grow/shrink path keeps the prefix. */
    unsigned char *p = malloc(1);
    CHECK(p != NULL);
    unsigned long lost = 0, nulls = 0;
    if (p) {
        fill(p, 1, 5);
        for (size_t n = 2; n <= 6000; n++) {
            unsigned char *q = realloc(p, n);
            if (!q) { nulls++; break; }
            p = q;
            if (!intact(p, n - 1, 5)) lost++;
            fill(p, n, 5);
        }
        for (size_t n = 5999; n >= 1 && !nulls; n -= 3) {
            unsigned char *q = realloc(p, n);
            if (!q) { nulls++; break; }
            p = q;
            if (!intact(p, n, 5)) lost++;
            if (n < 3) break;
        }
        free(p);
    }
    CHECK(nulls == 0);
    CHECK(lost == 0);

    /* Growing into a freed right neighbour, and shrinking a big heap block. */
    unsigned char *a = malloc(40000), *b = malloc(40000), *guard = malloc(100);
    CHECK(a && b && guard);
    if (a && b && guard) {
        fill(a, 40000, 6);
        free(b);
        unsigned char *a2 = realloc(a, 70000);
        CHECK(a2 != NULL);
        if (a2) {
            CHECK(intact(a2, 40000, 6));
            unsigned char *a3 = realloc(a2, 50);
            CHECK(a3 != NULL);
            if (a3) { CHECK(intact(a3, 50, 6)); a2 = a3; }
            free(a2);
        }
        free(guard);
    }

    /* Resizing within the usable size keeps everything usable. */
    unsigned char *u = malloc(100);
    CHECK(u != NULL);
    if (u) {
        size_t use = malloc_usable_size(u);
        fill(u, use, 8);
        unsigned char *v = realloc(u, use);
        CHECK(v != NULL);
        if (v) { CHECK(intact(v, use, 8)); u = v; }
        free(u);
    }

    /* realloc of aligned blocks keeps their contents. */
    unsigned char *m = memalign(4096, 5000);
    CHECK(m != NULL);
    if (m) {
        fill(m, 5000, 9);
        unsigned char *m2 = realloc(m, 100000);
        CHECK(m2 != NULL);
        if (m2) { CHECK(intact(m2, 5000, 9)); m = m2; }
        free(m);
    }
    /* A mapped block whose user pointer is not at the start of its mapping (large alignment):
     * grown, shrunk a little, then shrunk into the heap. */
    static const size_t aligned_steps[] = {2 * MiB, 6 * MiB, 5 * MiB, 1000};
    m = memalign(MiB, aligned_steps[0]);
    CHECK(m != NULL && IS_ALIGNED(m, MiB));
    if (m) {
        fill(m, aligned_steps[0], 10);
        for (size_t i = 1; i < sizeof aligned_steps / sizeof aligned_steps[0]; i++) {
            size_t old = aligned_steps[i - 1], n = aligned_steps[i];
            unsigned char *m2 = realloc(m, n);
            CHECK(m2 != NULL);
            if (!m2) break;
            m = m2;
            CHECK(malloc_usable_size(m) >= n);
            CHECK(intact(m, old < n ? old : n, 10 + i - 1));
            fill(m, n, 10 + i);
        }
        free(m);
    }

    realloc_failure(re_realloc, 10);
    realloc_failure(re_realloc, 50000);
    realloc_failure(re_realloc, 8 * MiB);
    CHECK(heap_check() == 0);
}

static void test_reallocarray(void) {
    unsigned char *p = reallocarray(NULL, 10, 10);
    CHECK(p != NULL && IS_ALIGNED(p, 16));
    if (!p) return;
    CHECK(malloc_usable_size(p) >= 100);
    fill(p, 100, 11);
    /* Overflowing products fail with ENOMEM and leave the block alone. */
    static const size_t over[][2] = {{SIZE_MAX, 2}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
                                     {2, SIZE_MAX}, {SIZE_MAX, SIZE_MAX}};
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        errno = 0;
        void *q = reallocarray(p, hide(over[i][0]), hide(over[i][1]));
        CHECK(q == NULL && errno == ENOMEM);
        if (q) { p = q; break; }
        CHECK(intact(p, 100, 11));
    }
    unsigned char *q = reallocarray(p, 1000, 8);
    CHECK(q != NULL);
    if (q) {
        p = q;
        CHECK(malloc_usable_size(p) >= 8000);
        CHECK(intact(p, 100, 11));
    }
    /* A zero product is realloc(p, 0): the block is freed, NULL comes back. */
    q = reallocarray(p, 0, 8);
    CHECK(q == NULL);
    free(q);
    realloc_failure(re_reallocarray, 100);
    CHECK(heap_check() == 0);
}

/* ---- aligned allocation --------------------------------------------------------------------------- */

static void test_posix_memalign(void) {
    static char untouched;
    void *const sentinel = &untouched;
    /* Not a power of two, or not a multiple of sizeof(void *): EINVAL, *memptr and errno alone. */
    static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 40, 48, 100, 4097, SIZE_MAX, SIZE_MAX / 2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *p = sentinel;
        errno = ERRNO_SENTINEL;
        int rc = posix_memalign(&p, hide(bad[i]), 16);
        CHECK(rc == EINVAL);
        CHECK(p == sentinel);
        CHECK(errno == ERRNO_SENTINEL);
        if (rc == 0) free(p);
    }
    /* Every valid alignment from 8 to 4 MiB, with sizes below, at and above it. */
    enum { MAXKEEP = 20 * 8 };
    void *keep[MAXKEEP];
    size_t nkeep = 0;
    for (size_t align = 8; align <= ((size_t)1 << 22); align <<= 1) {
        size_t sizes[] = {0, 1, align / 2, align, align + 1, 3000, 100000};
        for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
            void *p = sentinel;
            errno = ERRNO_SENTINEL;
            int rc = posix_memalign(&p, align, sizes[j]);
            CHECK(rc == 0);
            CHECK(errno == ERRNO_SENTINEL);
            if (rc != 0) continue;
            CHECK(p != sentinel && p != NULL);
            CHECK(IS_ALIGNED(p, align) && IS_ALIGNED(p, 16));
            CHECK(malloc_usable_size(p) >= sizes[j]);
            fill(p, malloc_usable_size(p), align + j);
            if (nkeep < MAXKEEP) keep[nkeep++] = p; else free(p);
        }
    }
    CHECK(heap_check() == 0);
    for (size_t i = 0; i < nkeep; i++) free(keep[i]);
    /* Impossible sizes (and the largest alignment with any size): ENOMEM, *memptr alone. */
    for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
        void *p = sentinel;
        int rc = posix_memalign(&p, 64, hide(impossible[i]));
        CHECK(rc == ENOMEM);
        CHECK(p == sentinel);
        if (rc == 0) free(p);
    }
    void *p = sentinel;
    int rc = posix_memalign(&p, hide(SIZE_MAX / 2 + 1), 16);
    CHECK(rc == ENOMEM && p == sentinel);
    if (rc == 0) free(p);
    still_works();
}

static void test_aligned_alloc(void) {
    /* Not a power of two: NULL with EINVAL (glibc 2.38 and later, C23; glibc 2.36 still rounds up). */
    static const size_t bad[] = {0, 3, 24, 48, 100, 4097, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) EXPECT_FAIL(aligned_alloc(hide(bad[i]), 64), EINVAL, bad[i]);
    /* Every power of two up to 1 MiB, including alignments far above the size. */
    for (size_t align = 1; align <= MiB; align <<= 1) {
        size_t sizes[] = {1, 16, align / 2 + 1, align, 3 * align};
        for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
            unsigned char *p = aligned_alloc(align, sizes[j]);
            CHECK(p != NULL);
            if (!p) continue;
            CHECK(IS_ALIGNED(p, align) && IS_ALIGNED(p, 16));
            CHECK(malloc_usable_size(p) >= sizes[j]);
            fill(p, sizes[j], j);
            CHECK(intact(p, sizes[j], j));
            free(p);
        }
    }
    EXPECT_FAIL(aligned_alloc(hide(SIZE_MAX / 2 + 1), 16), ENOMEM, 0);
    still_works();
}

static void test_memalign(void) {
    /* Powers of two are honoured, up to 4 MiB. */
    for (size_t align = 1; align <= ((size_t)1 << 22); align <<= 1) {
        size_t sizes[] = {0, 1, align, 70000};
        for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
            unsigned char *p = memalign(align, sizes[j]);
            CHECK(p != NULL);
            if (!p) continue;
            CHECK(IS_ALIGNED(p, align) && IS_ALIGNED(p, 16));
            CHECK(malloc_usable_size(p) >= sizes[j]);
            fill(p, sizes[j], j);
            free(p);
        }
    }
    /* glibc rounds other alignments up to the next power of two (small ones mean malloc). */
    static const size_t odd[][2] = {{0, 16}, {3, 16}, {24, 32}, {48, 64}, {100, 128}, {5000, 8192},
                                    {300000, 524288}};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        void *p = memalign(hide(odd[i][0]), 100);
        CHECK(p != NULL && IS_ALIGNED(p, odd[i][1]));
        free(p);
        p = __libc_memalign(hide(odd[i][0]), 100);
        CHECK(p != NULL && IS_ALIGNED(p, odd[i][1]));
        free(p);
    }
    /* Alignments with no next power of two: EINVAL; the largest power of two: ENOMEM. */
    EXPECT_FAIL(memalign(hide(SIZE_MAX / 2 + 2), 1), EINVAL, 0);
    EXPECT_FAIL(memalign(hide(SIZE_MAX), 1), EINVAL, 0);
    EXPECT_FAIL(__libc_memalign(hide(SIZE_MAX / 2 + 2), 1), EINVAL, 0);
    EXPECT_FAIL(memalign(hide(SIZE_MAX / 2 + 1), 1), ENOMEM, 0);
    still_works();
}

static void test_valloc_pvalloc(void) {
    static const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000, 100000, 300000, 3 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i], rounded = (n + PAGE_SIZE - 1) & ~(size_t)(PAGE_SIZE - 1);
        void *(*const vf[])(size_t) = {valloc, __libc_valloc};
        void *(*const pf[])(size_t) = {pvalloc, __libc_pvalloc};
        for (int k = 0; k < 2; k++) {
            unsigned char *p = vf[k](n);
            CHECK(p != NULL);
            if (p) {
                CHECK(IS_ALIGNED(p, PAGE_SIZE));
                CHECK(malloc_usable_size(p) >= n);
                fill(p, n, i);
                free(p);
            }
            p = pf[k](n);
            CHECK(p != NULL);
            if (p) {
                CHECK(IS_ALIGNED(p, PAGE_SIZE));
                /* pvalloc gives whole pages: the rounded-up size is usable. */
                CHECK(malloc_usable_size(p) >= rounded);
                fill(p, rounded, i);
                CHECK(intact(p, rounded, i));
                free(p);
            }
        }
    }
    /* Rounding SIZE_MAX (or anything within a page of it) up to a page must not wrap to 0. */
    EXPECT_FAIL(pvalloc(hide(SIZE_MAX)), ENOMEM, 0);
    EXPECT_FAIL(pvalloc(hide(SIZE_MAX - 4094)), ENOMEM, 0);
    EXPECT_FAIL(pvalloc(hide(SIZE_MAX - 2 * PAGE_SIZE)), ENOMEM, 0);
    EXPECT_FAIL(__libc_pvalloc(hide(SIZE_MAX)), ENOMEM, 0);
    EXPECT_FAIL(__libc_valloc(hide(SIZE_MAX)), ENOMEM, 0);
    still_works();
}

/* ---- frees --------------------------------------------------------------------------------------- */

static void free_keeps_errno(void (*fr)(void *), const char *name) {
    static const size_t sizes[] = {16, 50000, 8 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        CHECK(p != NULL);
        errno = ERRNO_SENTINEL;
        fr(p);
        CHECK(errno == ERRNO_SENTINEL);
        if (errno != ERRNO_SENTINEL) fprintf(stderr, "  %s of %zu bytes changed errno\n", name, sizes[i]);
    }
    errno = ERRNO_SENTINEL;
    fr(NULL);
    CHECK(errno == ERRNO_SENTINEL);
    /* Freeing many medium blocks coalesces them into a top big enough to be trimmed back to
     * the OS during free: that path must keep errno too. */
    enum { N = 120 };
    void *m[N];
    for (int i = 0; i < N; i++) m[i] = malloc(60000);
    unsigned long changed = 0;
    for (int i = N - 1; i >= 0; i--) {
        errno = ERRNO_SENTINEL;
        fr(m[i]);
        if (errno != ERRNO_SENTINEL) changed++;
    }
    CHECK(changed == 0);
    CHECK(heap_check() == 0);
}

static void free_via_free(void *p) { free(p); }
static void free_via_freee(void *p) { f_freee(p); }
static void free_via_cfree(void *p) { f_cfree(p); }
static void free_via_libc(void *p) { __libc_free(p); }

static void test_frees(void) {
    free_keeps_errno(free_via_free, "free");
    free_keeps_errno(free_via_freee, "freee");
    free_keeps_errno(free_via_cfree, "cfree");
    free_keeps_errno(free_via_libc, "__libc_free");

    /* free_sized with the requested size, at every size range; NULL is ignored. */
    static const size_t sizes[] = {0, 1, 100, 32768, 50000, 300000, 8 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = malloc(sizes[i]);
        CHECK(p != NULL);
        if (!p) continue;
        fill(p, sizes[i], i);
        errno = ERRNO_SENTINEL;
        f_free_sized(p, sizes[i]);
        CHECK(errno == ERRNO_SENTINEL);
        /* calloc's size is the product. */
        p = calloc(sizes[i] / 4 + 1, 4);
        CHECK(p != NULL);
        f_free_sized(p, (sizes[i] / 4 + 1) * 4);
    }
    errno = ERRNO_SENTINEL;
    f_free_sized(NULL, 0);
    f_free_sized(NULL, 100);
    f_free_aligned_sized(NULL, 64, 0);
    CHECK(errno == ERRNO_SENTINEL);
    /* free_aligned_sized with aligned_alloc's alignment and size. */
    for (size_t align = 1; align <= MiB; align <<= 2) {
        size_t sizes2[] = {1, align, 3 * align + 5};
        for (size_t j = 0; j < 3; j++) {
            void *p = aligned_alloc(align, sizes2[j]);
            CHECK(p != NULL);
            if (!p) continue;
            fill(p, sizes2[j], j);
            errno = ERRNO_SENTINEL;
            f_free_aligned_sized(p, align, sizes2[j]);
            CHECK(errno == ERRNO_SENTINEL);
        }
    }
    CHECK(heap_check() == 0);
}

/* ---- my_alloc's original names and glibc's aliases ----------------------------------------------- */

static void test_my_alloc_names(void) {
    sweep_sizes(via_my_alloc, 40000, 3);
    void *a = f_my_alloc(0), *b = f_my_alloc(0);
    CHECK(a != NULL && b != NULL && a != b);
    f_freee(a);
    f_freee(b);
    f_freee(NULL);

    /* call_oc zeroes a dirty block, and a big one. */
    static const size_t sizes[] = {24, 1000, 40000, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = f_my_alloc(sizes[i]);
        CHECK(p != NULL);
        if (!p) continue;
        memset(p, 0xAA, malloc_usable_size(p));
        f_freee(p);
        p = f_call_oc(1, sizes[i]);
        CHECK(p != NULL && IS_ALIGNED(p, 16));
        if (p) CHECK(all_zero(p, sizes[i]));
        f_freee(p);
    }
    unsigned char *z = f_call_oc(4, MiB);
    CHECK(z != NULL);
    if (z) CHECK(all_zero(z, 4 * MiB));
    f_freee(z);

    /* Impossible sizes and overflowing products. */
    for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
        size_t n = hide(impossible[i]);
        EXPECT_FAIL(f_my_alloc(n), ENOMEM, n);
        EXPECT_FAIL(f_call_oc(n, 1), ENOMEM, n);
        EXPECT_FAIL(f_reall_oc(NULL, n), ENOMEM, n);
    }
    EXPECT_FAIL(f_call_oc(hide(SIZE_MAX / 2 + 1), 2), ENOMEM, 0);
    EXPECT_FAIL(f_call_oc(hide((size_t)1 << 32), hide((size_t)1 << 32)), ENOMEM, 0);
    still_works();

    /* reall_oc: NULL means allocate, 0 means free, contents kept, failure leaves the block. */
    void *r = f_reall_oc(NULL, 100);
    CHECK(r != NULL && IS_ALIGNED(r, 16));
    CHECK(f_reall_oc(r, 0) == NULL);
    realloc_chain(re_reall_oc, chain, CHAIN_LEN, 3000);
    realloc_failure(re_reall_oc, 100);
    realloc_failure(re_reall_oc, 8 * MiB);

    /* The names mix freely with their libc twins. */
    void *m = f_my_alloc(500);
    free(m);
    m = malloc(500);
    f_freee(m);
    m = f_call_oc(10, 10);
    m = realloc(m, 5000);
    CHECK(m != NULL);
    m = f_reall_oc(m, 50);
    CHECK(m != NULL);
    f_freee(m);
    CHECK(heap_check() == 0);
}

static void test_libc_aliases(void) {
    sweep_sizes(via_libc_malloc, 20000, 7);
    unsigned char *p = __libc_malloc(1000);
    CHECK(p != NULL && IS_ALIGNED(p, 16));
    if (!p) return;
    memset(p, 0xAA, 1000);
    __libc_free(p);
    p = __libc_calloc(10, 100);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(all_zero(p, 1000));
    fill(p, 1000, 21);
    unsigned char *q = __libc_realloc(p, 200000);
    CHECK(q != NULL);
    if (q) { CHECK(intact(q, 1000, 21)); p = q; }
    free(p); /* __libc_realloc's block through plain free */
    CHECK(__libc_realloc(__libc_malloc(10), 0) == NULL);
    p = __libc_realloc(NULL, 10);
    CHECK(p != NULL);
    __libc_free(p);
    p = malloc(64);
    __libc_free(p); /* malloc's block through __libc_free */
    p = __libc_memalign(256, 1000);
    CHECK(p != NULL && IS_ALIGNED(p, 256));
    free(p);
    EXPECT_FAIL(__libc_malloc(hide(SIZE_MAX)), ENOMEM, 0);
    EXPECT_FAIL(__libc_calloc(hide(SIZE_MAX), 2), ENOMEM, 0);
    EXPECT_FAIL(__libc_realloc(NULL, hide(SIZE_MAX)), ENOMEM, 0);
    realloc_failure(re_libc_realloc, 300);
    realloc_chain(re_libc_realloc, chain, CHAIN_LEN, 4000);
    still_works();
}

/* ---- many live blocks: no overlap, contents survive ---------------------------------------------- */

struct blk {
    unsigned char *p;
    size_t use;
    uint64_t id;
};

static int by_address(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const struct blk *)a)->p, y = (uintptr_t)((const struct blk *)b)->p;
    return x < y ? -1 : x > y;
}

static size_t random_size(unsigned long long *s) {
    unsigned r = rng_next(s) % 1000;
    if (r < 500) return rng_next(s) % 257;
    if (r < 800) return rng_next(s) % 4097;
    if (r < 950) return rng_next(s) % 65537;
    if (r < 998) return rng_next(s) % 300001;
    return MiB + rng_next(s) % (3 * MiB);
}

/* One block of about n bytes from a randomly chosen allocator; calloc'd blocks must be zero. */
static void *random_alloc(unsigned long long *s, size_t n, size_t *align_out, int *bad_zero) {
    size_t align = 16;
    void *p = NULL;
    switch (rng_next(s) % 14) {
    case 0: case 1: case 2: case 3: p = malloc(n); break;
    case 4: p = f_my_alloc(n); break;
    case 5: p = __libc_malloc(n); break;
    case 6: case 7: case 8: {
        int which = rng_next(s) % 3;
        p = which == 0 ? calloc(1, n) : which == 1 ? f_call_oc(n, 1) : __libc_calloc(1, n);
        if (p && !all_zero(p, n)) *bad_zero = 1;
        break;
    }
    case 9: align = (size_t)32 << rng_next(s) % 8; p = memalign(align, n); break;
    case 10: align = (size_t)16 << rng_next(s) % 8; p = aligned_alloc(align, n); break;
    case 11:
        align = (size_t)8 << rng_next(s) % 10;
        if (posix_memalign(&p, align, n) != 0) p = NULL;
        break;
    case 12: p = realloc(NULL, n); break;
    default:
        if (rng_next(s) % 8 == 0) { align = PAGE_SIZE; p = valloc(n); } else p = malloc(n);
        break;
    }
    *align_out = align < 16 ? 16 : align;
    return p;
}

static void test_no_overlap(void) {
    enum { N = 3000 };
    static struct blk t[N];
    unsigned long long s = 0x1234567887654321ULL;
    unsigned long nulls = 0, overlaps = 0, clobbered = 0, misaligned = 0, bad_zero_seen = 0;
    uint64_t next_id = 1;
    for (int round = 0; round < 3; round++) {
        /* Round 0 fills the table; later rounds replace a random half of it. */
        for (int i = 0; i < N; i++) {
            if (round > 0) {
                if (rng_next(&s) % 2) continue;
                if (!intact(t[i].p, t[i].use, t[i].id)) clobbered++;
                free(t[i].p);
                t[i].p = NULL;
            }
            size_t n = random_size(&s), align;
            int bz = 0;
            t[i].p = random_alloc(&s, n, &align, &bz);
            bad_zero_seen += bz;
            if (!t[i].p) { nulls++; t[i].use = 0; continue; }
            if (!IS_ALIGNED(t[i].p, align)) misaligned++;
            t[i].use = malloc_usable_size(t[i].p);
            t[i].id = next_id++;
            fill(t[i].p, t[i].use, t[i].id);
        }
        qsort(t, N, sizeof t[0], by_address);
        for (int i = 0; i + 1 < N; i++)
            if (t[i].p && t[i].p + t[i].use > t[i + 1].p) overlaps++;
        for (int i = 0; i < N; i++)
            if (t[i].p && !intact(t[i].p, t[i].use, t[i].id)) clobbered++;
        CHECK(heap_check() == 0);
    }
    for (int i = 0; i < N; i++) free(t[i].p);
    CHECK(nulls == 0);
    CHECK(misaligned == 0);
    CHECK(bad_zero_seen == 0);
    CHECK(overlaps == 0);
    CHECK(clobbered == 0);
    CHECK(heap_check() == 0);
}

/* ---- malloc_trim and malloc_stats --------------------------------------------------------------- */

static void test_trim_and_stats(void) {
    int r = malloc_trim(0);
    CHECK(r == 0 || r == 1);
    CHECK(heap_check() == 0);

    /* 64 MiB of small blocks, all freed: they sit in caches and quick lists until malloc_trim
     * consolidates them, and then there is certainly memory to give back. */
    enum { N = 16384 };
    static void *small[N];
    unsigned long nulls = 0;
    for (int i = 0; i < N; i++) {
        small[i] = malloc(4000);
        if (!small[i]) nulls++;
        else memset(small[i], i, 4000);
    }
    CHECK(nulls == 0);
    for (int i = 0; i < N; i++) free(small[i]);
    CHECK(malloc_trim(0) == 1);
    CHECK(heap_check() == 0);
    r = malloc_trim(MiB);
    CHECK(r == 0 || r == 1);
    still_works();

    /* A pad beyond anything the heap holds (any size_t is a valid pad) keeps the heap sound.
     * Done in a child, since a broken trim may crash the process. */
    static const size_t pads[] = {SIZE_MAX, SIZE_MAX - 4000, SIZE_MAX / 2, (size_t)1 << 40};
    for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            void *keep = malloc(200000), *top = malloc(100);
            free(top);
            int rr = malloc_trim(hide(pads[i]));
            int ok = (rr == 0 || rr == 1) && heap_check() == 0;
            void *again = malloc(300000);
            if (!again) ok = 0; else memset(again, 1, 300000);
            free(again);
            free(keep);
            _exit(ok && heap_check() == 0 ? 0 : 1);
        }
        int status = -1;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fprintf(stderr, "  malloc_trim(%zu) in a child: wait status 0x%x\n", pads[i], status);
    }

    /* malloc_stats writes to stderr: catch it in a temporary file to keep the output clean. */
    FILE *tmp = tmpfile();
    CHECK(tmp != NULL);
    if (tmp) {
        fflush(stderr);
        int saved = dup(2);
        CHECK(saved >= 0 && dup2(fileno(tmp), 2) == 2);
        malloc_stats();
        dup2(saved, 2);
        close(saved);
        CHECK(lseek(fileno(tmp), 0, SEEK_END) > 0);
        fclose(tmp);
    }
    CHECK(heap_check() == 0);
}

/* The "live" column of malloc_stats()'s rows, by block size / 16 (rows of blocks up to 4 KiB). */
enum { STATS_ROWS = 4096 / 16 + 1 };
static int stats_live(long live[STATS_ROWS]) {
    memset(live, 0, sizeof(long) * STATS_ROWS);
    FILE *tmp = tmpfile();
    if (!tmp)
        return -1;
    fflush(stderr);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    malloc_stats();
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    char line[256];
    int rows = 0;
    while (fgets(line, sizeof line, tmp)) {
        unsigned long long size, requests, lv;
        if (sscanf(line, "my_alloc: %llu B %llu %llu", &size, &requests, &lv) == 3 && size / 16 < STATS_ROWS) {
            live[size / 16] = (long)lv;
            rows++;
        }
    }
    fclose(tmp);
    return rows;
}

/* The sum of the rows' live counts minus that of `base`. */
static long stats_live_delta(const long base[STATS_ROWS], long now[STATS_ROWS]) {
    long d = 0;
    if (stats_live(now) <= 0)
        return -1000000;
    for (int r = 0; r < STATS_ROWS; r++)
        d += now[r] - base[r];
    return d;
}

/* The statistics count each block in the row of its size. A resize that changes a block's size
 * class moves it from one row to the other, whether the block moves (a small block that halves
 * goes to a block of the smaller class) or stays (a block beyond the quick classes is split in
 * place). They once counted a block split in place in the old row at its allocation and in the
 * new one at its free, so that the old row kept it "live" for ever. A refill's last block may be one class bigger than the refill (it absorbs a sliver
 * too small to split off) and counts in its own row: rows may each be off by such a block while
 * it waits in a thread cache, so the per-row checks leave room for it; the sums are exact. */
static void test_stats_follow_resize(void) {
    enum { N = 64 };
    static char *p[N];
    static long base[STATS_ROWS], now[STATS_ROWS];
    CHECK(stats_live(base) > 0);
    for (int i = 0; i < N; i++) {
        p[i] = malloc(150);
        CHECK(p[i] != NULL);
        if (p[i])
            memset(p[i], i, 150);
    }
    size_t big = (malloc_usable_size(p[0]) + BLOCK_HEADER_BYTES) / 16;
    CHECK(stats_live_delta(base, now) == N);
    CHECK(now[big] - base[big] > N / 2);
    for (int i = 0; i < N; i++) {
        char *q = realloc(p[i], 60);   /* halves the block: it moves to the smaller class */
        CHECK(q != NULL && q[0] == (char)i && q[59] == (char)i);
        p[i] = q;
    }
    size_t small = (malloc_usable_size(p[0]) + BLOCK_HEADER_BYTES) / 16;
    CHECK(small < big);
    CHECK(stats_live_delta(base, now) == N);
    CHECK(now[big] - base[big] < N / 2);
    CHECK(now[small] - base[small] > N / 2);
    for (int i = 0; i < N; i++)
        free(p[i]);
    CHECK(stats_live_delta(base, now) == 0);
    /* Beyond the quick classes (rows in KiB, not read here), shrunk to a small class in place. */
    for (int i = 0; i < N; i++) {
        p[i] = malloc(40000);
        CHECK(p[i] != NULL);
    }
    CHECK(stats_live_delta(base, now) == 0);
    for (int i = 0; i < N; i++) {
        char *q = realloc(p[i], 60);
        CHECK(q == p[i]);
        p[i] = q;
    }
    CHECK(stats_live_delta(base, now) == N);
    CHECK(now[small] - base[small] > N / 2);
    for (int i = 0; i < N; i++)
        free(p[i]);
    long d = stats_live_delta(base, now);
    CHECK(d == 0);
    if (d != 0)
        fprintf(stderr, "  live blocks in the statistics: %ld more than before the test\n", d);
}

/* ---- randomized mix ----------------------------------------------------------------------------- */

static void test_random(void) {
    enum { SLOTS = 2000, OPS = 200000 };
    static struct { unsigned char *p; size_t n, use; uint64_t id; } sl[SLOTS];
    unsigned long long s = 0xC0FFEE1234ULL;
    unsigned long nulls = 0, misaligned = 0, short_usable = 0, clobbered = 0, bad_zero = 0, lost = 0;
    unsigned long heap_bad = 0;
    uint64_t next_id = 1;
    for (long op = 0; op < OPS; op++) {
        int i = rng_next(&s) % SLOTS;
        if (!sl[i].p) {
            size_t n = random_size(&s), align;
            int bz = 0;
            unsigned char *p = random_alloc(&s, n, &align, &bz);
            bad_zero += bz;
            if (!p) { nulls++; continue; }
            if (!IS_ALIGNED(p, align)) misaligned++;
            sl[i].p = p;
            sl[i].n = n;
            sl[i].use = malloc_usable_size(p);
            if (sl[i].use < n) short_usable++;
            sl[i].id = next_id++;
            fill(p, sl[i].use, sl[i].id);
        } else {
            if (!intact(sl[i].p, sl[i].use, sl[i].id)) clobbered++;
            unsigned r = rng_next(&s) % 100;
            if (r < 45) {
                switch (rng_next(&s) % 6) {
                case 0: case 1: free(sl[i].p); break;
                case 2: f_freee(sl[i].p); break;
                case 3: f_cfree(sl[i].p); break;
                case 4: __libc_free(sl[i].p); break;
                default: f_free_sized(sl[i].p, sl[i].n); break;
                }
                sl[i].p = NULL;
            } else if (r < 46) {
                if (realloc(sl[i].p, 0) != NULL) lost++;
                sl[i].p = NULL;
            } else {
                size_t old = sl[i].n, n;
                switch (rng_next(&s) % 4) {
                case 0: n = old + rng_next(&s) % 64; break;
                case 1: n = old / 2 + 1; break;
                default: n = random_size(&s) + 1; break;
                }
                unsigned char *q;
                switch (rng_next(&s) % 5) {
                case 0: q = f_reall_oc(sl[i].p, n); break;
                case 1: q = __libc_realloc(sl[i].p, n); break;
                case 2: q = reallocarray(sl[i].p, 1, n); break;
                default: q = realloc(sl[i].p, n); break;
                }
                if (!q) { nulls++; continue; }
                if (!IS_ALIGNED(q, 16)) misaligned++;
                if (!intact(q, old < n ? old : n, sl[i].id)) lost++;
                sl[i].p = q;
                sl[i].n = n;
                sl[i].use = malloc_usable_size(q);
                if (sl[i].use < n) short_usable++;
                sl[i].id = next_id++;
                fill(q, sl[i].use, sl[i].id);
            }
        }
        if (op % 5000 == 4999 && heap_check() != 0) heap_bad++;
        if (op % 50000 == 49999)
            for (int j = 0; j < SLOTS; j++)
                if (sl[j].p && !intact(sl[j].p, sl[j].use, sl[j].id)) clobbered++;
    }
    for (int j = 0; j < SLOTS; j++) {
        if (sl[j].p && !intact(sl[j].p, sl[j].use, sl[j].id)) clobbered++;
        free(sl[j].p);
        sl[j].p = NULL;
    }
    CHECK(nulls == 0);
    CHECK(misaligned == 0);
    CHECK(short_usable == 0);
    CHECK(bad_zero == 0);
    CHECK(clobbered == 0);
    CHECK(lost == 0);
    CHECK(heap_bad == 0);
    CHECK(heap_check() == 0);
}

int main(void) {
    CHECK(using_my_alloc());
    f_check_heap = (__typeof__(f_check_heap))dlsym(RTLD_DEFAULT, "my_alloc_check_heap");
    f_my_alloc = (__typeof__(f_my_alloc))dlsym(RTLD_DEFAULT, "my_alloc");
    f_freee = (__typeof__(f_freee))dlsym(RTLD_DEFAULT, "freee");
    f_call_oc = (__typeof__(f_call_oc))dlsym(RTLD_DEFAULT, "call_oc");
    f_reall_oc = (__typeof__(f_reall_oc))dlsym(RTLD_DEFAULT, "reall_oc");
    f_cfree = (__typeof__(f_cfree))dlsym(RTLD_DEFAULT, "cfree");
    f_free_sized = (__typeof__(f_free_sized))dlsym(RTLD_DEFAULT, "free_sized");
    f_free_aligned_sized = (__typeof__(f_free_aligned_sized))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    /* Every entry point this test calls must be my_alloc's, not glibc's. */
    void *const entry[] = {
        (void *)f_my_alloc, (void *)f_freee, (void *)f_call_oc, (void *)f_reall_oc, (void *)f_cfree,
        (void *)f_free_sized, (void *)f_free_aligned_sized, (void *)malloc, (void *)free,
        (void *)calloc, (void *)realloc, (void *)reallocarray, (void *)posix_memalign,
        (void *)aligned_alloc, (void *)memalign, (void *)valloc, (void *)pvalloc,
        (void *)malloc_usable_size, (void *)malloc_trim, (void *)malloc_stats, (void *)__libc_malloc,
        (void *)__libc_free, (void *)__libc_calloc, (void *)__libc_realloc, (void *)__libc_memalign,
        (void *)__libc_valloc, (void *)__libc_pvalloc,
    };
    unsigned long foreign = 0;
    for (size_t i = 0; i < sizeof entry / sizeof entry[0]; i++) {
        if (!from_my_alloc(entry[i])) {
            foreign++;
            fprintf(stderr, "  entry point #%zu is not my_alloc's\n", i);
        }
    }
    CHECK(foreign == 0);
    if (!using_my_alloc() || foreign) return DONE("conformance");

    CHECK(heap_check() == 0);
    test_malloc_zero();
    test_malloc_sizes();
    test_impossible_sizes();
    test_calloc();
    test_realloc();
    test_reallocarray();
    test_posix_memalign();
    test_aligned_alloc();
    test_memalign();
    test_valloc_pvalloc();
    test_frees();
    test_my_alloc_names();
    test_libc_aliases();
    test_no_overlap();
    test_random();
    test_trim_and_stats();
    test_stats_follow_resize();
    CHECK(heap_check() == 0);
    return DONE("conformance");
}
