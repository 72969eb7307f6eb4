/* xmalloc: the pattern of xmalloc-test, the multi-threaded test of Lever and Boreham ("malloc()
 * Performance in a Multithreaded Linux Environment", USENIX 2000, FREENIX track), the
 * "xmalloc-testN" entry of mimalloc-bench: some threads only allocate, others only free, and
 * objects travel from the first to the second through a shared list.
 *
 *   xmalloc [producers] [consumers] [objects] [batch] [max_batches]
 *
 * Each producer allocates its share of `objects` small objects (16-128 B), chains them into
 * batches of `batch` through a link stored in the objects themselves, and pushes each batch on
 * one shared list (a mutex with condition variables; at most `max_batches` waiting, so memory
 * stays bounded and a producer blocks instead of spinning). Consumers pop batches, whichever
 * producer made them, check every object and free it. Unlike prodcons (one thread to one
 * thread), several threads free into the memory of several others at once.
 */
#include <pthread.h>
#include <string.h>

#include "bench_common.h"

#define MIN_SIZE 16
#define MAX_SIZE 128

struct object {                  /* at the start of every object */
    struct object *next;         /* next object of the same batch */
    uint32_t len;
    uint32_t key;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct object **batches;     /* ring of batch heads */
    long long cap, head, count;
    int producers_left;
} list = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0};

static long long per_producer, batch;

static void push(struct object *b)
{
    pthread_mutex_lock(&list.lock);
    while (list.count == list.cap)
        pthread_cond_wait(&list.not_full, &list.lock);
    list.batches[(list.head + list.count) % list.cap] = b;
    list.count++;
    pthread_cond_signal(&list.not_empty);
    pthread_mutex_unlock(&list.lock);
}

/* NULL once every producer has finished and the list is empty. */
static struct object *pop(void)
{
    struct object *b = NULL;
    pthread_mutex_lock(&list.lock);
    while (list.count == 0 && list.producers_left > 0)
        pthread_cond_wait(&list.not_empty, &list.lock);
    if (list.count > 0) {
        b = list.batches[list.head];
        list.head = (list.head + 1) % list.cap;
        list.count--;
        pthread_cond_signal(&list.not_full);
    }
    pthread_mutex_unlock(&list.lock);
    return b;
}

static void *producer(void *arg)
{
    uint64_t rng = 0x3A110C + (uint64_t)(size_t)arg * 48271;
    struct object *b = NULL;
    long long fill = 0;
    for (long long i = 0; i < per_producer; i++) {
        size_t n = rng_range(&rng, MIN_SIZE, MAX_SIZE);
        struct object *o = xmalloc(n);
        o->len = (uint32_t)n;
        o->key = (uint32_t)rng_next(&rng);
        memset(o + 1, (int)(o->key & 0xFF), n - sizeof(*o));
        o->next = b;
        b = o;
        if (++fill == batch || i == per_producer - 1) {
            push(b);
            b = NULL;
            fill = 0;
        }
    }
    pthread_mutex_lock(&list.lock);
    list.producers_left--;
    pthread_cond_broadcast(&list.not_empty);      /* waiting consumers may now stop */
    pthread_mutex_unlock(&list.lock);
    return NULL;
}

static void *consumer(void *arg)
{
    uint64_t sum = 0;
    struct object *b;
    while ((b = pop())) {
        while (b) {
            struct object *next = b->next;
            const volatile unsigned char *c = (const volatile unsigned char *)b;
            if (b->len > sizeof(*b) && c[b->len - 1] != (unsigned char)(b->key & 0xFF)) {
                fprintf(stderr, "corrupted object %p of %u bytes\n", (void *)b, b->len);
                exit(4);
            }
            sum += b->key + b->len;
            free(b);
            b = next;
        }
    }
    *(uint64_t *)arg = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    int producers = (int)arg_ll(argc, argv, 1, 2);
    int consumers = (int)arg_ll(argc, argv, 2, 2);
    long long objects = arg_ll(argc, argv, 3, 12000000);
    batch = arg_ll(argc, argv, 4, 100);
    list.cap = arg_ll(argc, argv, 5, 64);
    if (producers < 1 || consumers < 1 || batch < 1 || list.cap < 1) {
        fprintf(stderr, "need producers, consumers, batch and max_batches >= 1\n");
        return 2;
    }
    per_producer = objects / producers;
    list.producers_left = producers;
    list.batches = xmalloc(sizeof(*list.batches) * (size_t)list.cap);

    pthread_t *th = xmalloc(sizeof(*th) * (size_t)(producers + consumers));
    uint64_t *sums = xmalloc(sizeof(*sums) * (size_t)consumers);
    for (int c = 0; c < consumers; c++) {
        if (pthread_create(&th[c], NULL, consumer, &sums[c])) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
    }
    for (int p = 0; p < producers; p++) {
        if (pthread_create(&th[consumers + p], NULL, producer, (void *)(size_t)p)) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
    }
    uint64_t sum = 0;
    for (int t = 0; t < producers + consumers; t++)
        pthread_join(th[t], NULL);
    for (int c = 0; c < consumers; c++)
        sum += sums[c];
    free(th);
    free(sums);
    free(list.batches);
    print_checksum(sum);
    return 0;
}
