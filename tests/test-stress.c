/* SPDX-License-Identifier: MIT */
/*
 * test-stress.c: the headline. Eight threads lock 64 registered mutexes of
 * mixed ranks (always nesting in rank order) while the main thread forks
 * 2,000 times; every child takes all 64 locks, mallocs and exits under a
 * 1 s watchdog. With registration: no child hangs. The same program with
 * registration switched off must show hangs over a short run, which proves
 * that the test can see the problem at all.
 */
#include "common.h"

#include "forksafe.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

#define NLOCKS   64
#define NTHREADS 8

static pthread_mutex_t locks[NLOCKS];
static unsigned ranks[NLOCKS];
static volatile int stop;
static pthread_t workers[NTHREADS];

/* Locks are numbered in rank order (ranks ascend with the index, several
   locks per rank), so "ascending index" is "ascending rank, then
   registration order", the order prepare uses too. */
static void *worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
    while (!stop) {
        int take[NLOCKS], n = 0;
        for (int i = 0; i < NLOCKS; i++)
            if (rand_r(&seed) % 8 == 0)
                take[n++] = i;
        for (int i = 0; i < n; i++)
            pthread_mutex_lock(&locks[take[i]]);
        for (volatile int spin = 0; spin < 2000; spin++)
            ;
        for (int i = n - 1; i >= 0; i--)
            pthread_mutex_unlock(&locks[take[i]]);
    }
    return NULL;
}

static void start(int do_register)
{
    stop = 0;
    for (int i = 0; i < NLOCKS; i++) {
        pthread_mutexattr_t a;
        pthread_mutexattr_init(&a);
        /* Mixed types: normal, errorcheck and recursive (only normal on
           the POSIX layer, which refuses the other two: docs/platforms.md). */
        pthread_mutexattr_settype(&a, i % 3 == 0 || fs_layer_is("posix")
                                          ? PTHREAD_MUTEX_NORMAL
                                      : i % 3 == 1 ? PTHREAD_MUTEX_ERRORCHECK
                                                   : PTHREAD_MUTEX_RECURSIVE);
        pthread_mutex_init(&locks[i], &a);
        ranks[i] = FORKSAFE_RANK_APP + (unsigned)(i / 4) * 10;
        if (do_register)
            assert_int_equal(
                forksafe_register_mutex(&locks[i], "stress", ranks[i]), 0);
    }
    for (long t = 0; t < NTHREADS; t++)
        pthread_create(&workers[t], NULL, worker, (void *)(t + 1));
}

static void finish(int do_register)
{
    stop = 1;
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(workers[t], NULL);
    for (int i = 0; i < NLOCKS; i++) {
        if (do_register)
            assert_int_equal(forksafe_unregister(&locks[i]), 0);
        pthread_mutex_destroy(&locks[i]);
    }
}

/* In the child: arm a watchdog, take every lock, malloc, exit 0. A hang
   ends in SIGALRM. */
static void child(unsigned watchdog_ms)
{
    struct itimerval it = {{0, 0},
                           {watchdog_ms / 1000, (watchdog_ms % 1000) * 1000}};
    signal(SIGALRM, SIG_DFL);
    setitimer(ITIMER_REAL, &it, NULL);
    for (int i = 0; i < NLOCKS; i++)
        if (pthread_mutex_lock(&locks[i]) != 0)
            _exit(3);
    void *p = malloc(4096);
    if (!p)
        _exit(4);
    free(p);
    for (int i = NLOCKS - 1; i >= 0; i--)
        if (pthread_mutex_unlock(&locks[i]) != 0)
            _exit(5);
    _exit(0);
}

/* Fork `forks` times; returns how many children hung (or failed). */
static int run(int forks, int use_wrapper_every_other, unsigned watchdog_ms)
{
    int bad = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid =
            use_wrapper_every_other && i % 2 ? forksafe_fork(NULL) : fork();
        if (pid < 0) {
            print_error("fork %d failed: %s\n", i, forksafe_last_error());
            bad++;
            continue;
        }
        if (pid == 0)
            child(watchdog_ms);
        int code;
        enum fs_wait_result r = fs_wait(pid, watchdog_ms + 4000, &code);
        if (r != FS_EXITED || code != 0)
            bad++;
    }
    return bad;
}

static void test_registered_no_hangs(void **state)
{
    (void)state;
    start(1);
    uint64_t t0 = fs_now_ms();
    int bad = run(2000, 1, 1000);
    uint64_t took = fs_now_ms() - t0;
    finish(1);
    print_message("stress: 2000 forks (1000 fork(), 1000 forksafe_fork()) "
                  "with 8 threads on 64 registered mutexes: %d hung or failed,"
                  " %.1f s\n",
                  bad, (double)took / 1000.0);
    assert_int_equal(bad, 0);
}

static void test_unregistered_hangs(void **state)
{
    (void)state;
    start(0);
    int bad = run(20, 0, 200);
    finish(0);
    print_message("control: 20 forks without registration: %d of 20 children "
                  "hung\n",
                  bad);
    assert_true(bad > 0);
}

int main(void)
{
    fs_watchdog(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unregistered_hangs),
        cmocka_unit_test(test_registered_no_hangs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
