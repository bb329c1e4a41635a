/* SPDX-License-Identifier: MIT */
/*
 * test-order.c: prepare runs in ascending (rank, registration order) and the
 * parent and child handlers in exactly the reverse order, for plain fork()
 * and for forksafe_fork(), whatever order the entries were registered in.
 * Locks that share a rank are taken as a set that assumes no order among
 * them (issue 11, item 1), before the rank's callbacks.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 6

static char trace[64];
static size_t trace_len;
static int ctx[N];

static void note(char phase, int i)
{
    if (trace_len + 2 < sizeof trace) {
        trace[trace_len++] = phase;
        trace[trace_len++] = (char)('0' + i);
        trace[trace_len] = '\0';
    }
}

static int on_prepare(void *c, const struct timespec *d)
{
    (void)d;
    note('p', (int)((int *)c - ctx));
    return 0;
}

static void on_parent(void *c)
{
    note('P', (int)((int *)c - ctx));
}

static void on_child(void *c)
{
    note('C', (int)((int *)c - ctx));
}

static const struct forksafe_ops ops = {on_prepare, on_parent, on_child};

/* Register entries 0..5 in a scrambled order with ranks such that the fork
   order is 0,1,2,3,4,5: equal ranks keep registration order. */
static int setup(void **state)
{
    (void)state;
    static const struct {
        int idx;
        unsigned rank;
    } plan[N] = {{4, 300}, {1, 100}, {5, 300}, {0, 50}, {2, 100}, {3, 200}};
    for (int i = 0; i < N; i++)
        if (forksafe_register_ops(&ctx[plan[i].idx], "cb", plan[i].rank, &ops))
            return -1;
    trace_len = 0;
    trace[0] = '\0';
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < N; i++)
        forksafe_unregister(&ctx[i]);
    return 0;
}

static void check_order(int use_wrapper)
{
    fs_idle_start();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = use_wrapper ? forksafe_fork(NULL) : fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child sees prepare then its own handlers. */
        ssize_t w = write(fds[1], trace, strlen(trace));
        _exit(w == (ssize_t)strlen(trace) ? 0 : 1);
    }
    close(fds[1]);
    fs_assert_child_ok(pid, 5000);
    char child_trace[64] = {0};
    assert_true(read(fds[0], child_trace, sizeof child_trace - 1) > 0);
    close(fds[0]);
    assert_string_equal(child_trace, "p0p1p2p3p4p5C5C4C3C2C1C0");
    assert_string_equal(trace, "p0p1p2p3p4p5P5P4P3P2P1P0");
    fs_idle_stop();
}

static void test_order_plain_fork(void **state)
{
    (void)state;
    check_order(0);
}

static void test_order_forksafe_fork(void **state)
{
    (void)state;
    check_order(1);
}

static void test_order_after_unregister(void **state)
{
    (void)state;
    /* Removing entries from the middle keeps the rest in order. */
    assert_int_equal(forksafe_unregister(&ctx[2]), 0);
    assert_int_equal(forksafe_unregister(&ctx[4]), 0);
    pid_t pid = forksafe_fork(NULL);
    if (pid == 0)
        _exit(0);
    fs_assert_child_ok(pid, 5000);
    assert_string_equal(trace, "p0p1p3p5P5P3P1P0");
}

/* ---- one rank, no order among its locks (issue 11, item 1) ---- */

static pthread_mutex_t set_x = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t set_y = PTHREAD_MUTEX_INITIALIZER;

struct nester {
    pthread_t thread;
    volatile int holding, done;
};

/* Takes y, then (while the forker waits for y) x: the reverse of their
   registration order. A forker that takes a rank's locks one by one in
   registration order holds x while it waits for y, and this thread then
   waits for x: a deadlock that only the deadline ends. */
static void *nest_reverse(void *arg)
{
    struct nester *n = arg;
    pthread_mutex_lock(&set_y);
    n->holding = 1;
    struct timespec d = {0, 150 * 1000 * 1000};
    nanosleep(&d, NULL);
    pthread_mutex_lock(&set_x);
    pthread_mutex_unlock(&set_x);
    pthread_mutex_unlock(&set_y);
    n->done = 1;
    return NULL;
}

static void same_rank_any_order(int wrapper)
{
    assert_int_equal(forksafe_register_mutex(&set_x, "set x", 500), 0);
    assert_int_equal(forksafe_register_mutex(&set_y, "set y", 500), 0);
    struct nester n = {0};
    assert_int_equal(pthread_create(&n.thread, NULL, nest_reverse, &n), 0);
    while (!n.holding)
        sched_yield();
    uint64_t t0 = fs_now_ms();
    struct forksafe_fork_opts o = {.timeout_ms = 2000};
    pid_t pid = wrapper ? forksafe_fork(&o) : fork();
    if (pid == 0) {
        /* Both free in the child: neither was skipped. */
        int ok = pthread_mutex_trylock(&set_x) == 0 &&
                 pthread_mutex_trylock(&set_y) == 0;
        _exit(ok ? 0 : 1);
    }
    uint64_t took = fs_now_ms() - t0;
    if (pid < 0)
        fail_msg("forksafe_fork: %s", forksafe_last_error());
    fs_assert_child_ok(pid, 5000);
    pthread_join(n.thread, NULL);
    assert_true(n.done);
    /* It waited for the nester (150 ms), not for a deadline. */
    assert_true(took < 1000);
    assert_int_equal(forksafe_unregister(&set_x), 0);
    assert_int_equal(forksafe_unregister(&set_y), 0);
}

static void test_same_rank_any_order_wrapper(void **state)
{
    (void)state;
    same_rank_any_order(1);
}

static void test_same_rank_any_order_plain(void **state)
{
    (void)state;
    same_rank_any_order(0);
}

struct hog {
    pthread_mutex_t *m;
    volatile int held, release;
};

static void *hog_main(void *arg)
{
    struct hog *h = arg;
    pthread_setname_np(pthread_self(), "rank-hog");
    pthread_mutex_lock(h->m);
    h->held = 1;
    while (!h->release) {
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
    pthread_mutex_unlock(h->m);
    return NULL;
}

/* The lock of a rank that does not yield is still the one named, and
   nothing of the rank stays held. */
static void test_same_rank_names_busy_lock(void **state)
{
    (void)state;
    pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER,
                    b = PTHREAD_MUTEX_INITIALIZER,
                    c = PTHREAD_MUTEX_INITIALIZER;
    assert_int_equal(forksafe_register_mutex(&a, "rank a", 600), 0);
    assert_int_equal(forksafe_register_mutex(&b, "rank b", 600), 0);
    assert_int_equal(forksafe_register_mutex(&c, "rank c", 600), 0);
    struct hog h = {.m = &b};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, hog_main, &h), 0);
    while (!h.held)
        sched_yield();
    struct forksafe_fork_opts o = {.timeout_ms = 200};
    uint64_t took;
    assert_int_equal(fs_fork_must_fail(&o, &took), ETIMEDOUT);
    assert_true(took >= 190 && took < 1500);
    assert_non_null(strstr(forksafe_last_error(), "\"rank b\""));
    assert_non_null(strstr(forksafe_last_error(), "rank-hog"));
    assert_int_equal(pthread_mutex_trylock(&a), 0);
    assert_int_equal(pthread_mutex_trylock(&c), 0);
    pthread_mutex_unlock(&a);
    pthread_mutex_unlock(&c);
    h.release = 1;
    pthread_join(t, NULL);
    assert_int_equal(forksafe_unregister(&a), 0);
    assert_int_equal(forksafe_unregister(&b), 0);
    assert_int_equal(forksafe_unregister(&c), 0);
}

/* Within one rank the locks are held before the rank's callbacks run, and
   released after them; between ranks the order is unchanged. */
static pthread_mutex_t order_m = PTHREAD_MUTEX_INITIALIZER;
static char lock_seen[8];

static int check_prepare(void *c, const struct timespec *d)
{
    (void)d;
    /* Held by the forking thread (this one) by now: not free. */
    int r = pthread_mutex_trylock(&order_m);
    if (r == 0)
        pthread_mutex_unlock(&order_m);
    lock_seen[(int *)c - ctx] = r == EBUSY ? 'h' : 'f';
    note('p', (int)((int *)c - ctx));
    return 0;
}

static const struct forksafe_ops check_ops = {check_prepare, on_parent,
                                              on_child};

static void test_same_rank_locks_before_callbacks(void **state)
{
    (void)state;
    fs_idle_start();
    trace_len = 0;
    trace[0] = '\0';
    /* The callback is registered first, at the mutex's rank. */
    assert_int_equal(forksafe_register_ops(&ctx[0], "cb", 700, &check_ops), 0);
    assert_int_equal(forksafe_register_mutex(&order_m, "m", 700), 0);
    assert_int_equal(forksafe_register_ops(&ctx[1], "cb", 650, &check_ops), 0);
    pid_t pid = forksafe_fork(NULL);
    if (pid == 0)
        _exit(0);
    fs_assert_child_ok(pid, 5000);
    assert_string_equal(trace, "p1p0P0P1");
    assert_int_equal(lock_seen[0], 'h'); /* rank 700: m already held */
    assert_int_equal(lock_seen[1], 'f'); /* rank 650: m not yet taken */
    assert_int_equal(forksafe_unregister(&ctx[0]), 0);
    assert_int_equal(forksafe_unregister(&ctx[1]), 0);
    assert_int_equal(forksafe_unregister(&order_m), 0);
    fs_idle_stop();
}

int main(int argc, char **argv)
{
    (void)argc;
    /* A plain fork() that meets a deadlock waits for the default timeout:
       keep it short here. */
    if (!getenv("FORKSAFE_TIMEOUT_MS")) {
        setenv("FORKSAFE_TIMEOUT_MS", "1500", 1);
        execv("/proc/self/exe", argv);
        return 2;
    }
    fs_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_plain_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_forksafe_fork, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_order_after_unregister, setup,
                                        teardown),
        cmocka_unit_test(test_same_rank_any_order_wrapper),
        cmocka_unit_test(test_same_rank_any_order_plain),
        cmocka_unit_test(test_same_rank_names_busy_lock),
        cmocka_unit_test(test_same_rank_locks_before_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
