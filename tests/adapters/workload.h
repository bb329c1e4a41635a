/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/workload.h: the harness of the adapter workloads
 * (workload-<lib>.c). Each workload starts threads that use the real
 * library as its users do, then the main thread calls forksafe_fork() many
 * times with a short deadline while they run; every child uses the library
 * too and ends. The program prints one line of figures and exits 0 only if
 * no fork was refused, every child succeeded and no thread saw an error.
 * Run it under `forksafe-audit --fail-on error` to check the adapter's
 * ranks against what the library really does (tests/adapters/
 * audit-adapters.sh; docs/adapters/README.md).
 */
#ifndef FORKSAFE_TESTS_WORKLOAD_H
#define FORKSAFE_TESTS_WORKLOAD_H

#include <stdatomic.h>

struct wl_opts {
    int forks;           /* --forks N (default 1000) */
    unsigned timeout_ms; /* --timeout-ms N (default 300) */
    int threads;         /* --threads N (default 6) */
    int use_exit;        /* --exit: children end with exit(), else _exit() */
    const char *mode;    /* --mode WORD, workload-specific ("" if none) */
};

/* Parse the options above into *o (which holds the defaults); exits with
   status 2 and a usage line on anything else. */
void wl_parse(int argc, char **argv, struct wl_opts *o);

/* Set by wl_forks() while forks go on; threads loop until it is 1. */
extern atomic_int wl_stop;
/* Threads add their library errors here (and may print the first). */
extern atomic_int wl_thread_errors;
void wl_thread_error(const char *what);

/* Fork o->forks times with forksafe_fork(o->timeout_ms); each child runs
   child(arg) and ends with its return value (exit() or _exit() per
   o->use_exit). Counts refused forks (printing the first three reasons)
   and failed or hung children (10 s each). Sets wl_stop at the end. */
void wl_forks(const struct wl_opts *o, int (*child)(void *), void *arg);

/* Start o->threads threads running worker((void *)(intptr_t)i), run
   wl_forks(o, child, arg), then join them. Exits with status 3 if a
   thread cannot be started. */
void wl_run(const struct wl_opts *o, void *(*worker)(void *),
            int (*child)(void *), void *arg);

/* Print "<name>: forks=... refused=... child_failed=... thread_errors=...
   seconds=..." and return the exit status: 0 if all is well, else 1. */
int wl_report(const char *name, const struct wl_opts *o);

#endif
