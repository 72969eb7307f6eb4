/* dlopen and dlclose of many libraries with thread-local storage while threads allocate. Each
 * copy of lib_tls.so is a distinct module, so the threads' DTVs grow past their initial size
 * and glibc calls malloc from inside __tls_get_addr. A malloc whose own TLS went through
 * __tls_get_addr would recurse or deadlock here. */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define COPIES 24
#define ROUNDS 12
#define WORKERS 4

typedef unsigned long (*touch_fn)(unsigned long);

static pthread_rwlock_t libs_lock = PTHREAD_RWLOCK_INITIALIZER;
static void *handles[COPIES];
static touch_fn touch[COPIES];
static atomic_int stop;
static atomic_ulong calls;

/* One unit of work: an allocation, then a call into a random loaded library. */
static void step(unsigned long long *s, void **keep) {
    int i = (int)(rng_next(s) % 32);
    free(keep[i]);
    keep[i] = malloc(rng_next(s) % 4096);
    pthread_rwlock_rdlock(&libs_lock);
    int k = (int)(rng_next(s) % COPIES);
    if (touch[k]) { touch[k](rng_next(s) % 1000); atomic_fetch_add(&calls, 1); }
    pthread_rwlock_unlock(&libs_lock);
}

/* Runs until told to stop, across loads and unloads. */
static void *worker(void *arg) {
    unsigned long long s = (unsigned long long)(intptr_t)arg + 99;
    void *keep[32] = {0};
    while (!atomic_load(&stop)) step(&s, keep);
    for (int i = 0; i < 32; i++) free(keep[i]);
    return NULL;
}

/* Started while every copy is loaded: a fresh thread whose DTV must cover all of them. */
static void *newcomer(void *arg) {
    unsigned long long s = (unsigned long long)(intptr_t)arg + 7;
    void *keep[32] = {0};
    for (int n = 0; n < 3000; n++) step(&s, keep);
    for (int i = 0; i < 32; i++) free(keep[i]);
    return NULL;
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out) fclose(out);
    return ok;
}

int main(void) {
    CHECK(using_my_alloc());
    const char *dir = getenv("TEST_LIB_DIR");
    CHECK(dir != NULL);
    if (!dir) return DONE("dlopen_tls");
    char src[512], tmpdir[] = "/tmp/my_alloc_tlsXXXXXX", path[COPIES][600];
    snprintf(src, sizeof src, "%s/lib_tls.so", dir);
    CHECK(mkdtemp(tmpdir) != NULL);
    for (int k = 0; k < COPIES; k++) {
        snprintf(path[k], sizeof path[k], "%s/lib_tls_%d.so", tmpdir, k);
        CHECK(copy_file(src, path[k]));
    }
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    int loaded_ok = 1;
    for (int r = 0; r < ROUNDS; r++) {
        for (int k = 0; k < COPIES; k++) {
            void *h = dlopen(path[k], RTLD_NOW | RTLD_LOCAL);
            touch_fn f = h ? (touch_fn)dlsym(h, "tls_touch") : NULL;
            if (!f) { loaded_ok = 0; fprintf(stderr, "dlopen %s: %s\n", path[k], dlerror()); continue; }
            f(1); /* the main thread's TLS block for this module */
            pthread_rwlock_wrlock(&libs_lock);
            handles[k] = h;
            touch[k] = f;
            pthread_rwlock_unlock(&libs_lock);
        }
        pthread_t extra;
        CHECK(pthread_create(&extra, NULL, newcomer, (void *)(intptr_t)(100 + r)) == 0);
        CHECK(pthread_join(extra, NULL) == 0);
        for (int k = 0; k < COPIES; k++) {
            pthread_rwlock_wrlock(&libs_lock);
            void *h = handles[k];
            handles[k] = NULL;
            touch[k] = NULL;
            pthread_rwlock_unlock(&libs_lock);
            if (h) CHECK(dlclose(h) == 0);
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < WORKERS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(loaded_ok);
    CHECK(atomic_load(&calls) >= ROUNDS * 3000); /* every newcomer step called into a library */
    for (int k = 0; k < COPIES; k++) unlink(path[k]);
    rmdir(tmpdir);
    CHECK(heap_check() == 0);
    return DONE("dlopen_tls");
}
