/* The program's own SIGSEGV handler beside the guarded blocks' (run.sh runs it with every
 * allocation sampled):
 *   mine-first: installs a handler that repairs faults on a page of its own and hands any other
 *     fault to the action it displaced (ours); a fault on its page must reach it and be repaired,
 *     and then a guarded overflow must still be reported by ours, through it.
 *   dlopen: installs its handler, then dlopens the allocator (whose constructor installs ours on
 *     top): a fault that is not ours must still reach the program's handler.
 *   none: no handler of its own: a null dereference must kill it with SIGSEGV, as without us. */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *my_page;
static struct sigaction displaced;
static volatile int repaired;

static void mine(int sig, siginfo_t *info, void *ctx) {
    char *a = info->si_addr;
    if (a >= my_page && a < my_page + 4096) {
        mprotect(my_page, 4096, PROT_READ | PROT_WRITE);
        repaired++;
        return;
    }
    if (displaced.sa_flags & SA_SIGINFO)
        displaced.sa_sigaction(sig, info, ctx);
    else if (displaced.sa_handler != SIG_DFL && displaced.sa_handler != SIG_IGN)
        displaced.sa_handler(sig);
    else
        signal(sig, SIG_DFL);
}

static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = mine;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &displaced)) abort();
    my_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (my_page == MAP_FAILED) abort();
}

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "";
    if (!strcmp(how, "mine-first")) {
        install();
        my_page[10] = 1;
        if (repaired != 1) return 1;
        fprintf(stderr, "handlers: the program's handler repaired its own fault\n");
        char *p = malloc(64);
        p[64] = 1;
        fprintf(stderr, "handlers: the overflow went unnoticed\n");
        return 1;
    }
    if (!strcmp(how, "dlopen")) {
        install();
        if (!dlopen(argc > 2 ? argv[2] : "libmy_alloc.so", RTLD_NOW)) {
            fprintf(stderr, "handlers: %s\n", dlerror());
            return 1;
        }
        my_page[10] = 1;
        if (repaired != 1) return 1;
        fprintf(stderr, "handlers: the program's handler ran after the allocator's was installed\n");
        return 0;
    }
    if (!strcmp(how, "none")) {
        free(malloc(64));
        *(volatile char *)(argc > 5 ? argv[5] : NULL) = 1;
        return 1;
    }
    return 2;
}
