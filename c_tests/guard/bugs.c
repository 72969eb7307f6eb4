/* One bug (or one correct use) of a block that is guarded, chosen by argv[1], for the guarded
 * blocks' tests (run.sh runs it with every allocation sampled, and in guard mode). The bugs must
 * abort with the report run.sh expects; the correct uses must exit 0. */
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK 64 /* a multiple of 16: the block ends exactly at its guard page */

static volatile char sink;

static char *block(size_t n) {
    char *p = malloc(n);
    if (!p) abort();
    memset(p, 'x', n);
    return p;
}

static void fail(const char *what) {
    fprintf(stderr, "bugs: %s\n", what);
    exit(1);
}

static void *churn(void *arg) {
    char **shared = arg;
    for (int i = 0; i < 500; i++) {
        char *p = block(1 + (size_t)(i * 37) % 2000);
        if (p[0] != 'x') fail("thread block lost its contents");
        free(p);
    }
    free(*shared); /* a block another thread allocated */
    return NULL;
}

static int correct_use(const char *how) {
    if (!strcmp(how, "realloc")) {
        char *p = block(BLOCK);
        p = realloc(p, 200);
        if (!p || p[BLOCK - 1] != 'x') fail("realloc to 200 lost data");
        memset(p, 'y', 200);
        p = realloc(p, 9000);
        if (!p || p[199] != 'y') fail("realloc to 9000 lost data");
        p = realloc(p, 10);
        if (!p || p[9] != 'y') fail("realloc to 10 lost data");
        if (malloc_usable_size(p) < 10) fail("usable size below the request");
        free(p);
    } else if (!strcmp(how, "memalign")) {
        void *a = NULL;
        if (posix_memalign(&a, 256, 100) || (uintptr_t)a % 256) fail("posix_memalign(256)");
        char *b = aligned_alloc(4096, 64), *c = memalign(64, 1000);
        if (!b || (uintptr_t)b % 4096 || !c || (uintptr_t)c % 64) fail("aligned_alloc/memalign");
        memset(a, 1, 100), memset(b, 2, 64), memset(c, 3, 1000);
        char *z = calloc(10, 10);
        for (int i = 0; i < 100; i++)
            if (z[i]) fail("calloc not zeroed");
        free(a), free(b), free(c), free(z);
    } else if (!strcmp(how, "fork")) {
        char *p = block(BLOCK);
        pid_t pid = fork();
        if (pid == 0) {
            char *q = block(BLOCK);
            if (p[BLOCK - 1] != 'x') _exit(3);
            free(q), free(p);
            _exit(0);
        }
        int status = 0;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
            fail("the fork child failed");
        free(p);
    } else if (!strcmp(how, "threads")) {
        pthread_t t[4];
        char *shared[4];
        for (int i = 0; i < 4; i++) shared[i] = block(BLOCK);
        for (int i = 0; i < 4; i++)
            if (pthread_create(&t[i], NULL, churn, &shared[i])) fail("pthread_create");
        for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    } else {
        return 2;
    }
    printf("%s: ok\n", how);
    return 0;
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "";
    char src[BLOCK + 32];
    memset(src, 'z', sizeof src);
    if (!strcmp(how, "overflow1-write")) {
        char *p = block(BLOCK);
        p[BLOCK] = 1;
    } else if (!strcmp(how, "overflow1-read")) {
        char *p = block(BLOCK);
        sink = p[BLOCK];
    } else if (!strcmp(how, "overflow32-write")) {
        char *p = block(BLOCK);
        p[BLOCK + 31] = 1;
    } else if (!strcmp(how, "overflow32-read")) {
        char *p = block(BLOCK);
        sink = p[BLOCK + 31];
    } else if (!strcmp(how, "overflow-memcpy")) {
        char *p = block(BLOCK);
        memcpy(p, src, BLOCK + 1);
    } else if (!strcmp(how, "overflow-memcpy-read")) {
        char *p = block(BLOCK);
        memcpy(src, p, BLOCK + 1);
    } else if (!strcmp(how, "overflow-odd")) {
        char *p = block(13); /* ends 3 bytes short of its guard page: found at free */
        p[13] = 1;
        free(p);
    } else if (!strcmp(how, "underflow")) {
        char *p = block(BLOCK);
        p[-1] = 1;
        free(p);
    } else if (!strcmp(how, "uaf-read")) {
        char *p = block(BLOCK);
        free(p);
        sink = p[3];
    } else if (!strcmp(how, "uaf-write")) {
        char *p = block(BLOCK);
        free(p);
        p[3] = 1;
    } else if (!strcmp(how, "uaf-after-reuse")) {
        char *p = block(BLOCK);
        free(p);
        for (int i = 0; i < 50; i++) free(block(BLOCK)); /* the heap reuses memory meanwhile */
        p[3] = 1;
    } else if (!strcmp(how, "malloc0-write")) {
        char *p = malloc(0);
        p[0] = 1;
    } else if (!strcmp(how, "double-free")) {
        char *p = block(BLOCK);
        free(p);
        free(p);
    } else {
        return correct_use(how);
    }
    fprintf(stderr, "bugs: %s went unnoticed\n", how);
    return 1;
}
