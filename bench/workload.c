/* SPDX-License-Identifier: MIT */
/* workload.c: see workload.h. */
#include "workload.h"

#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

static pthread_barrier_t start;
static long npairs;

/* bench_mutex_pairs_cpu(): each thread's mutex and result on cache lines
   of their own, so that the threads share nothing but the barrier. */
struct own_mutex {
    pthread_mutex_t m;
    double cpu_ns;
} __attribute__((aligned(64)));

static void *pairs_cpu(void *arg)
{
    struct own_mutex *o = arg;
    pthread_barrier_wait(&start);
    double t0 = bench_thread_cpu_ns();
    for (long i = 0; i < npairs; i++) {
        pthread_mutex_lock(&o->m);
        pthread_mutex_unlock(&o->m);
    }
    o->cpu_ns = bench_thread_cpu_ns() - t0;
    return NULL;
}

double bench_mutex_pairs_cpu(int threads, long n)
{
    static struct own_mutex own[MAX_THREADS];
    pthread_t t[MAX_THREADS];
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    npairs = n;
    pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
    for (int i = 0; i < threads; i++) {
        pthread_mutex_init(&own[i].m, NULL);
        if (pthread_create(&t[i], NULL, pairs_cpu, &own[i]) != 0)
            exit(3);
    }
    pthread_barrier_wait(&start);
    double cpu = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        cpu += own[i].cpu_ns;
    }
    return cpu / ((double)n * threads);
}

static int idle_pipe[2];

static void *idle_main(void *arg)
{
    char c;
    (void)arg;
    while (read(idle_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

static double rusage_us(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

double bench_fork_wait(int idle, int forks, double *cpu_us)
{
    pthread_t t[MAX_THREADS];
    if (idle > MAX_THREADS)
        idle = MAX_THREADS;
    if (pipe(idle_pipe) != 0)
        exit(3);
    for (int i = 0; i < idle; i++)
        if (pthread_create(&t[i], NULL, idle_main, NULL) != 0)
            exit(3);
    double c0 =
        cpu_us ? rusage_us(RUSAGE_SELF) + rusage_us(RUSAGE_CHILDREN) : 0;
    double t0 = bench_now_us();
    for (int i = 0; i < forks; i++) {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        int st;
        if (p < 0 || waitpid(p, &st, 0) != p || st != 0)
            exit(4);
    }
    double us = (bench_now_us() - t0) / forks;
    if (cpu_us)
        *cpu_us =
            (rusage_us(RUSAGE_SELF) + rusage_us(RUSAGE_CHILDREN) - c0) / forks;
    char x[MAX_THREADS] = {0};
    if (idle > 0 && write(idle_pipe[1], x, (size_t)idle) != (ssize_t)idle)
        exit(5);
    for (int i = 0; i < idle; i++)
        pthread_join(t[i], NULL);
    close(idle_pipe[0]);
    close(idle_pipe[1]);
    return us;
}
