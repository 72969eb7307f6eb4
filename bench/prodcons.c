/* prodcons: one thread allocates, another frees, at high volume.
 *
 *   prodcons [items] [queue_batches] [batch]
 *
 * The producer (main thread) allocates objects of 16-1024 bytes, fills their head and
 * collects them in batches of `batch`; full batches go through a bounded queue of
 * `queue_batches` slots to the consumer thread, which checks and frees every object.
 * So every free is of memory allocated by another thread: the pattern that defeats naive
 * per-thread caches (memory drains from the producer's side to the consumer's).
 *
 * Why batches behind a mutex + condition variables rather than a per-item lock-free
 * ring: a per-item ring on 2 busy cores made the run time swing 10x between runs
 * depending on whether the two threads ended up spinning against each other. Batches
 * keep the queue's own cost small and blocking (not spinning) keeps the run stable, so
 * what varies between allocators is the allocator.
 */
#include <pthread.h>
#include <string.h>

#include "bench_common.h"

struct item {
    unsigned char *p;
    uint32_t len;
    unsigned char tag;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct item **slot;       /* ring of batch pointers */
    long long cap, head, count;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static long long items, batch;

static void push(struct item *b)
{
    pthread_mutex_lock(&q.lock);
    while (q.count == q.cap)
        pthread_cond_wait(&q.not_full, &q.lock);
    q.slot[(q.head + q.count) % q.cap] = b;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

static struct item *pop(void)
{
    pthread_mutex_lock(&q.lock);
    while (q.count == 0)
        pthread_cond_wait(&q.not_empty, &q.lock);
    struct item *b = q.slot[q.head];
    q.head = (q.head + 1) % q.cap;
    q.count--;
    pthread_cond_signal(&q.not_full);
    pthread_mutex_unlock(&q.lock);
    return b;
}

static void *consumer(void *arg)
{
    uint64_t *sum = arg;
    uint64_t s = 0;
    long long left = items;
    while (left > 0) {
        struct item *b = pop();
        long long n = left < batch ? left : batch;
        for (long long i = 0; i < n; i++) {
            s += check_tag(b[i].p, b[i].len, b[i].tag) + b[i].len;
            free(b[i].p);
        }
        free(b);              /* the batch array itself also crosses threads */
        left -= n;
    }
    *sum = s;
    return NULL;
}

int main(int argc, char **argv)
{
    items = arg_ll(argc, argv, 1, 6000000);
    q.cap = arg_ll(argc, argv, 2, 16);
    batch = arg_ll(argc, argv, 3, 256);
    if (q.cap < 1 || batch < 1) {
        fprintf(stderr, "queue_batches and batch must be >= 1\n");
        return 2;
    }
    q.slot = xmalloc(sizeof(*q.slot) * (size_t)q.cap);

    uint64_t consumed = 0, rng = 0xFEEDBEEF;
    pthread_t th;
    if (pthread_create(&th, NULL, consumer, &consumed)) {
        fprintf(stderr, "pthread_create failed\n");
        return 3;
    }
    struct item *b = NULL;
    long long fill = 0;
    for (long long n = 0; n < items; n++) {
        if (!b)
            b = xmalloc(sizeof(*b) * (size_t)batch);
        struct item *it = &b[fill++];
        it->len = (uint32_t)rng_log_size(&rng, 16, 1024);
        it->p = xmalloc(it->len);
        it->tag = (unsigned char)n;
        memset(it->p, it->tag, it->len < 64 ? it->len : 64);
        put_tag(it->p, it->len, it->tag);
        if (fill == batch || n == items - 1) {
            push(b);
            b = NULL;
            fill = 0;
        }
    }
    pthread_join(th, NULL);
    free(q.slot);
    print_checksum(consumed);
    return 0;
}
