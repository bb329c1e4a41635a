/* SPDX-License-Identifier: MIT */
/*
 * bench-fork.c: what forksafe adds to fork(). Medians over interleaved
 * rounds, for N = 0, 16, 1,024 and 16,384 registered uncontended mutexes:
 *   - _Fork()+wait: the kernel's cost alone;
 *   - the floor: plain fork()+wait with a hand-written pthread_atfork
 *     handler that locks and unlocks the same N mutexes (no forksafe
 *     entries), which any lock-based scheme pays;
 *   - forksafe_fork()+wait and plain fork()+wait with the N mutexes
 *     registered;
 * with another thread alive (the multi-threaded path), then the
 * single-threaded fast path against a plain fork() with no handlers, then
 * register+unregister at 100,000 entries.
 */
#include "bench.h"

#include "forksafe.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define FORKS_PER_ROUND 20

static const int sizes[] = {0, 16, 1024, 16384};
#define NSIZES (int)(sizeof sizes / sizeof sizes[0])
#define MAXN   16384

static pthread_mutex_t *locks;
static int hand_n = -1; /* >= 0: the hand-written handler covers hand_n */

static void hand_prepare(void)
{
    for (int i = 0; i < hand_n; i++)
        pthread_mutex_lock(&locks[i]);
}

static void hand_parent(void)
{
    for (int i = hand_n - 1; i >= 0; i--)
        pthread_mutex_unlock(&locks[i]);
}

static void hand_child(void)
{
    /* Normal mutexes: unlock in the child is valid (no owner check). */
    for (int i = hand_n - 1; i >= 0; i--)
        pthread_mutex_unlock(&locks[i]);
}

/* Register the first n locks in 64 rank blocks (so fork order is memory
   order, as in the hand-written handler), then fork once untimed: the first
   fork after a registry change rebuilds the fork-order snapshot (a one-off cost
   of changing the registry, reported separately below). */
static void reg(int n)
{
    for (int i = 0; i < n; i++)
        if (forksafe_register_mutex(&locks[i], "bench",
                                    FORKSAFE_RANK_APP + (unsigned)(i * 64 / n)))
            abort();
    pid_t pid = forksafe_fork(NULL);
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
}

static void unreg(int n)
{
    for (int i = 0; i < n; i++)
        forksafe_unregister(&locks[i]);
}

enum method { M_UFORK, M_FLOOR, M_WRAPPER, M_PLAIN, M_COUNT };

/* Mean µs per fork+wait over FORKS_PER_ROUND forks of one method. */
static double time_forks(enum method m)
{
    double t0 = bench_now_us();
    for (int i = 0; i < FORKS_PER_ROUND; i++) {
        pid_t pid = m == M_UFORK     ? _Fork()
                    : m == M_WRAPPER ? forksafe_fork(NULL)
                                     : fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0) {
            perror("fork");
            exit(1);
        }
        waitpid(pid, NULL, 0);
    }
    return (bench_now_us() - t0) / FORKS_PER_ROUND;
}

static void *idle_thread(void *arg)
{
    int fd = *(int *)arg;
    char c;
    (void)!read(fd, &c, 1);
    return NULL;
}

int main(void)
{
    int rounds = bench_rounds();
    locks = calloc(MAXN, sizeof *locks);
    for (int i = 0; i < MAXN; i++)
        pthread_mutex_init(&locks[i], NULL);
    pthread_atfork(hand_prepare, hand_parent, hand_child);
    static double t[NSIZES][M_COUNT][1000];
    static double st[NSIZES][2][1000];

    printf("bench-fork: medians of %d interleaved rounds x %d forks, "
           "microseconds per fork+wait\n",
           rounds, FORKS_PER_ROUND);

    /* Single-threaded first: the process has never had a second thread. */
    for (int r = 0; r < rounds; r++) {
        for (int s = 0; s < NSIZES; s++) {
            hand_n = 0;
            st[s][0][r] = time_forks(M_PLAIN); /* no entries, no handler work */
            reg(sizes[s]);
            st[s][1][r] = time_forks(M_WRAPPER);
            unreg(sizes[s]);
        }
    }
    printf("\nsingle-threaded (fast path: no lock is taken):\n");
    printf("  %6s %12s %16s %8s\n", "N", "fork()", "forksafe_fork", "ratio");
    for (int s = 0; s < NSIZES; s++) {
        double a = bench_median(st[s][0], rounds);
        double b = bench_median(st[s][1], rounds);
        printf("  %6d %12.1f %16.1f %8.3f\n", sizes[s], a, b, b / a);
    }

    int pipefd[2];
    if (pipe(pipefd))
        return 1;
    pthread_t th;
    pthread_create(&th, NULL, idle_thread, &pipefd[0]);
    for (int r = 0; r < rounds; r++) {
        for (int s = 0; s < NSIZES; s++) {
            hand_n = 0;
            t[s][M_UFORK][r] = time_forks(M_UFORK);
            hand_n = sizes[s];
            t[s][M_FLOOR][r] = time_forks(M_FLOOR);
            hand_n = 0;
            reg(sizes[s]);
            t[s][M_WRAPPER][r] = time_forks(M_WRAPPER);
            t[s][M_PLAIN][r] = time_forks(M_PLAIN);
            unreg(sizes[s]);
        }
    }
    printf("\nmulti-threaded (one other thread alive):\n");
    printf("  %6s %9s %10s %14s %7s %18s %7s\n", "N", "_Fork()", "floor",
           "forksafe_fork", "ratio", "fork()+registered", "ratio");
    for (int s = 0; s < NSIZES; s++) {
        double m[M_COUNT];
        for (int k = 0; k < M_COUNT; k++)
            m[k] = bench_median(t[s][k], rounds);
        printf("  %6d %9.1f %10.1f %14.1f %7.3f %18.1f %7.3f\n", sizes[s],
               m[M_UFORK], m[M_FLOOR], m[M_WRAPPER], m[M_WRAPPER] / m[M_FLOOR],
               m[M_PLAIN], m[M_PLAIN] / m[M_FLOOR]);
    }
    printf("  (floor: fork() with a hand-written pthread_atfork handler that "
           "locks and unlocks the same N mutexes; ratios are against it)\n");

    /* Registry cost at scale. */
    enum { BIG = 100000, PAIRS = 10000 };
    pthread_mutex_t *big = calloc(BIG + PAIRS, sizeof *big);
    for (int i = 0; i < BIG; i++)
        if (forksafe_register_mutex(&big[i], "big",
                                    (unsigned)(i * 7919u % 4096u)))
            abort();
    double rr[1000];
    for (int r = 0; r < rounds; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < PAIRS; i++) {
            forksafe_register_mutex(&big[BIG + i], "pair",
                                    (unsigned)(i * 31u % 4096u));
            forksafe_unregister(&big[BIG + i]);
        }
        rr[r] = (bench_now_us() - t0) / PAIRS;
    }
    printf("\nregistry: register+unregister with %d entries registered: "
           "%.3f us per pair (median of %d rounds x %d pairs)\n",
           BIG, bench_median(rr, rounds), rounds, PAIRS);
    (void)!write(pipefd[1], "x", 1);
    pthread_join(th, NULL);
    return 0;
}
