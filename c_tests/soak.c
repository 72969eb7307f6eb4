/* Soak: a long, bounded mix of everything at once. WORKERS threads (more than cores) do random
 * malloc/calloc/realloc/free/memalign/posix_memalign/aligned_alloc on their slots; every block
 * carries a pattern (its tag + offset), verified before each free or realloc (and calloc memory
 * must be zero). A share of the blocks is handed through mailboxes to another thread, which
 * verifies and frees it or adopts it (and later reallocs or frees it). Meanwhile the main thread
 * forks repeatedly (each child verifies and frees inherited blocks, allocates, runs a thread,
 * passes the heap check and exits, under alarm()), and a churn thread creates and joins
 * short-lived allocating threads. Resident memory is sampled after a fixed warm-up and after each
 * step of the work (always with the workers' live sets held): at the end it must stay below
 * warm-up * 2 + 32 MiB. The heap check must pass at the end.
 *
 * Bounded by operation counts only. SOAK_SCALE (default 1) multiplies every count but the
 * warm-up's. */
#include "check.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 6
#define SLOTS 1024
#define MAILBOX 128
#define WARMUP_OPS 100000UL /* per worker, not scaled */
#define WORKER_OPS 150000UL /* per worker after the warm-up, times the scale */
#define STEPS 5             /* the work after the warm-up is done in steps, RSS sampled after each */
#define FORKS 40UL          /* times the scale, spread over the steps */
#define CHURN_THREADS 400UL
#define MAIN_BLOCKS 64

static unsigned long scale = 1;

struct blk { unsigned char *p; size_t n; unsigned char tag; };

struct mailbox {
    pthread_mutex_t lock;
    struct blk m[MAILBOX];
    int count;
};

enum { OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_FREE, OP_MEMALIGN, OP_POSIX_MEMALIGN, OP_ALIGNED_ALLOC,
       OP_SENT, OP_RECEIVED_FREED, OP_ADOPTED, NOPS };
static const char *op_names[NOPS] = { "malloc", "calloc", "realloc", "free", "memalign",
    "posix_memalign", "aligned_alloc", "sent", "cross-freed", "adopted" };

struct worker {
    struct mailbox box;
    struct blk slot[SLOTS];
    unsigned long count[NOPS];
    unsigned long bad; /* content, alignment or NULL errors */
    unsigned long long seed;
} __attribute__((aligned(64)));

static struct worker workers[WORKERS];
static pthread_barrier_t phase;

/* ------------------------------------------------------------------------------------------ */

static void fill(unsigned char *p, size_t from, size_t to, unsigned char tag) {
    for (size_t i = from; i < to; i++) p[i] = (unsigned char)(tag + i + (i >> 8));
}

static int intact(const unsigned char *p, size_t n, unsigned char tag) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(tag + i + (i >> 8))) return 0;
    return 1;
}

static int zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static size_t pick_size(unsigned long long *s) {
    unsigned long long r = rng_next(s) % 1000;
    if (r < 650) return 1 + rng_next(s) % 256;         /* small: thread caches */
    if (r < 930) return 256 + rng_next(s) % 8000;      /* quick classes */
    if (r < 997) return 8192 + rng_next(s) % 120000;   /* beyond the quick classes */
    return 256 * 1024 + rng_next(s) % (2 << 20);        /* around the mapping threshold */
}

/* Resident set in bytes (statm's second field), read without stdio. */
static size_t rss(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return 0;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) return 0;
    buf[len] = 0;
    char *s = strchr(buf, ' ');
    return s ? strtoul(s + 1, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Bytes requested by the workers' live blocks; call while they wait at the barrier. */
static size_t live_bytes(void) {
    size_t total = 0;
    for (int i = 0; i < WORKERS; i++) {
        for (int k = 0; k < SLOTS; k++)
            if (workers[i].slot[k].p) total += workers[i].slot[k].n;
        for (int k = 0; k < workers[i].box.count; k++) total += workers[i].box.m[k].n;
    }
    return total;
}

/* ------------------------------------------------------------------------------------------ */
/* Workers */

static void put(struct worker *w, int i, unsigned char *p, size_t n, unsigned char tag) {
    w->slot[i] = (struct blk){ p, n, tag };
}

static void allocate(struct worker *w, int i) {
    unsigned long long *s = &w->seed;
    size_t n = pick_size(s);
    unsigned char tag = (unsigned char)rng_next(s);
    unsigned long long r = rng_next(s) % 100;
    unsigned char *p;
    size_t align = 16;
    if (r < 50) {
        p = malloc(n);
        w->count[OP_MALLOC]++;
    } else if (r < 65) {
        size_t each = 1 + rng_next(s) % 16;
        size_t nmemb = n / each + 1;
        n = nmemb * each;
        p = calloc(nmemb, each);
        w->count[OP_CALLOC]++;
        if (p && !zero(p, n)) w->bad++;
    } else if (r < 70) {
        p = realloc(NULL, n);
        w->count[OP_REALLOC]++;
    } else {
        static const size_t aligns[] = { 16, 32, 64, 128, 256, 1024, 4096, 65536 };
        align = aligns[rng_next(s) % (r < 98 ? 7 : 8)];
        if (r < 80) {
            p = memalign(align, n);
            w->count[OP_MEMALIGN]++;
        } else if (r < 90) {
            void *q = NULL;
            p = posix_memalign(&q, align, n) == 0 ? q : NULL;
            w->count[OP_POSIX_MEMALIGN]++;
        } else {
            n = (n + align - 1) & ~(align - 1);
            p = aligned_alloc(align, n);
            w->count[OP_ALIGNED_ALLOC]++;
        }
    }
    if (!p || ((uintptr_t)p & (align - 1)) || malloc_usable_size(p) < n) {
        w->bad++;
        return;
    }
    fill(p, 0, n, tag);
    put(w, i, p, n, tag);
}

static void drain(struct worker *w) {
    struct mailbox *b = &w->box;
    pthread_mutex_lock(&b->lock);
    for (int k = 0; k < b->count; k++) {
        struct blk m = b->m[k];
        if (!intact(m.p, m.n, m.tag)) w->bad++;
        int i = (int)(rng_next(&w->seed) % SLOTS);
        if (!w->slot[i].p && rng_next(&w->seed) % 4 == 0) {
            w->slot[i] = m; /* adopted: this thread reallocs or frees it later */
            w->count[OP_ADOPTED]++;
        } else {
            free(m.p);
            w->count[OP_RECEIVED_FREED]++;
        }
    }
    b->count = 0;
    pthread_mutex_unlock(&b->lock);
}

static void release(struct worker *w, int i) {
    unsigned long long *s = &w->seed;
    struct blk *b = &w->slot[i];
    if (!intact(b->p, b->n, b->tag)) w->bad++;
    unsigned long long r = rng_next(s) % 100;
    if (r < 25) {
        /* realloc to a new size: the prefix survives, the extension is filled */
        size_t n2 = pick_size(s);
        unsigned char *q = realloc(b->p, n2);
        w->count[OP_REALLOC]++;
        if (!q) { w->bad++; b->p = NULL; return; }
        size_t keep = n2 < b->n ? n2 : b->n;
        if (!intact(q, keep, b->tag) || ((uintptr_t)q & 15)) w->bad++;
        fill(q, keep, n2, b->tag);
        b->p = q;
        b->n = n2;
        return;
    }
    if (r < 45) {
        int peer = (int)(rng_next(s) % WORKERS);
        struct worker *pw = &workers[peer];
        if (pw != w) {
            int sent = 0;
            pthread_mutex_lock(&pw->box.lock);
            if (pw->box.count < MAILBOX) { pw->box.m[pw->box.count++] = *b; sent = 1; }
            pthread_mutex_unlock(&pw->box.lock);
            if (sent) {
                w->count[OP_SENT]++;
                b->p = NULL;
                return;
            }
        }
    }
    free(b->p);
    w->count[OP_FREE]++;
    b->p = NULL;
}

static void run_ops(struct worker *w, unsigned long ops) {
    for (unsigned long op = 0; op < ops; op++) {
        int i = (int)(rng_next(&w->seed) % SLOTS);
        if (w->slot[i].p) {
            if (rng_next(&w->seed) % 5 < 3) release(w, i);
            else if (!intact(w->slot[i].p, w->slot[i].n, w->slot[i].tag)) w->bad++;
        } else {
            allocate(w, i);
        }
        if ((op & 127) == 0) drain(w);
    }
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    unsigned long ops = WORKER_OPS * scale;
    run_ops(w, WARMUP_OPS);
    pthread_barrier_wait(&phase); /* main samples RSS */
    pthread_barrier_wait(&phase);
    for (int step = 0; step < STEPS; step++) {
        run_ops(w, ops / STEPS);
        pthread_barrier_wait(&phase); /* main samples RSS */
        pthread_barrier_wait(&phase);
    }
    for (int i = 0; i < SLOTS; i++)
        if (w->slot[i].p) {
            if (!intact(w->slot[i].p, w->slot[i].n, w->slot[i].tag)) w->bad++;
            free(w->slot[i].p);
            w->slot[i].p = NULL;
        }
    drain(w);
    for (int i = 0; i < SLOTS; i++) /* adopted in the last drain */
        if (w->slot[i].p) {
            free(w->slot[i].p);
            w->slot[i].p = NULL;
        }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Short-lived threads and fork children */

static void *short_lived(void *arg) {
    unsigned long long s = (unsigned long long)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
    void *held[16] = { 0 };
    unsigned long bad = 0;
    for (int op = 0; op < 300; op++) {
        int i = (int)(rng_next(&s) % 16);
        if (held[i]) {
            if (*(unsigned char *)held[i] != (unsigned char)i) bad++;
            free(held[i]);
            held[i] = NULL;
        } else {
            size_t n = 1 + rng_next(&s) % (op % 50 == 0 ? 100000 : 600);
            held[i] = malloc(n);
            if (!held[i]) { bad++; continue; }
            memset(held[i], i, n);
        }
    }
    /* Leaves a block for the joiner to free (a free from another thread after this one died). */
    for (int i = 1; i < 16; i++) free(held[i]);
    if (!held[0]) held[0] = malloc(32);
    if (held[0]) *(unsigned long *)held[0] = bad;
    return held[0];
}

static unsigned long churned, churn_bad;

static void *churn_main(void *arg) {
    (void)arg;
    unsigned long n = CHURN_THREADS * scale;
    for (unsigned long k = 0; k < n; k += 2) {
        pthread_t t[2];
        int made[2];
        for (int j = 0; j < 2; j++) made[j] = pthread_create(&t[j], NULL, short_lived, (void *)(uintptr_t)(k + j)) == 0;
        for (int j = 0; j < 2; j++) {
            if (!made[j]) { churn_bad++; continue; }
            void *ret = NULL;
            pthread_join(t[j], &ret);
            if (!ret || *(unsigned long *)ret != 0) churn_bad++;
            free(ret);
            churned++;
        }
    }
    return NULL;
}

static struct blk main_blocks[MAIN_BLOCKS];

static void *child_thread(void *arg) {
    unsigned long long s = (unsigned long long)(uintptr_t)arg;
    void *held[32] = { 0 };
    for (int op = 0; op < 3000; op++) {
        int i = (int)(rng_next(&s) % 32);
        free(held[i]);
        held[i] = (op & 1) ? malloc(pick_size(&s)) : NULL;
        if (held[i]) memset(held[i], 0x77, 16);
    }
    for (int i = 0; i < 32; i++) free(held[i]);
    return NULL;
}

/* In the fork child: exit status 0 when all is well, else what went wrong (child_errors). */
static const char *child_errors[] = { "ok", "?", "inherited block damaged", "realloc of an inherited block failed",
    "malloc failed", "pthread_create failed", "heap check failed" };
static int child(unsigned long k) {
    alarm(20);
    unsigned long long s = k + 99;
    for (int i = 0; i < MAIN_BLOCKS; i++) {
        struct blk *b = &main_blocks[i];
        if (!intact(b->p, b->n, b->tag)) return 2;
        if (i % 2) {
            free(b->p);
        } else {
            unsigned char *q = realloc(b->p, b->n * 2 + 1);
            if (!q || !intact(q, b->n, b->tag)) return 3;
            free(q);
        }
    }
    void *mine[200];
    for (int i = 0; i < 200; i++) {
        mine[i] = malloc(pick_size(&s));
        if (!mine[i]) return 4;
        memset(mine[i], i, 8);
    }
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)k) != 0) return 5;
    pthread_join(t, NULL);
    for (int i = 0; i < 200; i++) free(mine[i]);
    return heap_check() == 0 ? 0 : 6;
}

static void renew_main_blocks(unsigned long long *s) {
    for (int i = 0; i < MAIN_BLOCKS; i++) {
        struct blk *b = &main_blocks[i];
        if (b->p) {
            CHECK(intact(b->p, b->n, b->tag));
            if (rng_next(s) % 2) continue;
            free(b->p);
        }
        b->n = pick_size(s);
        b->tag = (unsigned char)rng_next(s);
        b->p = malloc(b->n);
        CHECK(b->p != NULL);
        if (b->p) fill(b->p, 0, b->n, b->tag);
    }
}

/* ------------------------------------------------------------------------------------------ */

int main(void) {
    CHECK(using_my_alloc());
    const char *sc = getenv("SOAK_SCALE");
    if (sc && atol(sc) > 0) scale = (unsigned long)atol(sc);
    unsigned long long s = 4242;

    pthread_barrier_init(&phase, NULL, WORKERS + 1);
    pthread_t wt[WORKERS], ct;
    for (int i = 0; i < WORKERS; i++) {
        pthread_mutex_init(&workers[i].box.lock, NULL);
        workers[i].seed = 0xD1B54A32D192ED03ULL * (unsigned long long)(i + 1);
    }
    for (int i = 0; i < WORKERS; i++) CHECK(pthread_create(&wt[i], NULL, worker_main, &workers[i]) == 0);
    CHECK(pthread_create(&ct, NULL, churn_main, NULL) == 0);

    renew_main_blocks(&s);
    pthread_barrier_wait(&phase); /* workers warmed up */
    size_t rss_at[STEPS + 1], live_at[STEPS + 1];
    rss_at[0] = rss();
    live_at[0] = live_bytes();
    pthread_barrier_wait(&phase);

    /* Forks while the workers run, a share in each step. */
    unsigned long forks = FORKS * scale, child_failures = 0, k = 0;
    for (int step = 0; step < STEPS; step++) {
        for (; k < forks * (step + 1) / STEPS; k++) {
            pid_t pid = fork();
            if (pid == 0) _exit(child(k));
            CHECK(pid > 0);
            if (pid < 0) continue;
            int st = 0;
            CHECK(waitpid(pid, &st, 0) == pid);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                child_failures++;
                int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
                fprintf(stderr, "soak: fork child %lu: %s %d (%s)\n", k, WIFEXITED(st) ? "exit" : "signal",
                        WIFEXITED(st) ? code : WTERMSIG(st), code >= 0 && code <= 6 ? child_errors[code] : "killed");
            }
            renew_main_blocks(&s);
        }
        if (step == STEPS - 1) {
            CHECK(pthread_join(ct, NULL) == 0);
            CHECK(churn_bad == 0);
        }
        pthread_barrier_wait(&phase); /* workers done with this step, their live blocks held */
        rss_at[step + 1] = rss();
        live_at[step + 1] = live_bytes();
        pthread_barrier_wait(&phase);
    }
    CHECK(child_failures == 0);
    size_t rss_warm = rss_at[0], rss_end = rss_at[STEPS], rss_peak = 0;
    for (int i = 0; i <= STEPS; i++) rss_peak = rss_at[i] > rss_peak ? rss_at[i] : rss_peak;
    for (int i = 0; i < WORKERS; i++) CHECK(pthread_join(wt[i], NULL) == 0);

    unsigned long total[NOPS] = { 0 }, bad = 0;
    for (int i = 0; i < WORKERS; i++) {
        struct mailbox *b = &workers[i].box; /* handed over after the owner's last drain */
        for (int k = 0; k < b->count; k++) {
            if (!intact(b->m[k].p, b->m[k].n, b->m[k].tag)) bad++;
            free(b->m[k].p);
        }
        b->count = 0;
        bad += workers[i].bad;
        for (int k = 0; k < NOPS; k++) total[k] += workers[i].count[k];
    }
    for (int i = 0; i < MAIN_BLOCKS; i++) {
        CHECK(intact(main_blocks[i].p, main_blocks[i].n, main_blocks[i].tag));
        free(main_blocks[i].p);
    }
    CHECK(bad == 0);
    CHECK(total[OP_RECEIVED_FREED] > 1000 && total[OP_ADOPTED] > 100);
    CHECK(rss_warm > 0 && rss_end > 0);
    CHECK(rss_end <= rss_warm * 2 + (32UL << 20));
    CHECK(heap_check() == 0);
    size_t rss_final = rss();

    printf("soak: scale %lu, %d workers:", scale, WORKERS);
    for (int k = 0; k < NOPS; k++) printf(" %s %lu%s", op_names[k], total[k], k + 1 < NOPS ? "," : "");
    printf("\nsoak: %lu forks, %lu short-lived threads; RSS/live (MiB) after warm-up %zu/%zu, after each step",
           forks, churned, rss_warm >> 20, live_at[0] >> 20);
    for (int i = 1; i <= STEPS; i++) printf(" %zu/%zu", rss_at[i] >> 20, live_at[i] >> 20);
    printf(" (peak %zu, bound %zu), after freeing everything %zu\n", rss_peak >> 20,
           (rss_warm * 2 + (32UL << 20)) >> 20, rss_final >> 20);
    return DONE("soak");
}
