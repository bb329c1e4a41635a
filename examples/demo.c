/* SPDX-License-Identifier: MIT */
/*
 * demo.c: the problem and the fix, in one run. Four threads take eight
 * plain mutexes while the main thread forks 200 times; every child takes
 * all eight mutexes, calls malloc and exits, under a watchdog that ends it
 * if it hangs. First without registration (children hang), then with the
 * mutexes registered (none do), then a bounded forksafe_fork() that fails
 * and says why, then the audit report. `demo --registered` leaves out the
 * first round (its children are meant to hang): what forksafe-audit
 * --fail-on warning must find quiet.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np, strerrorname_np */
#endif
#include "forksafe.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define NLOCKS      8
#define NTHREADS    4
#define FORKS       200
#define WATCHDOG_MS 500

static pthread_mutex_t locks[NLOCKS];
static volatile int stop;

static void *worker(void *arg)
{
    char name[16];
    snprintf(name, sizeof name, "worker-%d", (int)(long)arg);
    pthread_setname_np(pthread_self(), name);
    unsigned seed = (unsigned)(long)arg;
    while (!stop) {
        /* Nest in index order, which is also rank order below. */
        int first = (int)(rand_r(&seed) % NLOCKS);
        for (int i = first; i < NLOCKS; i++)
            pthread_mutex_lock(&locks[i]);
        for (volatile int spin = 0; spin < 500; spin++)
            ;
        for (int i = NLOCKS - 1; i >= first; i--)
            pthread_mutex_unlock(&locks[i]);
    }
    return NULL;
}

static void child(void)
{
    struct itimerval it = {{0, 0}, {0, WATCHDOG_MS * 1000}};
    signal(SIGALRM, SIG_DFL);
    setitimer(ITIMER_REAL, &it, NULL);
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_lock(&locks[i]);
    free(malloc(64));
    _exit(0);
}

/* Fork FORKS children (every other one with forksafe_fork when use_wrapper)
   without waiting, then reap them all. Returns how many hung. */
static int round_of_forks(int use_wrapper)
{
    static pid_t pids[FORKS];
    for (int i = 0; i < FORKS; i++) {
        pids[i] = use_wrapper && i % 2 ? forksafe_fork(NULL) : fork();
        if (pids[i] < 0) {
            fprintf(stderr, "fork: %s %s\n", strerror(errno),
                    forksafe_last_error());
            exit(1);
        }
        if (pids[i] == 0)
            child();
    }
    int hung = 0;
    for (int i = 0; i < FORKS; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            hung++;
    }
    return hung;
}

static void *hog(void *arg)
{
    pthread_setname_np(pthread_self(), "slow-holder");
    pthread_mutex_lock(&locks[3]);
    *(volatile int *)arg = 1;
    usleep(300 * 1000);
    pthread_mutex_unlock(&locks[3]);
    return NULL;
}

int main(int argc, char **argv)
{
    int registered_only = argc > 1 && strcmp(argv[1], "--registered") == 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_init(&locks[i], NULL);
    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(i + 1));

    printf("forksafe demo: %d threads take %d mutexes while the main thread "
           "forks %d times.\nEach child takes every mutex, calls malloc and "
           "exits; a %d ms watchdog ends it if it hangs.\n\n",
           NTHREADS, NLOCKS, FORKS, WATCHDOG_MS);

    int hung = 0;
    if (!registered_only) {
        hung = round_of_forks(0);
        printf("1. without forksafe:   %3d of %d children hung (a lock "
               "another thread held at fork stays locked forever)\n",
               hung, FORKS);
    }

    static const char *names[NLOCKS] = {"config",  "sessions", "cache", "index",
                                        "journal", "stats",    "pool",  "log"};
    for (int i = 0; i < NLOCKS; i++)
        forksafe_register_mutex(&locks[i], names[i],
                                FORKSAFE_RANK_APP + 10 * (unsigned)i);
    hung = round_of_forks(1);
    printf("2. locks registered:   %3d of %d children hung (%d plain fork(), "
           "%d forksafe_fork())\n",
           hung, FORKS, FORKS / 2, FORKS / 2);

    stop = 1;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);

    /* A lock held for longer than the fork is willing to wait. */
    volatile int held = 0;
    pthread_t h;
    pthread_create(&h, NULL, hog, (void *)&held);
    while (!held)
        usleep(1000);
    struct forksafe_fork_opts opts = {.timeout_ms = 100};
    pid_t pid = forksafe_fork(&opts);
    if (pid == 0)
        _exit(0);
    int err = errno;
    printf("3. bounded fork:       forksafe_fork(timeout 100 ms) = %d, errno "
           "%s\n   forksafe_last_error(): %s\n",
           (int)pid, strerrorname_np(err), forksafe_last_error());
    pthread_join(h, NULL);

    printf("\n4. forksafe_audit_write(1, 0):\n");
    forksafe_audit_write(1, 0);
    return 0;
}
