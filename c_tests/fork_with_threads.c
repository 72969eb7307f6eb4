/* fork() while other threads are inside malloc: the child must be able to allocate (no lock
 * left held by a thread that does not exist in the child), start threads of its own, and find
 * the heap sound. Each child has an alarm, so a deadlock fails the test instead of hanging it. */
#include "check.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUSY_THREADS 4
#define FORKS 60

static atomic_int stop;

static void *busy(void *arg) {
    unsigned long long s = (unsigned long long)(intptr_t)arg * 7919 + 1;
    void *keep[64] = {0};
    while (!atomic_load(&stop)) {
        int i = (int)(rng_next(&s) % 64);
        free(keep[i]);
        size_t n = rng_next(&s) % 4 == 0 ? 20000 + rng_next(&s) % 400000 : rng_next(&s) % 2000;
        keep[i] = malloc(n);
        if (keep[i]) memset(keep[i], 1, n < 64 ? n : 64);
    }
    for (int i = 0; i < 64; i++) free(keep[i]);
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) free(malloc((size_t)i * 13 % 5000));
    return (void *)1;
}

/* Runs in the child: exercise every path, then report through the exit status. */
static int child_work(void) {
    alarm(20);
    int ok = 1;
    void *p[300];
    for (int i = 0; i < 300; i++) {
        size_t n = i % 3 == 0 ? (size_t)i * 5000 : (size_t)i * 7; /* small, medium, mapped */
        p[i] = malloc(n + 1);
        if (!p[i]) ok = 0; else memset(p[i], 0x5a, n + 1);
    }
    for (int i = 0; i < 300; i++) free(p[i]);
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0 || pthread_join(t, &r) != 0 || r != (void *)1) ok = 0;
    if (heap_check() != 0) ok = 0;
    return ok ? 0 : 1;
}

int main(void) {
    CHECK(using_my_alloc());
    pthread_t t[BUSY_THREADS];
    for (int i = 0; i < BUSY_THREADS; i++) CHECK(pthread_create(&t[i], NULL, busy, (void *)(intptr_t)i) == 0);
    int children_ok = 0;
    for (int f = 0; f < FORKS; f++) {
        /* Let the busy threads get going so that some are inside malloc at the fork. */
        for (int i = 0; i < 500; i++) free(malloc(100));
        pid_t pid = fork();
        if (pid == 0) _exit(child_work());
        CHECK(pid > 0);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) children_ok++;
        else fprintf(stderr, "child %d: %s %d\n", f, WIFSIGNALED(status) ? "signal" : "exit",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    }
    CHECK(children_ok == FORKS);
    atomic_store(&stop, 1);
    for (int i = 0; i < BUSY_THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(heap_check() == 0);
    return DONE("fork_with_threads");
}
