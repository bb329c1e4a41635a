/* SPDX-License-Identifier: MIT */
/*
 * target-util.h: helpers for the small programs that forksafe-audit's
 * tests run (tests/audit/target-*.c). Each target makes one fork hazard on
 * purpose and exits 0 when it behaved as intended; a non-zero status names
 * the step that went wrong.
 */
#ifndef FORKSAFE_AUDIT_TARGET_UTIL_H
#define FORKSAFE_AUDIT_TARGET_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A thread that blocks in read() on a pipe until target_parked_stop():
   it makes the process multi-threaded without touching any mutex. */
static int target_pipe[2];
static pthread_t target_thread;

static inline void *target_parked_main(void *arg)
{
    char c;
    (void)arg;
    while (read(target_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

static inline void target_parked_start(void)
{
    if (pipe(target_pipe) != 0 ||
        pthread_create(&target_thread, NULL, target_parked_main, NULL) != 0)
        exit(90);
}

static inline void target_parked_stop(void)
{
    if (write(target_pipe[1], "x", 1) != 1 ||
        pthread_join(target_thread, NULL) != 0)
        exit(91);
}

/* The least a forked child does to "run on" (anything but exec or _exit:
   docs/audit.md): it takes a lock of its own, which no thread of the
   parent used, then leaves with _exit(status). */
static inline void target_run_on_exit(int status)
{
    pthread_mutex_t own = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&own);
    pthread_mutex_unlock(&own);
    _exit(status);
}

/* Wait at most ms for pid; returns its exit status, 128+signal, or -1 if
   it had to be killed. */
static inline int target_wait(pid_t pid, int ms)
{
    for (int waited = 0;; waited++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0 && errno != EINTR)
            return -1;
        if (waited >= ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
}

#endif
