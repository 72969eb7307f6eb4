/* Thousands of short-lived threads, each allocating, freeing, and handing some blocks back to
 * the main thread. Exiting threads must give their caches back: resident memory must stay
 * bounded rather than grow with the number of threads ever created. */
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 250
#define PER_ROUND 8 /* concurrent threads per round: 2000 threads in all */
#define BLOCKS 200

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

struct job { int id; void *handed[16]; int bad; };

static void *run(void *arg) {
    struct job *j = arg;
    unsigned long long s = (unsigned long long)j->id * 2654435761ULL + 1;
    void *mine[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
        size_t n = rng_next(&s) % 3000;
        mine[i] = malloc(n);
        if (!mine[i]) j->bad++; else memset(mine[i], j->id & 0xff, n);
    }
    for (int i = 0; i < BLOCKS; i++) {
        if (i < 16) j->handed[i] = mine[i]; /* freed by the main thread later */
        else free(mine[i]);
    }
    return NULL;
}

int main(void) {
    CHECK(using_my_alloc());
    long rss_after_warmup = 0;
    int created = 0, bad = 0;
    struct job jobs[PER_ROUND];
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t t[PER_ROUND];
        for (int i = 0; i < PER_ROUND; i++) {
            jobs[i].id = r * PER_ROUND + i;
            jobs[i].bad = 0;
            if (pthread_create(&t[i], NULL, run, &jobs[i]) == 0) created++;
            else bad++;
        }
        for (int i = 0; i < PER_ROUND; i++) {
            pthread_join(t[i], NULL);
            bad += jobs[i].bad;
            for (int k = 0; k < 16; k++) free(jobs[i].handed[k]);
        }
        if (r == 20) rss_after_warmup = rss_kib();
    }
    long rss_end = rss_kib();
    CHECK(created == ROUNDS * PER_ROUND);
    CHECK(bad == 0);
    /* 2000 threads went by: if their caches leaked, each would pin tens of KiB at least. */
    CHECK(rss_after_warmup > 0 && rss_end - rss_after_warmup < 16 * 1024);
    CHECK(heap_check() == 0);
    printf("rss after 160 threads: %ld KiB, after %d threads: %ld KiB\n", rss_after_warmup, created, rss_end);
    return DONE("thread_churn");
}
