/* spawn: run one benchmark process and report its wall time and peak RSS.
 *
 *   spawn REPORT_FILE TIMEOUT_S PRELOAD_LIB|- PROGRAM [ARGS...]
 *
 * Why this exists instead of fork/exec straight from bench/run.py: on Linux, exec()
 * records the high-water RSS of the process's *old* address space into the peak RSS that
 * getrusage/wait4 report (ru_maxrss). A child forked from the Python runner therefore
 * starts with the runner's ~20 MiB as its "peak", which swamps small benchmarks. Forked
 * from this small C program, the floor is ~1 MiB, the same for every allocator.
 *
 * The allocator is passed as an argument, not in our own environment, so this launcher
 * never runs with it preloaded (its footprint would leak into the child's ru_maxrss);
 * LD_PRELOAD is added only to the child's environment.
 * The child inherits stdin/stdout/stderr. After TIMEOUT_S seconds it is killed (SIGKILL).
 * REPORT_FILE gets one line: "status <wait status> wall_ns <n> maxrss_kib <n> timedout <0|1>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t timed_out;
static volatile pid_t child;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
    if (child > 0)
        kill(child, SIGKILL);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: spawn REPORT_FILE TIMEOUT_S PRELOAD_LIB|- PROGRAM [ARGS...]\n");
        return 2;
    }
    const char *report = argv[1];
    unsigned timeout = (unsigned)atoi(argv[2]);
    const char *preload = argv[3];

    /* The child's environment: ours without LD_PRELOAD, plus the requested one. Built
     * before fork so the child does nothing but exec. */
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 2, sizeof(char *));
    char *pre = malloc(strlen(preload) + 12);
    if (!envp || !pre)
        return 3;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0)
            envp[k++] = environ[i];
    if (strcmp(preload, "-") != 0) {
        sprintf(pre, "LD_PRELOAD=%s", preload);
        envp[k++] = pre;
    }
    envp[k] = NULL;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 3;
    }
    if (pid == 0) {
        execve(argv[4], argv + 4, envp);
        fprintf(stderr, "spawn: cannot exec %s: %s\n", argv[4], strerror(errno));
        _exit(127);
    }
    child = pid;
    alarm(timeout);

    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("wait4");
            return 3;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    alarm(0);

    long long ns = (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    FILE *f = fopen(report, "w");
    if (!f) {
        perror(report);
        return 3;
    }
    fprintf(f, "status %d wall_ns %lld maxrss_kib %ld timedout %d\n", status, ns, ru.ru_maxrss, (int)timed_out);
    fclose(f);
    return 0;
}
