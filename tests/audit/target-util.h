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
#include <stdio.h>
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

/* The holder handshake of the hostile targets: a thread takes its locks,
   calls target_say_ready() and parks in target_wait_park() until the
   parent has forked (target_fork_held()). */
static int target_ready[2], target_park[2];

static inline void target_say_ready(void)
{
    if (write(target_ready[1], "r", 1) != 1)
        _exit(92);
}

static inline void target_wait_park(void)
{
    char c;
    while (read(target_park[0], &c, 1) < 0 && errno == EINTR)
        ;
}

static inline int target_wait(pid_t pid, int ms);

/* Start a thread running holder, wait until it says it is ready, and
   fork: the child exits with child()'s value; the parent lets the holder
   go on, waits at most 10 s for the child and joins the holder. Returns
   the child's status as target_wait() gives it, or exits 12 when a step
   before the fork fails. */
static inline int target_fork_held(void *(*holder)(void *), int (*child)(void))
{
    pthread_t t;
    char c;
    if (pipe(target_ready) != 0 || pipe(target_park) != 0 ||
        pthread_create(&t, NULL, holder, NULL) != 0 ||
        read(target_ready[0], &c, 1) != 1)
        exit(12);
    fflush(NULL);
    pid_t p = fork();
    if (p < 0)
        exit(12);
    if (p == 0)
        _exit(child());
    if (write(target_park[1], "p", 1) != 1)
        exit(12);
    int st = target_wait(p, 10000);
    pthread_join(t, NULL);
    return st;
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
