/* SPDX-License-Identifier: MIT */
/* tests/adapters/workload.c: the fork loop and figures of the adapter
   workloads (see workload.h). */
#include "workload.h"

#include "common.h"

#include <forksafe.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

atomic_int wl_stop;
atomic_int wl_thread_errors;

static int s_refused, s_failed, s_hung;
static uint64_t s_ms;

void wl_parse(int argc, char **argv, struct wl_opts *o)
{
    if (o->mode == NULL)
        o->mode = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--exit") == 0) {
            o->use_exit = 1;
        } else if (v && strcmp(a, "--forks") == 0) {
            o->forks = atoi(v), i++;
        } else if (v && strcmp(a, "--timeout-ms") == 0) {
            o->timeout_ms = (unsigned)atoi(v), i++;
        } else if (v && strcmp(a, "--threads") == 0) {
            o->threads = atoi(v), i++;
        } else if (v && strcmp(a, "--mode") == 0) {
            o->mode = v, i++;
        } else {
            fprintf(stderr,
                    "usage: %s [--forks N] [--timeout-ms N] [--threads N] "
                    "[--mode WORD] [--exit]\n",
                    argv[0]);
            exit(2);
        }
    }
    if (o->forks < 0 || o->threads < 0 || o->threads > 64) {
        fprintf(stderr, "%s: bad option value\n", argv[0]);
        exit(2);
    }
}

void wl_thread_error(const char *what)
{
    if (atomic_fetch_add(&wl_thread_errors, 1) < 3)
        fprintf(stderr, "thread error: %s\n", what);
}

void wl_forks(const struct wl_opts *o, int (*child)(void *), void *arg)
{
    struct forksafe_fork_opts fo = {.timeout_ms = o->timeout_ms};
    uint64_t t0 = fs_now_ms();
    for (int i = 0; i < o->forks; i++) {
        pid_t pid = forksafe_fork(&fo);
        if (pid < 0) {
            if (s_refused++ < 3)
                fprintf(stderr, "fork %d refused: %s: %s\n", i, strerror(errno),
                        forksafe_last_error());
            continue;
        }
        if (pid == 0) {
            int rc = child(arg);
            if (o->use_exit)
                exit(rc);
            _exit(rc);
        }
        int code = 0;
        enum fs_wait_result r = fs_wait(pid, 10000, &code);
        if (r == FS_HUNG)
            s_hung++;
        if (r != FS_EXITED || code != 0) {
            if (s_failed++ < 3)
                fprintf(stderr, "child %d: %s %d\n", i,
                        r == FS_HUNG     ? "hung"
                        : r == FS_EXITED ? "exit status"
                                         : "signal",
                        code);
        }
    }
    s_ms = fs_now_ms() - t0;
    atomic_store(&wl_stop, 1);
}

int wl_report(const char *name, const struct wl_opts *o)
{
    int te = atomic_load(&wl_thread_errors);
    printf("%s%s%s: forks=%d timeout_ms=%u threads=%d refused=%d "
           "child_failed=%d hung=%d thread_errors=%d seconds=%.1f\n",
           name, *o->mode ? " " : "", o->mode, o->forks, o->timeout_ms,
           o->threads, s_refused, s_failed, s_hung, te, (double)s_ms / 1000);
    fflush(stdout);
    return s_refused == 0 && s_failed == 0 && te == 0 ? 0 : 1;
}

void wl_run(const struct wl_opts *o, void *(*worker)(void *),
            int (*child)(void *), void *arg)
{
    pthread_t t[64];
    for (int i = 0; i < o->threads; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) != 0) {
            fprintf(stderr, "cannot start thread %d\n", i);
            exit(3);
        }
    }
    wl_forks(o, child, arg);
    for (int i = 0; i < o->threads; i++)
        pthread_join(t[i], NULL);
}
