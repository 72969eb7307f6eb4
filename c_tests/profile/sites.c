/* A program whose allocation sites are known, for the profiler's tests: hot_path allocates 80%
 * of the bytes, cold_path 20% (through calloc and realloc), leak_some keeps 32 MiB it never
 * frees, and grow_some keeps 16 MiB of strings grown 16 bytes at a time by realloc. Sizes come from a fixed-seed generator, so every run makes the same calls. Halfway
 * through the leak it asks for a profile snapshot: with the argument "snapshot" by calling
 * my_alloc_profile_snapshot() (looked up at run time, so that the program also runs preloaded),
 * with "signal" by raising SIGUSR2 (run with MY_ALLOC_PROFILE_SIGNAL=USR2). */
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))
#define MIB (1024u * 1024u)

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static size_t next_size(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return 16 + (size_t)(rng % 8177); /* 16 B to 8 KiB, mean about 4 KiB */
}

static void *volatile sink;

NOINLINE void hot_path(size_t bytes) {
    size_t done = 0;
    while (done < bytes) {
        size_t n = next_size();
        char *p = malloc(n);
        p[0] = 1;
        sink = p;
        free(p);
        done += n;
    }
}

NOINLINE void cold_path(size_t bytes) {
    size_t done = 0;
    while (done < bytes) {
        size_t n = next_size();
        char *p = calloc(1, n / 2);
        p = realloc(p, n);
        p[n - 1] = 1;
        sink = p;
        free(p);
        done += n / 2 + n;
    }
}

static void take_snapshot(const char *how) {
    if (strcmp(how, "signal") == 0) {
        raise(SIGUSR2);
    } else if (strcmp(how, "snapshot") == 0) {
        int (*snapshot)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "my_alloc_profile_snapshot");
        if (!snapshot || snapshot() != 0)
            abort();
    }
}

NOINLINE void leak_some(size_t bytes, const char *how) {
    for (size_t done = 0; done < bytes; done += 16384) {
        char *p = malloc(16384);
        p[0] = 1;
        if (done == bytes / 2)
            take_snapshot(how);
    }
}

NOINLINE void grow_some(void) {
    enum { STRINGS = 256, LENGTH = 65536, STEP = 16 };
    static char *strings[STRINGS];
    for (int i = 0; i < STRINGS; i++) {
        for (size_t len = STEP; len <= LENGTH; len += STEP) {
            strings[i] = realloc(strings[i], len);
            strings[i][len - 1] = 1;
        }
    }
    sink = strings;
}

int main(int argc, char **argv) {
    const char *snapshot = argc > 1 ? argv[1] : "";
    for (int round = 0; round < 10; round++) {
        hot_path(80 * MIB);
        cold_path(20 * MIB);
    }
    leak_some(32 * MIB, snapshot);
    grow_some();
    return 0;
}
