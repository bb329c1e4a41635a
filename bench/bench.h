/* SPDX-License-Identifier: MIT */
/*
 * bench.h: timing helpers shared by the benchmarks and adopt-worker.c: a
 * monotonic clock in microseconds, the thread's CPU time, medians, and the
 * round count (BENCH_ROUNDS).
 */
#ifndef FORKSAFE_BENCH_H
#define FORKSAFE_BENCH_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The calling thread's CPU time in nanoseconds. */
static inline double bench_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n); sorts v. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline int bench_rounds(void)
{
    const char *s = getenv("BENCH_ROUNDS");
    int r = s ? atoi(s) : 15;
    return r > 0 && r <= 1000 ? r : 15;
}

#endif
