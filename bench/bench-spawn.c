/* SPDX-License-Identifier: MIT */
/*
 * bench-spawn.c: what starting a process costs as the parent grows.
 * For parent resident sizes of 10 MB, 1 GB and 4 GB (or the largest that
 * fits in half the available memory), it times, start to reaped:
 *   fork()+exec(/bin/true)  vs  forksafe_spawn(/bin/true), without and with
 *   FORKSAFE_SPAWN_PIDFD (posix_spawn() and forksafe's own clone() path)
 *   vs  raw posix_spawn(/bin/true); and fork()+_exit(0) of the big parent
 *   vs forksafe_zygote_spawn() of an empty worker (the server was started
 *   while the parent was small).
 * Methods are interleaved round by round; medians and ratios are printed.
 */
#include <forksafe.h>

#include <errno.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum {
    M_FORK_EXEC,
    M_FS_SPAWN,
    M_FS_PIDFD,
    M_POSIX_SPAWN,
    M_FORK,
    M_ZYGOTE,
    M_COUNT
};
static const char *const method_names[M_COUNT] = {
    "fork+exec",   "forksafe_spawn", "forksafe_spawn PIDFD",
    "posix_spawn", "fork+_exit",     "zygote_spawn"};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            perror("waitpid");
            exit(1);
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench-spawn: child failed (status %d)\n", st);
        exit(1);
    }
}

static int empty_worker(const void *arg, size_t len, const int *fds,
                        size_t nfds)
{
    (void)arg, (void)len, (void)fds, (void)nfds;
    return 0;
}

/* One timed start-to-reaped run of method m, in milliseconds. */
static double run_once(int m)
{
    static char *const argv[] = {"true", NULL};
    pid_t pid = -1;
    int r = 0, pidfd = -1;
    struct forksafe_spawn_opts po;
    double t0 = now_ms();
    switch (m) {
    case M_FORK_EXEC:
        pid = fork();
        if (pid == 0) {
            execve("/bin/true", argv, environ);
            _exit(127);
        }
        break;
    case M_FS_SPAWN:
        r = forksafe_spawn(&pid, "/bin/true", argv, NULL, NULL);
        break;
    case M_FS_PIDFD:
        memset(&po, 0, sizeof po);
        po.flags = FORKSAFE_SPAWN_PIDFD;
        po.pidfd_out = &pidfd;
        r = forksafe_spawn(&pid, "/bin/true", argv, NULL, &po);
        break;
    case M_POSIX_SPAWN:
        r = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
        break;
    case M_FORK:
        pid = fork();
        if (pid == 0)
            _exit(0);
        break;
    case M_ZYGOTE:
        r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &pid);
        break;
    }
    if (r != 0 || pid < 0) {
        fprintf(stderr, "bench-spawn: %s failed: %s\n", method_names[m],
                strerror(r ? r : errno));
        exit(1);
    }
    reap(pid);
    if (pidfd >= 0)
        close(pidfd);
    return now_ms() - t0;
}

/* The spawn methods get this many rounds per fork round, so their
   medians rest on more samples for little wall time. */
#define CHEAP_REPS 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Grow the parent to total_mb resident megabytes of 4 KiB pages (huge
   pages would make page tables, and so fork(), artificially cheap). */
static void grow_to(size_t total_mb)
{
    static size_t have_mb;
    if (total_mb <= have_mb)
        return;
    size_t len = (total_mb - have_mb) << 20;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    madvise(p, len, MADV_NOHUGEPAGE);
    for (size_t off = 0; off < len; off += 4096)
        p[off] = 1;
    have_mb = total_mb;
}

static size_t available_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t kb = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "MemAvailable: %zu kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb / 1024;
}

int main(void)
{
    /* The fork server first, while the process is small and has no
       threads: that is the whole point of it. */
    if (forksafe_zygote_register("empty", empty_worker) != 0 ||
        forksafe_zygote_start() != 0) {
        fprintf(stderr, "bench-spawn: cannot start the fork server\n");
        return 1;
    }
    int rounds = getenv("BENCH_ROUNDS") ? atoi(getenv("BENCH_ROUNDS")) : 15;
    if (rounds < 1 || rounds > 1000)
        rounds = 15;
    srand(1);
    size_t sizes[] = {10, 1024, 4096};
    size_t cap = available_mb() / 2;
    printf("bench-spawn: start to reaped, ms, medians; %d interleaved rounds "
           "of the fork methods, then %d of the spawn methods; 4 KiB pages\n",
           rounds, rounds * CHEAP_REPS);
    printf("%8s %10s %10s %10s %10s %8s %8s %8s | %10s %10s %8s\n", "parent",
           "fork+exec", "fs_spawn", "fs_pidfd", "posix_sp", "fs/posix",
           "pfd/posix", "fe/fs", "fork", "zygote", "fork/zyg");
    double zyg_first = 0, zyg_last = 0;
    double *t[M_COUNT];
    for (int m = 0; m < M_COUNT; m++)
        t[m] = calloc((size_t)rounds * CHEAP_REPS, sizeof(double));
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t mb = sizes[s];
        if (mb > cap) {
            printf("(%zu MB does not fit in half of the available %zu MB; "
                   "using %zu MB)\n",
                   mb, cap * 2, cap);
            mb = cap;
        }
        grow_to(mb);
        for (int m = 0; m < M_COUNT; m++) /* warm up: page cache, server */
            run_once(m);
        int n[M_COUNT] = {0};
        /* Two phases: the fork-based methods, then the spawn methods. The
           exit of a big fork()ed child leaves cache misses and deferred
           page-table freeing behind, which would be charged to whatever
           runs next; the cheap methods are compared among themselves,
           away from that wake. Within a phase the order is shuffled each
           round (fixed seed: repeatable). */
        static const int phases[2][4] = {
            {M_FORK_EXEC, M_FORK, -1, -1},
            {M_FS_SPAWN, M_FS_PIDFD, M_POSIX_SPAWN, M_ZYGOTE}};
        for (int ph = 0; ph < 2; ph++) {
            int cnt = phases[ph][2] < 0 ? 2 : 4;
            int per = ph == 0 ? 1 : CHEAP_REPS;
            for (int r = 0; r < rounds * per; r++) {
                int order[4];
                memcpy(order, phases[ph], sizeof order);
                for (int k = cnt - 1; k > 0; k--) {
                    int j = rand() % (k + 1), x = order[k];
                    order[k] = order[j];
                    order[j] = x;
                }
                for (int k = 0; k < cnt; k++)
                    t[order[k]][n[order[k]]++] = run_once(order[k]);
            }
        }
        double med[M_COUNT];
        for (int m = 0; m < M_COUNT; m++)
            med[m] = median(t[m], n[m]);
        printf("%6zuMB %10.3f %10.3f %10.3f %10.3f %7.2fx %8.2fx %7.1fx | "
               "%10.3f %10.3f %7.1fx\n",
               mb, med[M_FORK_EXEC], med[M_FS_SPAWN], med[M_FS_PIDFD],
               med[M_POSIX_SPAWN], med[M_FS_SPAWN] / med[M_POSIX_SPAWN],
               med[M_FS_PIDFD] / med[M_POSIX_SPAWN],
               med[M_FORK_EXEC] / med[M_FS_SPAWN], med[M_FORK], med[M_ZYGOTE],
               med[M_FORK] / med[M_ZYGOTE]);
        fflush(stdout);
        if (s == 0)
            zyg_first = med[M_ZYGOTE];
        zyg_last = med[M_ZYGOTE];
        if (mb < sizes[s])
            break;
    }
    printf("zygote_spawn latency, largest parent / 10 MB parent: %.2fx\n",
           zyg_last / zyg_first);
    printf("columns: fs/posix = forksafe_spawn / raw posix_spawn; pfd/posix "
           "= forksafe_spawn with FORKSAFE_SPAWN_PIDFD / raw posix_spawn; "
           "fe/fs = fork+exec / forksafe_spawn; fork/zyg = fork+_exit of the "
           "parent / zygote_spawn of an empty worker\n");
    for (int m = 0; m < M_COUNT; m++)
        free(t[m]);
    forksafe_zygote_stop();
    return 0;
}
