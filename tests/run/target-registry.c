/* SPDX-License-Identifier: MIT */
/*
 * target-registry.c: a program that uses libforksafe's registry for some
 * of its locks and not for others, under forksafe-run: 4 threads take
 * registered and unregistered mutexes at random while the main thread
 * forks, 100 times with fork() and 100 times with forksafe_fork(), the
 * second 100 while it holds an unregistered mutex and a registered robust
 * one. Each child checks that it holds those two (the registry restores
 * the registered one, forksafe-run the other), then takes every mutex and
 * calls malloc under a watchdog. Prints "registry: hung H of 200, wrong
 * W" and exits 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
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

#define NLOCKS 6
#define FORKS  200

/* In index order: unregistered, unregistered, registered, registered,
   unregistered, unregistered. */
static pthread_mutex_t locks[NLOCKS];
static pthread_mutex_t robust; /* registered; main holds it */
static volatile int stop;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(long)arg * 31u;
    while (!stop) {
        int first = (int)(rand_r(&seed) % NLOCKS);
        int n = 1 + (int)(rand_r(&seed) % 3);
        if (first + n > NLOCKS)
            n = NLOCKS - first;
        /* locks[0] is held by main across half the forks: never wait for
           it while holding another. */
        if (first == 0 && n > 1)
            n = 1;
        for (int i = first; i < first + n; i++)
            pthread_mutex_lock(&locks[i]);
        for (volatile int spin = 0; spin < 300; spin++)
            ;
        for (int i = first + n - 1; i >= first; i--)
            pthread_mutex_unlock(&locks[i]);
    }
    return NULL;
}

static void child(int held)
{
    struct itimerval it = {{0, 0}, {0, 400 * 1000}};
    signal(SIGALRM, SIG_DFL);
    setitimer(ITIMER_REAL, &it, NULL);
    int start = 0;
    if (held) {
        if (pthread_mutex_unlock(&robust) != 0 ||
            pthread_mutex_lock(&robust) != 0 ||
            pthread_mutex_unlock(&robust) != 0)
            _exit(3);
        if (pthread_mutex_unlock(&locks[0]) != 0)
            _exit(3);
    }
    for (int i = start; i < NLOCKS; i++)
        pthread_mutex_lock(&locks[i]);
    free(malloc(64));
    _exit(0);
}

int main(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_init(&locks[i], i == 0 ? &a : NULL);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust, &a);
    if (forksafe_register_mutex(&locks[2], "registered-2",
                                FORKSAFE_RANK_APP + 2) ||
        forksafe_register_mutex(&locks[3], "registered-3",
                                FORKSAFE_RANK_APP + 3) ||
        forksafe_register_mutex(&robust, "registered-robust",
                                FORKSAFE_RANK_APP + 1)) {
        fprintf(stderr, "cannot register\n");
        return 1;
    }
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    usleep(20 * 1000);
    static pid_t pids[FORKS];
    struct forksafe_fork_opts opts = {.timeout_ms = 3000};
    int failed = 0;
    for (int i = 0; i < FORKS; i++) {
        int held = i >= FORKS / 2;
        if (held) {
            pthread_mutex_lock(&robust);
            pthread_mutex_lock(&locks[0]);
        }
        pids[i] = held ? forksafe_fork(&opts) : fork();
        if (pids[i] < 0) {
            fprintf(stderr, "fork %d: %s: %s\n", i, strerror(errno),
                    forksafe_last_error());
            failed++;
        }
        if (pids[i] == 0)
            child(held);
        if (held) {
            pthread_mutex_unlock(&locks[0]);
            pthread_mutex_unlock(&robust);
        }
    }
    int hung = 0, wrong = failed;
    for (int i = 0; i < FORKS; i++) {
        if (pids[i] <= 0)
            continue;
        int st;
        waitpid(pids[i], &st, 0);
        if (WIFSIGNALED(st))
            hung++;
        else if (WEXITSTATUS(st) != 0)
            wrong++;
    }
    stop = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("registry: hung %d of %d, wrong %d\n", hung, FORKS, wrong);
    return 0;
}
