/* larson: the server simulation of Larson and Krishnan ("Memory Allocation for Long-Running
 * Server Applications", ISMM 1998), the "larson" entry of mimalloc-bench, which runs it with
 * blocks of 8-1000 bytes and 5000 blocks per thread.
 *
 *   larson [threads] [generations] [ops_per_generation] [slots] [min_size] [max_size]
 *
 * Each of `threads` lineages owns an array of `slots` blocks of min_size..max_size bytes
 * (uniform). A generation is one thread: it replaces `ops_per_generation` random slots (free
 * the old block, allocate a new one), then starts its successor, hands it the array and exits.
 * So threads are created and exit all the time, and most blocks are freed by another thread
 * than the one that allocated them, as in a server whose requests outlive the threads that
 * created their buffers. The published benchmark runs for a fixed time and reports throughput;
 * this one does a fixed amount of work, so its wall time is the measure.
 *
 * larson_sized.cc compiles this file as C++ with operator new and sized delete instead of
 * malloc and free (mimalloc-bench's "larson-sized").
 */
#include <pthread.h>

#include "bench_common.h"

#ifndef LARSON_ALLOC
#define LARSON_ALLOC(n) ((unsigned char *)xmalloc(n))
#define LARSON_FREE(p, n) free(p)
#endif

struct lineage {
    int id;
    long long generation;     /* generations finished so far */
    uint64_t rng, sum;
    unsigned char **blk;
    uint32_t *len;
    pthread_t prev;           /* the generation before, joined by its successor */
    pthread_t last;           /* the final generation, joined by main */
};

static long long generations, ops, slots;
static size_t min_size, max_size;

/* Main waits here until every lineage has run its last generation. */
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int done;

static unsigned char tag_of(const struct lineage *l, size_t n)
{
    return (unsigned char)(n * 31 + (size_t)l->id);
}

static void fill_slot(struct lineage *l, size_t i)
{
    size_t n = rng_range(&l->rng, min_size, max_size);
    l->blk[i] = LARSON_ALLOC(n);
    l->len[i] = (uint32_t)n;
    put_tag(l->blk[i], n, tag_of(l, n));
}

static void empty_slot(struct lineage *l, size_t i)
{
    l->sum += check_tag(l->blk[i], l->len[i], tag_of(l, l->len[i])) + l->len[i];
    LARSON_FREE(l->blk[i], l->len[i]);
}

static void *generation(void *arg)
{
    struct lineage *l = (struct lineage *)arg;
    for (long long op = 0; op < ops; op++) {
        size_t i = (size_t)rng_below(&l->rng, (uint64_t)slots);
        empty_slot(l, i);
        fill_slot(l, i);
    }
    /* Joined after the work, not before, so the predecessor's exit overlaps with it. */
    if (l->generation > 0)
        pthread_join(l->prev, NULL);
    l->generation++;
    if (l->generation == generations) {
        l->last = pthread_self();
        pthread_mutex_lock(&done_lock);
        done++;
        pthread_cond_signal(&done_cond);
        pthread_mutex_unlock(&done_lock);
        return NULL;
    }
    /* From here on the successor owns *l: this thread must not touch it after the create. */
    l->prev = pthread_self();
    pthread_t next;
    if (pthread_create(&next, NULL, generation, l)) {
        fprintf(stderr, "pthread_create failed\n");
        exit(3);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int nthreads = (int)arg_ll(argc, argv, 1, 2);
    generations = arg_ll(argc, argv, 2, 80);
    ops = arg_ll(argc, argv, 3, 100000);
    slots = arg_ll(argc, argv, 4, 5000);
    min_size = (size_t)arg_ll(argc, argv, 5, 8);
    max_size = (size_t)arg_ll(argc, argv, 6, 1000);
    if (nthreads < 1 || generations < 1 || slots < 1 || min_size < 1 || max_size < min_size) {
        fprintf(stderr, "need threads, generations, slots >= 1 and 1 <= min_size <= max_size\n");
        return 2;
    }

    /* The first blocks come from the main thread, as in the original: freed by others. */
    struct lineage *ls = (struct lineage *)xmalloc(sizeof(*ls) * (size_t)nthreads);
    for (int t = 0; t < nthreads; t++) {
        struct lineage *l = &ls[t];
        l->id = t;
        l->generation = 0;
        l->rng = 0x1A7507 + (uint64_t)t * 104729;
        l->sum = 0;
        l->blk = (unsigned char **)xmalloc(sizeof(*l->blk) * (size_t)slots);
        l->len = (uint32_t *)xmalloc(sizeof(*l->len) * (size_t)slots);
        for (long long i = 0; i < slots; i++)
            fill_slot(l, (size_t)i);
    }
    for (int t = 0; t < nthreads; t++) {
        pthread_t th;
        if (pthread_create(&th, NULL, generation, &ls[t])) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
    }
    pthread_mutex_lock(&done_lock);
    while (done < nthreads)
        pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);

    uint64_t sum = 0;
    for (int t = 0; t < nthreads; t++) {
        struct lineage *l = &ls[t];
        pthread_join(l->last, NULL);
        for (long long i = 0; i < slots; i++)
            empty_slot(l, (size_t)i);
        sum += l->sum;
        free(l->blk);
        free(l->len);
    }
    free(ls);
    print_checksum(sum);
    return 0;
}
