/* Many threads (more than cores) allocate, check and free random-sized blocks; a share of the
 * blocks is handed to another thread to free (cross-thread frees). Every block carries a pattern
 * derived from its owner and slot, verified before it is freed, so any overlap or corruption
 * between threads shows up as a content mismatch. */
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define THREADS 8
#define SLOTS 512
#define OPS 150000
#define MAILBOX 256

struct msg { unsigned char *p; size_t n; unsigned char tag; };

struct mailbox {
    pthread_mutex_t lock;
    struct msg m[MAILBOX];
    int count;
};

static struct mailbox boxes[THREADS];
static unsigned long bad_contents[THREADS], cross_frees[THREADS];

static size_t pick_size(unsigned long long *s) {
    unsigned long long r = rng_next(s) % 1000;
    if (r < 700) return rng_next(s) % 256;           /* small: thread caches */
    if (r < 950) return 256 + rng_next(s) % 8000;    /* medium */
    if (r < 998) return 8192 + rng_next(s) % 100000; /* beyond the quick classes */
    return 300000 + rng_next(s) % 700000;            /* mapped */
}

static int verify(const unsigned char *p, size_t n, unsigned char tag) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag + i)) return 0;
    return 1;
}

static void fill(unsigned char *p, size_t n, unsigned char tag) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(tag + i);
}

static void drain(int self) {
    struct mailbox *b = &boxes[self];
    pthread_mutex_lock(&b->lock);
    for (int i = 0; i < b->count; i++) {
        if (!verify(b->m[i].p, b->m[i].n, b->m[i].tag)) bad_contents[self]++;
        free(b->m[i].p);
        cross_frees[self]++;
    }
    b->count = 0;
    pthread_mutex_unlock(&b->lock);
}

static void *worker(void *arg) {
    int self = (int)(intptr_t)arg;
    unsigned long long s = 0x9E3779B97F4A7C15ULL * (unsigned long long)(self + 1);
    struct msg slot[SLOTS];
    memset(slot, 0, sizeof slot);
    for (int op = 0; op < OPS; op++) {
        int i = (int)(rng_next(&s) % SLOTS);
        if (slot[i].p) {
            if (!verify(slot[i].p, slot[i].n, slot[i].tag)) bad_contents[self]++;
            int peer = (int)(rng_next(&s) % THREADS);
            struct mailbox *b = &boxes[peer];
            int handed = 0;
            if (peer != self && rng_next(&s) % 4 == 0) {
                pthread_mutex_lock(&b->lock);
                if (b->count < MAILBOX) { b->m[b->count++] = slot[i]; handed = 1; }
                pthread_mutex_unlock(&b->lock);
            }
            if (!handed) {
                if (rng_next(&s) % 8 == 0) {
                    /* realloc keeps the prefix that fits */
                    size_t n2 = pick_size(&s);
                    unsigned char *q = realloc(slot[i].p, n2 ? n2 : 1);
                    size_t keep = n2 < slot[i].n ? n2 : slot[i].n;
                    if (!q || !verify(q, keep, slot[i].tag)) bad_contents[self]++;
                    free(q);
                } else {
                    free(slot[i].p);
                }
            }
            slot[i].p = NULL;
        } else {
            size_t n = pick_size(&s);
            unsigned char tag = (unsigned char)(self * 31 + i);
            unsigned char *p = (rng_next(&s) % 16 == 0) ? calloc(1, n) : malloc(n);
            if (!p || ((uintptr_t)p & 15)) { bad_contents[self]++; continue; }
            fill(p, n, tag);
            slot[i] = (struct msg){ p, n, tag };
        }
        if ((op & 255) == 0) drain(self);
    }
    for (int i = 0; i < SLOTS; i++)
        if (slot[i].p) {
            if (!verify(slot[i].p, slot[i].n, slot[i].tag)) bad_contents[self]++;
            free(slot[i].p);
        }
    drain(self);
    return NULL;
}

int main(void) {
    CHECK(using_my_alloc());
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&boxes[i].lock, NULL);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    unsigned long total_cross = 0;
    for (int i = 0; i < THREADS; i++) {
        drain(i); /* blocks handed over after the owner's last drain */
        CHECK(bad_contents[i] == 0);
        total_cross += cross_frees[i];
    }
    CHECK(total_cross > 10000); /* the cross-thread path really ran */
    CHECK(heap_check() == 0);
    return DONE("threads_stress");
}
