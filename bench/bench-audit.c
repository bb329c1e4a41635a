/* SPDX-License-Identifier: MIT */
/*
 * bench-audit.c: the cost of libforksafe-audit.so on an unmodified
 * program. Two workloads, each run in a fresh child process with and
 * without the interposer (LD_PRELOAD from FORKSAFE_AUDIT_PRELOAD, records
 * going to a temporary directory as under forksafe-audit), in interleaved
 * rounds; prints the median per operation and the ratio audited/plain.
 *   mutex: lock+unlock pairs from 4 threads, each on its own mutex.
 *   fork:  fork + child _exit + waitpid, with one other thread alive.
 * Without FORKSAFE_AUDIT_PRELOAD (built outside scons) it says so and
 * exits 0.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define THREADS 4
#define PAIRS   2000000L
#define FORKS   300

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ------------------------------------------------------------ workloads */

static pthread_barrier_t start;

static void *pairs(void *arg)
{
    pthread_mutex_t *m = arg;
    pthread_barrier_wait(&start);
    for (long i = 0; i < PAIRS; i++) {
        pthread_mutex_lock(m);
        pthread_mutex_unlock(m);
    }
    return NULL;
}

/* ns per lock+unlock pair, as seen by each thread (wall time / pairs). */
static double run_mutex(void)
{
    static pthread_mutex_t locks[THREADS];
    pthread_t t[THREADS];
    pthread_barrier_init(&start, NULL, THREADS + 1);
    for (int i = 0; i < THREADS; i++) {
        pthread_mutex_init(&locks[i], NULL);
        pthread_create(&t[i], NULL, pairs, &locks[i]);
    }
    pthread_barrier_wait(&start);
    double t0 = now_ns();
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    return (now_ns() - t0) / (double)PAIRS;
}

static int idle_pipe[2];

static void *idle(void *arg)
{
    char c;
    (void)arg;
    while (read(idle_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* µs per fork + _exit + waitpid. */
static double run_fork(void)
{
    pthread_t t;
    if (pipe(idle_pipe) != 0 || pthread_create(&t, NULL, idle, NULL) != 0)
        exit(3);
    double t0 = now_ns();
    for (int i = 0; i < FORKS; i++) {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        int st;
        if (p < 0 || waitpid(p, &st, 0) != p || st != 0)
            exit(4);
    }
    double us = (now_ns() - t0) / 1e3 / FORKS;
    if (write(idle_pipe[1], "x", 1) != 1)
        exit(5);
    pthread_join(t, NULL);
    return us;
}

/* ------------------------------------------------------------ driver */

/* Run this program as "bench-audit --child WORKLOAD" in a fresh process,
   with the interposer or without it; returns the figure it prints. */
static double measure(const char *self, const char *workload,
                      const char *preload, const char *dir)
{
    int fd[2];
    if (pipe(fd) != 0)
        exit(6);
    pid_t p = fork();
    if (p == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (preload) {
            setenv("LD_PRELOAD", preload, 1);
            setenv("FORKSAFE_AUDIT_DIR", dir, 1);
        } else {
            unsetenv("LD_PRELOAD");
            unsetenv("FORKSAFE_AUDIT_DIR");
        }
        execl(self, self, "--child", workload, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char buf[64] = {0};
    ssize_t n = read(fd[0], buf, sizeof buf - 1);
    close(fd[0]);
    int st;
    waitpid(p, &st, 0);
    if (n <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench-audit: %s child failed\n", workload);
        exit(1);
    }
    return strtod(buf, NULL);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0) {
        double v = strcmp(argv[2], "mutex") == 0 ? run_mutex() : run_fork();
        printf("%.3f\n", v);
        return 0;
    }
    const char *preload = getenv("FORKSAFE_AUDIT_PRELOAD");
    if (!preload || !*preload) {
        printf("bench-audit: FORKSAFE_AUDIT_PRELOAD is not set (run it "
               "through `scons bench`); skipped\n");
        return 0;
    }
    int rounds = getenv("BENCH_ROUNDS") ? atoi(getenv("BENCH_ROUNDS")) : 15;
    if (rounds < 1)
        rounds = 1;
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return 1;
    self[sl] = '\0';
    char dir[] = "/tmp/bench-audit-XXXXXX";
    if (!mkdtemp(dir))
        return 1;

    static const struct {
        const char *name, *unit, *what;
    } w[] = {{"mutex", "ns", "lock+unlock pair, 4 threads, own mutex each"},
             {"fork", "us", "fork + _exit + waitpid, 1 other thread alive"}};
    printf("bench-audit: %d interleaved rounds, medians; ratio = audited / "
           "plain\n",
           rounds);
    for (size_t k = 0; k < 2; k++) {
        double *plain = calloc((size_t)rounds, sizeof *plain);
        double *aud = calloc((size_t)rounds, sizeof *aud);
        if (!plain || !aud)
            return 1;
        for (int r = 0; r < rounds; r++) {
            /* Alternate which goes first, so drift hits both equally. */
            if (r % 2) {
                aud[r] = measure(self, w[k].name, preload, dir);
                plain[r] = measure(self, w[k].name, NULL, dir);
            } else {
                plain[r] = measure(self, w[k].name, NULL, dir);
                aud[r] = measure(self, w[k].name, preload, dir);
            }
        }
        double mp = median(plain, rounds), ma = median(aud, rounds);
        printf("  %-6s %-46s plain %8.2f %s  audited %8.2f %s  ratio %.2fx\n",
               w[k].name, w[k].what, mp, w[k].unit, ma, w[k].unit, ma / mp);
        free(plain);
        free(aud);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}
