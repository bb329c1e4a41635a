/* SPDX-License-Identifier: MIT */
/*
 * test-concurrency.c: forks from several threads at once, registry churn
 * and lock traffic, all at the same time. Every child must find every
 * stable registered lock free and exit; nothing may hang.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NSTABLE    16
#define NCHURN     32
#define FORKERS    3
#define FORKS_EACH 60

static pthread_mutex_t stable[NSTABLE];
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static volatile int stop;
static int failures;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

static void *traffic(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!stop) {
        int i = (int)(rand_r(&seed) % NSTABLE);
        pthread_mutex_lock(&stable[i]);
        if (rand_r(&seed) % 4 == 0) {
            pthread_rwlock_wrlock(&rw);
            pthread_rwlock_unlock(&rw);
        } else {
            pthread_rwlock_rdlock(&rw);
            pthread_rwlock_unlock(&rw);
        }
        pthread_mutex_unlock(&stable[i]);
    }
    return NULL;
}

static void *churn(void *arg)
{
    (void)arg;
    pthread_mutex_t *ms = calloc(NCHURN, sizeof *ms);
    for (int i = 0; i < NCHURN; i++)
        pthread_mutex_init(&ms[i], NULL);
    unsigned seed = 7;
    while (!stop) {
        int i = (int)(rand_r(&seed) % NCHURN);
        int r = forksafe_register_mutex(&ms[i], "churn", rand_r(&seed) % 3000);
        if (r == EEXIST)
            r = forksafe_unregister(&ms[i]);
        if (r != 0) {
            pthread_mutex_lock(&fail_mu);
            failures++;
            pthread_mutex_unlock(&fail_mu);
        }
    }
    for (int i = 0; i < NCHURN; i++)
        forksafe_unregister(&ms[i]);
    free(ms);
    return NULL;
}

static void *forker(void *arg)
{
    int plain = (int)(uintptr_t)arg == 0;
    for (int n = 0; n < FORKS_EACH; n++) {
        pid_t pid = plain ? fork() : forksafe_fork(NULL);
        if (pid == 0) {
            alarm(2);
            for (int i = 0; i < NSTABLE; i++)
                if (pthread_mutex_trylock(&stable[i]) != 0)
                    _exit(1);
            if (pthread_rwlock_trywrlock(&rw) != 0)
                _exit(2);
            _exit(0);
        }
        int code = -1;
        if (pid < 0 || fs_wait(pid, 5000, &code) != FS_EXITED || code != 0) {
            pthread_mutex_lock(&fail_mu);
            failures++;
            pthread_mutex_unlock(&fail_mu);
        }
    }
    return NULL;
}

static void test_everything_at_once(void **state)
{
    (void)state;
    for (int i = 0; i < NSTABLE; i++) {
        pthread_mutex_init(&stable[i], NULL);
        assert_int_equal(
            forksafe_register_mutex(&stable[i], "stable", 1000 + (unsigned)i),
            0);
    }
    assert_int_equal(forksafe_register_rwlock(&rw, "rw", 2000), 0);
    pthread_t t[2 + 1 + FORKERS];
    int n = 0;
    for (long i = 0; i < 2; i++)
        pthread_create(&t[n++], NULL, traffic, (void *)(i + 1));
    pthread_create(&t[n++], NULL, churn, NULL);
    pthread_t f[FORKERS];
    for (long i = 0; i < FORKERS; i++)
        pthread_create(&f[i], NULL, forker, (void *)i);
    for (int i = 0; i < FORKERS; i++)
        pthread_join(f[i], NULL);
    stop = 1;
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(failures, 0);
    for (int i = 0; i < NSTABLE; i++)
        assert_int_equal(forksafe_unregister(&stable[i]), 0);
    assert_int_equal(forksafe_unregister(&rw), 0);
}

int main(void)
{
    fs_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_everything_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
