/* SPDX-License-Identifier: MIT */
/*
 * library.c: forksafe from a library author's side and an application's.
 * The "library" (the kv_ functions) guards a table with a recursive mutex
 * and keeps a pool of connections; it registers both once, with ranks.
 * The application runs threads that use the library and forks: every
 * child finds the table consistent and unlocked, and a pool of its own.
 *
 *   build/release/examples/library
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "forksafe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ------------------------------------------------ the library */

static pthread_mutex_t kv_lock;     /* recursive: kv_ calls nest */
static long kv_table[64];
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static int pool_owner;              /* pid that opened the pool's sockets */

static int pool_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    /* Quiesce: no connection is being handed out at the fork. */
    return pthread_mutex_clocklock(&pool_lock, CLOCK_MONOTONIC, deadline);
}

static void pool_parent(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&pool_lock);
}

static void pool_child(void *ctx)
{
    (void)ctx;
    /* The child must not use the parent's connections: drop them. (The
       mutex is the library's own; re-create it rather than unlock it.) */
    pthread_mutex_init(&pool_lock, NULL);
    pool_owner = getpid();
}

static const struct forksafe_ops pool_ops = {pool_prepare, pool_parent,
                                             pool_child};

static void kv_init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&kv_lock, &a);
    pool_owner = getpid();
    /* Outer lock first: kv_ functions take the table, then the pool. */
    forksafe_register_mutex(&kv_lock, "kv table", FORKSAFE_RANK_LIBRARY);
    forksafe_register_ops(&pool_owner, "kv pool", FORKSAFE_RANK_LIBRARY + 10,
                          &pool_ops);
}

/* Move one unit from slot a to slot b: the table's sum never changes. */
static void kv_move(int a, int b)
{
    pthread_mutex_lock(&kv_lock);
    kv_table[a]--;
    pthread_mutex_lock(&kv_lock); /* nested, as a library's helpers do */
    kv_table[b]++;
    pthread_mutex_unlock(&kv_lock);
    pthread_mutex_unlock(&kv_lock);
}

static long kv_sum(void)
{
    long s = 0;
    pthread_mutex_lock(&kv_lock);
    for (int i = 0; i < 64; i++)
        s += kv_table[i];
    pthread_mutex_unlock(&kv_lock);
    return s;
}

/* ------------------------------------------------ the application */

static volatile int stop;

static void *worker(void *arg)
{
    unsigned seed = (unsigned)(long)arg;
    while (!stop)
        kv_move((int)(rand_r(&seed) % 64), (int)(rand_r(&seed) % 64));
    return NULL;
}

int main(void)
{
    kv_init();
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, worker, (void *)(i + 1));

    int ok = 0, n = 100;
    for (int i = 0; i < n; i++) {
        struct forksafe_fork_opts opts = {.timeout_ms = 1000};
        pid_t pid = forksafe_fork(&opts);
        if (pid < 0) {
            fprintf(stderr, "fork refused: %s\n", forksafe_last_error());
            continue;
        }
        if (pid == 0) {
            alarm(2); /* a hang would end here */
            /* Consistent (sum 0), usable (the recursive lock nests), and
               the pool is the child's own. */
            kv_move(1, 2);
            _exit(kv_sum() == 0 && pool_owner == getpid() ? 0 : 1);
        }
        int st;
        waitpid(pid, &st, 0);
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    printf("%d of %d children found the library consistent and usable\n", ok,
           n);
    return ok == n ? 0 : 1;
}
