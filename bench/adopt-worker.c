/* SPDX-License-Identifier: MIT */
/*
 * adopt-worker.c: one side of bench-adopt, built four times: as adopt-hand
 * (no forksafe at all: a hand-written pthread_atfork handler that locks and
 * unlocks every mutex), as adopt-hand-dso (the same, linked with a
 * do-nothing shared library: adopt-empty.c), and as adopt-forksafe and
 * adopt-static (linked with libforksafe's shared library or its static
 * archive, the same mutexes registered). Each runs with one idle extra thread
 * and waits on stdin for commands from bench-adopt: 'p'  20 x (fork() +
 * _exit(0) + waitpid) 'f'  20 x (forksafe_fork(NULL) + _exit(0) + waitpid)
 * (adopt-forksafe) 'q'  exit and answers each batch with one line on stdout:
 * microseconds per fork (wall clock), minor faults per fork in the parent and
 * in the children, and the median over the batch of each fork's CPU time in
 * microseconds: the forking thread's (CLOCK_THREAD_CPUTIME_ID, from one fork to
 * the next, so the parent's copy-on-write faults after the child's exit count
 * too) plus the child's (user + system, from wait4()). CPU time leaves out the
 * time spent waiting for the CPU behind other work on a shared machine,
 * and the median leaves out the forks an interrupt or a cold cache after a
 * context switch made slow; both dominate the wall clock here.
 * Each batch starts with WARMUP forks that are not counted: the process
 * was asleep while the others ran, and its first fork pays for that.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#ifdef WITH_FORKSAFE
#include "forksafe.h"
#endif
#ifdef WITH_EMPTY_DSO
int adopt_empty(void);
#endif

#define FORKS_PER_BATCH 20
#define WARMUP          2

static pthread_mutex_t *locks;
static int nlocks;

#ifndef WITH_FORKSAFE
static void hand_prepare(void)
{
    for (int i = 0; i < nlocks; i++)
        pthread_mutex_lock(&locks[i]);
}

static void hand_release(void)
{
    /* Normal mutexes: unlocking in the child is valid (no owner check). */
    for (int i = nlocks - 1; i >= 0; i--)
        pthread_mutex_unlock(&locks[i]);
}
#endif

static double tv_us(const struct timeval *tv)
{
    return (double)tv->tv_sec * 1e6 + (double)tv->tv_usec;
}

/* n x (fork + _exit(0) + wait4), with forksafe_fork() for 'f'; with cpu,
   each fork's CPU microseconds (forking thread + child) in cpu[i]. */
static int fork_n(char cmd, int n, double *cpu)
{
    double t0 = cpu ? bench_thread_cpu_ns() / 1e3 : 0;
    for (int i = 0; i < n; i++) {
#ifdef WITH_FORKSAFE
        pid_t pid = cmd == 'f' ? forksafe_fork(NULL) : fork();
#else
        (void)cmd;
        pid_t pid = fork();
#endif
        if (pid == 0)
            _exit(0);
        struct rusage ru;
        if (pid < 0 || wait4(pid, NULL, 0, &ru) != pid)
            return -1;
        if (cpu) {
            double t1 = bench_thread_cpu_ns() / 1e3;
            cpu[i] = t1 - t0 + tv_us(&ru.ru_utime) + tv_us(&ru.ru_stime);
            t0 = t1;
        }
    }
    return 0;
}

static void *idle_thread(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

int main(int argc, char **argv)
{
    nlocks = argc > 1 ? atoi(argv[1]) : 0;
    locks = calloc(nlocks > 0 ? (size_t)nlocks : 1, sizeof *locks);
    if (!locks)
        return 1;
#ifdef WITH_EMPTY_DSO
    if (adopt_empty() != 2) /* the library is loaded and relocated */
        return 1;
#endif
    for (int i = 0; i < nlocks; i++)
        pthread_mutex_init(&locks[i], NULL);
#ifdef WITH_FORKSAFE
    /* 64 rank blocks, as bench-fork does: fork order is memory order. */
    for (int i = 0; i < nlocks; i++)
        if (forksafe_register_mutex(&locks[i], "bench",
                                    FORKSAFE_RANK_APP +
                                        (unsigned)(i * 64 / nlocks)))
            return 1;
#else
    pthread_atfork(hand_prepare, hand_release, hand_release);
#endif
    pthread_t th;
    if (pthread_create(&th, NULL, idle_thread, NULL))
        return 1;
    char cmd;
    while (read(0, &cmd, 1) == 1 && cmd != 'q') {
        if (fork_n(cmd, WARMUP, NULL))
            return 1;
        struct rusage s0, s1, c0, c1;
        double cpu[FORKS_PER_BATCH];
        getrusage(RUSAGE_SELF, &s0);
        getrusage(RUSAGE_CHILDREN, &c0);
        double t0 = bench_now_us();
        if (fork_n(cmd, FORKS_PER_BATCH, cpu))
            return 1;
        double us = (bench_now_us() - t0) / FORKS_PER_BATCH;
        getrusage(RUSAGE_SELF, &s1);
        getrusage(RUSAGE_CHILDREN, &c1);
        qsort(cpu, FORKS_PER_BATCH, sizeof cpu[0], bench_cmp_double);
        printf("%.3f %.3f %.3f %.3f\n", us,
               (double)(s1.ru_minflt - s0.ru_minflt) / FORKS_PER_BATCH,
               (double)(c1.ru_minflt - c0.ru_minflt) / FORKS_PER_BATCH,
               (cpu[FORKS_PER_BATCH / 2 - 1] + cpu[FORKS_PER_BATCH / 2]) / 2);
        fflush(stdout);
    }
    return 0;
}
