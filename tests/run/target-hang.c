/* SPDX-License-Identifier: MIT */
/*
 * target-hang.c: the program, unmodified by forksafe: 4 threads
 * take 8 mutexes at random (in index order, so they never deadlock) while
 * the main thread forks; each child takes every mutex and calls malloc
 * under a 400 ms watchdog. Prints "hung H of N, wrong W" and exits 0.
 *
 *   target-hang normal|errorcheck|recursive [forker-holds] [FORKS]
 *
 * forker-holds: the main thread holds mutex 0 (recursive: twice) across
 * every fork, and the child checks that it still holds it with the same
 * type and depth (errorcheck: relock is EDEADLK; recursive: two unlocks
 * succeed, a third is EPERM) before it takes the others; a child that
 * finds anything else is "wrong" (exit 3).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define NLOCKS   8
#define NTHREADS 4
#define MAXFORKS 1000

static pthread_mutex_t locks[NLOCKS];
static volatile int stop;
static int type, holds;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(long)arg * 7919u;
    while (!stop) {
        int first = (int)(rand_r(&seed) % NLOCKS);
        int n = 1 + (int)(rand_r(&seed) % 3);
        if (first + n > NLOCKS)
            n = NLOCKS - first;
        for (int i = first; i < first + n; i++)
            pthread_mutex_lock(&locks[i]);
        for (volatile int spin = 0; spin < 300; spin++)
            ;
        for (int i = first + n - 1; i >= first; i--)
            pthread_mutex_unlock(&locks[i]);
    }
    return NULL;
}

static void child(void)
{
    struct itimerval it = {{0, 0}, {0, 400 * 1000}};
    signal(SIGALRM, SIG_DFL);
    setitimer(ITIMER_REAL, &it, NULL);
    int start = 0;
    if (holds) {
        pthread_mutex_t *m = &locks[0];
        start = 1;
        if (type == PTHREAD_MUTEX_ERRORCHECK) {
            if (pthread_mutex_lock(m) != EDEADLK ||
                pthread_mutex_unlock(m) != 0 || pthread_mutex_lock(m) != 0 ||
                pthread_mutex_unlock(m) != 0)
                _exit(3);
        } else if (type == PTHREAD_MUTEX_RECURSIVE) {
            if (pthread_mutex_unlock(m) != 0 || pthread_mutex_unlock(m) != 0 ||
                pthread_mutex_unlock(m) != EPERM)
                _exit(3);
        } else if (pthread_mutex_unlock(m) != 0) {
            _exit(3);
        }
    }
    for (int i = start; i < NLOCKS; i++)
        pthread_mutex_lock(&locks[i]);
    free(malloc(64));
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s normal|errorcheck|recursive "
                "[forker-holds] [FORKS]\n",
                argv[0]);
        return 2;
    }
    type = strcmp(argv[1], "errorcheck") == 0  ? PTHREAD_MUTEX_ERRORCHECK
           : strcmp(argv[1], "recursive") == 0 ? PTHREAD_MUTEX_RECURSIVE
                                               : PTHREAD_MUTEX_NORMAL;
    int forks = 200;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "forker-holds") == 0)
            holds = 1;
        else
            forks = atoi(argv[i]);
    }
    if (forks < 1 || forks > MAXFORKS)
        forks = 200;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type);
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_init(&locks[i], &a);
    pthread_t t[NTHREADS];
    for (long i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(i + 1));
    usleep(20 * 1000);
    static pid_t pids[MAXFORKS];
    for (int i = 0; i < forks; i++) {
        if (holds) {
            pthread_mutex_lock(&locks[0]);
            if (type == PTHREAD_MUTEX_RECURSIVE)
                pthread_mutex_lock(&locks[0]);
        }
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0)
            child();
        if (holds) {
            pthread_mutex_unlock(&locks[0]);
            if (type == PTHREAD_MUTEX_RECURSIVE)
                pthread_mutex_unlock(&locks[0]);
        }
    }
    int hung = 0, wrong = 0;
    for (int i = 0; i < forks; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        if (WIFSIGNALED(st))
            hung++;
        else if (WEXITSTATUS(st) != 0)
            wrong++;
    }
    stop = 1;
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    printf("hung %d of %d, wrong %d\n", hung, forks, wrong);
    return 0;
}
