/* mstress: the pattern of mimalloc's stress test (test/test-stress.c in the mimalloc sources, the
 * "mstress" entry of mimalloc-bench): threads allocate objects of widely varying sizes, keep
 * them in a live set that grows and then shrinks, pass some of them to other threads, and are
 * restarted for every iteration, so objects outlive the threads that allocated them.
 *
 *   mstress [threads] [iterations] [steps_per_thread] [live_slots] [transfer_slots]
 *
 * Per iteration, `threads` new threads each run `steps_per_thread` steps on their own
 * `live_slots` slots. In the first half of the steps a thread allocates more often than it
 * frees (its live set grows), in the second half it frees more often (it shrinks). Some steps
 * swap one of its objects with a slot of a shared transfer array (an atomic exchange), so an
 * object may be freed by any thread, in this iteration or a later one. At the end of an
 * iteration each thread frees what it holds and exits; the transfer array lives on. Sizes:
 * a power-of-two class from 16 B to 8 KiB picked uniformly, then a size up to twice the
 * class (so 17 B - 16 KiB); 1 in 100 objects is 8 times larger, 1 in 10000 is 256 times
 * larger (up to 4 MiB).
 *
 * Which thread frees which object depends on timing, so each object carries its length and a
 * key: the checksum adds what is read back at free, once per object, which is the same
 * whatever thread frees it. A step's choices come from its thread's RNG alone, never from
 * what an exchange returned, so every run allocates the same objects.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "bench_common.h"

#define MIN_CLASS 4              /* 16 B */
#define CLASSES 10               /* classes 16 B .. 8 KiB */
#define GROW_ALLOC_PCT 60        /* first half: allocate 60%, free 30%, transfer 10% */
#define SHRINK_ALLOC_PCT 30      /* second half: allocate 30%, free 60%, transfer 10% */
#define TRANSFER_PCT 10

struct header {                  /* at the start of every object */
    uint32_t len, check;         /* check: a hash of len and key, to catch an overwrite */
    uint64_t key;
};

static long long steps, live_slots, transfer_slots;
static _Atomic(struct header *) *transfer;

static uint64_t mix(uint64_t x)
{
    return rng_next(&x);
}

static size_t object_size(uint64_t *rng)
{
    size_t base = (size_t)1 << (MIN_CLASS + rng_below(rng, CLASSES));
    size_t n = base + 1 + (size_t)rng_below(rng, base - 1);   /* > the header: room for the last byte */
    uint64_t r = rng_below(rng, 10000);
    if (r == 0)
        n *= 256;
    else if (r < 100)
        n *= 8;
    return n;
}

/* The bytes after the header, up to 256 of them, and the last byte: written at allocation,
 * read back at free, as the original initialises its objects and reads them again. */
static size_t fill_end(size_t n)
{
    return n < 256 ? n : 256;
}

static struct header *make(uint64_t *rng, uint64_t serial)
{
    size_t n = object_size(rng);
    struct header *h = xmalloc(n);
    h->len = (uint32_t)n;
    h->key = mix(serial);
    h->check = (uint32_t)mix(h->key ^ n);
    unsigned char *c = (unsigned char *)h;
    memset(c + sizeof(*h), (int)(h->key & 0xFF), fill_end(n) - sizeof(*h));
    c[n - 1] = (unsigned char)(h->key >> 8);
    return h;
}

/* Check an object and free it; what it returns goes into the checksum. */
static uint64_t release(struct header *h)
{
    if (!h)
        return 0;
    const volatile unsigned char *c = (const volatile unsigned char *)h;
    size_t n = h->len;
    int ok = h->check == (uint32_t)mix(h->key ^ n) && c[n - 1] == (unsigned char)(h->key >> 8);
    for (size_t i = sizeof(*h); ok && i < fill_end(n) - 1; i++)
        ok = c[i] == (unsigned char)(h->key & 0xFF);
    if (!ok) {
        fprintf(stderr, "corrupted object %p of %zu bytes\n", (void *)h, n);
        exit(4);
    }
    uint64_t k = h->key + n;
    free(h);
    return k;
}

struct worker {
    int id;
    long long iteration;
    uint64_t sum;
};

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0x57E55 + (uint64_t)w->iteration * 1000003 + (uint64_t)w->id * 7777, sum = 0;
    uint64_t serial = ((uint64_t)w->iteration << 40) | ((uint64_t)w->id << 32);
    struct header **live = xmalloc(sizeof(*live) * (size_t)live_slots);
    for (long long i = 0; i < live_slots; i++)
        live[i] = NULL;

    for (long long s = 0; s < steps; s++) {
        uint64_t r = rng_below(&rng, 100);
        uint64_t alloc_pct = s < steps / 2 ? GROW_ALLOC_PCT : SHRINK_ALLOC_PCT;
        size_t i = (size_t)rng_below(&rng, (uint64_t)live_slots);
        if (r < alloc_pct) {
            sum += release(live[i]);
            live[i] = make(&rng, serial++);
        } else if (r < 100 - TRANSFER_PCT) {
            sum += release(live[i]);
            live[i] = NULL;
        } else {
            size_t t = (size_t)rng_below(&rng, (uint64_t)transfer_slots);
            live[i] = atomic_exchange(&transfer[t], live[i]);
        }
    }

    for (long long i = 0; i < live_slots; i++)
        sum += release(live[i]);
    free(live);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = (int)arg_ll(argc, argv, 1, 4);
    long long iterations = arg_ll(argc, argv, 2, 10);
    steps = arg_ll(argc, argv, 3, 400000);
    live_slots = arg_ll(argc, argv, 4, 2000);
    transfer_slots = arg_ll(argc, argv, 5, 1000);
    if (nthreads < 1 || live_slots < 1 || transfer_slots < 1) {
        fprintf(stderr, "need threads, live_slots and transfer_slots >= 1\n");
        return 2;
    }

    transfer = xmalloc(sizeof(*transfer) * (size_t)transfer_slots);
    for (long long t = 0; t < transfer_slots; t++)
        atomic_init(&transfer[t], NULL);
    struct worker *w = xmalloc(sizeof(*w) * (size_t)nthreads);
    pthread_t *th = xmalloc(sizeof(*th) * (size_t)nthreads);
    uint64_t sum = 0;
    for (long long it = 0; it < iterations; it++) {
        for (int t = 0; t < nthreads; t++) {
            w[t].id = t;
            w[t].iteration = it;
            w[t].sum = 0;
            if (pthread_create(&th[t], NULL, run, &w[t])) {
                fprintf(stderr, "pthread_create failed\n");
                return 3;
            }
        }
        for (int t = 0; t < nthreads; t++) {
            pthread_join(th[t], NULL);
            sum += w[t].sum;
        }
    }
    for (long long t = 0; t < transfer_slots; t++)
        sum += release(atomic_load(&transfer[t]));
    free(transfer);
    free(w);
    free(th);
    print_checksum(sum);
    return 0;
}
