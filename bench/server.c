/* server: N worker threads, each with a working set of random-sized objects (16 B - 8 KiB)
 * that it replaces at random; a fraction of the replaced objects are handed to another
 * thread to free, as a server hands a request buffer from one stage to the next.
 *
 *   server [threads] [ops_per_thread] [working_set] [remote_percent]
 *
 * Hand-off goes through a per-thread mailbox: a bounded ring of pointers behind a mutex.
 * The owner drains its mailbox every DRAIN_EVERY ops and frees what it finds (the
 * cross-thread free path). When a mailbox is full the sender frees the object itself, so
 * the work done (and the checksum) does not depend on thread timing.
 * Threads may outnumber cores: that is the point of the default of 4 on a 2-core machine.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "bench_common.h"

#define MAILBOX_CAP 1024
#define DRAIN_EVERY 64

struct obj {               /* what travels through a mailbox */
    unsigned char *p;
    uint32_t len;
    unsigned char tag;
};

struct mailbox {
    pthread_mutex_t lock;
    unsigned head, count;  /* ring of MAILBOX_CAP entries */
    struct obj ring[MAILBOX_CAP];
};

struct worker {
    int id;
    pthread_t thread;
    uint64_t sum;
};

static int nthreads;
static long long ops, ws;
static unsigned remote_pct;
static struct mailbox *boxes;
static pthread_barrier_t barrier;

static uint64_t release(struct obj o)
{
    uint64_t s = check_tag(o.p, o.len, o.tag) + o.len;
    free(o.p);
    return s;
}

/* Returns 0 if the mailbox is full (the caller then frees the object itself). */
static int post(struct mailbox *m, struct obj o)
{
    int ok = 0;
    pthread_mutex_lock(&m->lock);
    if (m->count < MAILBOX_CAP) {
        m->ring[(m->head + m->count) % MAILBOX_CAP] = o;
        m->count++;
        ok = 1;
    }
    pthread_mutex_unlock(&m->lock);
    return ok;
}

/* Take everything out under the lock, free it outside the lock. */
static uint64_t drain(struct mailbox *m)
{
    struct obj local[MAILBOX_CAP];
    unsigned n;
    pthread_mutex_lock(&m->lock);
    n = m->count;
    for (unsigned i = 0; i < n; i++)
        local[i] = m->ring[(m->head + i) % MAILBOX_CAP];
    m->head = (m->head + n) % MAILBOX_CAP;
    m->count = 0;
    pthread_mutex_unlock(&m->lock);
    uint64_t s = 0;
    for (unsigned i = 0; i < n; i++)
        s += release(local[i]);
    return s;
}

static struct obj make_obj(uint64_t *rng)
{
    struct obj o;
    o.len = (uint32_t)rng_log_size(rng, 16, 8192);
    o.p = xmalloc(o.len);
    o.tag = (unsigned char)rng_next(rng);
    /* Fill the head of the object, as a request parser would. */
    memset(o.p, o.tag, o.len < 256 ? o.len : 256);
    put_tag(o.p, o.len, o.tag);
    return o;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0xC0FFEE + (uint64_t)w->id * 7919;
    uint64_t sum = 0;
    struct obj *set = xmalloc(sizeof(*set) * (size_t)ws);

    for (long long i = 0; i < ws; i++)
        set[i] = make_obj(&rng);
    pthread_barrier_wait(&barrier);

    for (long long op = 0; op < ops; op++) {
        size_t i = (size_t)rng_below(&rng, (uint64_t)ws);
        struct obj old = set[i];
        int remote = nthreads > 1 && rng_below(&rng, 100) < remote_pct;
        if (remote) {
            int to = (w->id + 1 + (int)rng_below(&rng, (uint64_t)nthreads - 1)) % nthreads;
            /* Count the bytes now: once posted, the receiver owns (and frees) it. */
            sum += check_tag(old.p, old.len, old.tag) + old.len;
            if (!post(&boxes[to], old)) {
                free(old.p);
            }
        } else {
            sum += release(old);
        }
        set[i] = make_obj(&rng);
        if (op % DRAIN_EVERY == 0)
            drain(&boxes[w->id]);
    }

    /* Everyone stops posting before the final drain. */
    pthread_barrier_wait(&barrier);
    drain(&boxes[w->id]);
    for (long long i = 0; i < ws; i++)
        sum += release(set[i]);
    free(set);
    w->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    nthreads = (int)arg_ll(argc, argv, 1, 4);
    ops = arg_ll(argc, argv, 2, 1500000);
    ws = arg_ll(argc, argv, 3, 5000);
    remote_pct = (unsigned)arg_ll(argc, argv, 4, 25);
    if (nthreads < 1 || ws < 1 || remote_pct > 100) {
        fprintf(stderr, "need threads >= 1, working_set >= 1, remote_percent <= 100\n");
        return 2;
    }

    boxes = xmalloc(sizeof(*boxes) * (size_t)nthreads);
    struct worker *workers = xmalloc(sizeof(*workers) * (size_t)nthreads);
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    for (int t = 0; t < nthreads; t++) {
        pthread_mutex_init(&boxes[t].lock, NULL);
        boxes[t].head = boxes[t].count = 0;
        workers[t].id = t;
        workers[t].sum = 0;
    }
    for (int t = 0; t < nthreads; t++) {
        if (pthread_create(&workers[t].thread, NULL, run, &workers[t])) {
            fprintf(stderr, "pthread_create failed\n");
            return 3;
        }
    }
    uint64_t sum = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(workers[t].thread, NULL);
        sum += workers[t].sum;
    }
    /* Remote objects are counted by their sender, so this is timing-independent. */
    print_checksum(sum);
    free(workers);
    free(boxes);
    return 0;
}
