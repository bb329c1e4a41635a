/* SPDX-License-Identifier: MIT */
/*
 * test-order.c: prepare runs in ascending (rank, registration order) and the
 * parent and child handlers in exactly the reverse order, for plain fork()
 * and for forksafe_fork(), whatever order the entries were registered in.
 * Locks that share a rank are taken as a set that assumes no order among
 * them (issue 11, item 1), before the rank's callbacks, without starving
 * under steady use of the set and without holding it through a cycle.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
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
    if (fs_layer_is("glibc")) {
        assert_non_null(strstr(forksafe_last_error(), "rank-hog"));
    } else {
        /* musl records no owner in a normal mutex, and the POSIX layer
           reads none at all (docs/platforms.md): the text says so. */
        assert_non_null(
            strstr(forksafe_last_error(), "the holder is not recorded"));
    }
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

/* ---- one rank under steady use ----

   SET_N threads each take their own mutex of one rank over and over,
   holding it 5 to 35 ms and leaving it free 0.5 to 3.5 ms (at random, so
   that they do not fall into step), as threads that keep one library's
   connections busy do. A forker that releases the whole rank at the first
   busy lock and starts again holding only that one finds the others all
   free at that instant almost never, and the threads it let go take
   their locks back at once: it starves until its deadline (9 to 11 of 15
   forksafe_fork()s refused at 1 s here; plain fork()s stalled 1.5 s and
   skipped the rank). One that waits for the busy lock while it keeps what
   it has gets each lock when its holder lets go: about 100 ms. */
#define SET_N 8
static pthread_mutex_t busy_set[SET_N];
static volatile int busy_stop;

static void *busy_user(void *arg)
{
    pthread_mutex_t *m = arg;
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!busy_stop) {
        long hold_us = 5000 + rand_r(&seed) % 30000;
        long gap_us = 500 + rand_r(&seed) % 3000;
        struct timespec hold = {0, hold_us * 1000}, gap = {0, gap_us * 1000};
        pthread_mutex_lock(m);
        nanosleep(&hold, NULL);
        pthread_mutex_unlock(m);
        nanosleep(&gap, NULL);
    }
    return NULL;
}

static void steady_use(int wrapper, int forks)
{
    pthread_t t[SET_N];
    busy_stop = 0;
    for (int i = 0; i < SET_N; i++) {
        pthread_mutex_init(&busy_set[i], NULL);
        assert_int_equal(forksafe_register_mutex(&busy_set[i], "busy", 800), 0);
    }
    for (int i = 0; i < SET_N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, busy_user, &busy_set[i]),
                         0);
    int refused = 0, skipped = 0;
    uint64_t slowest = 0;
    char why[512] = "";
    for (int k = 0; k < forks && refused < 3 && skipped < 3; k++) {
        struct forksafe_fork_opts o = {.timeout_ms = 1000};
        uint64_t t0 = fs_now_ms();
        pid_t pid = wrapper ? forksafe_fork(&o) : fork();
        if (pid == 0) {
            /* Every lock of the rank was held by prepare: all free here. */
            for (int i = 0; i < SET_N; i++)
                if (pthread_mutex_trylock(&busy_set[i]) != 0)
                    _exit(1);
            _exit(0);
        }
        uint64_t took = fs_now_ms() - t0;
        slowest = took > slowest ? took : slowest;
        if (pid < 0) {
            assert_int_equal(errno, ETIMEDOUT);
            snprintf(why, sizeof why, "%s", forksafe_last_error());
            refused++;
            continue;
        }
        int code = -1;
        assert_int_equal(fs_wait(pid, 5000, &code), FS_EXITED);
        skipped += code != 0;
    }
    busy_stop = 1;
    for (int i = 0; i < SET_N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < SET_N; i++)
        assert_int_equal(forksafe_unregister(&busy_set[i]), 0);
    if (refused || skipped)
        fail_msg("%s: %d refused, %d children found a lock held (the "
                 "slowest fork took %llu ms); last error: %s",
                 wrapper ? "forksafe_fork" : "fork", refused, skipped,
                 (unsigned long long)slowest, why);
}

static void test_same_rank_steady_use_wrapper(void **state)
{
    (void)state;
    steady_use(1, 20);
}

static void test_same_rank_steady_use_plain(void **state)
{
    (void)state;
    steady_use(0, 6);
}

/* A holder that waits for something the forker cannot see through: T1
   holds y and waits on a semaphore that T2 posts after it has taken x,
   which the forker holds while it waits for y. The forker cannot tell
   this from a long critical section; it keeps x only a few milliseconds
   before it lets go and waits for y alone. */
static pthread_mutex_t hid_x = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t hid_y = PTHREAD_MUTEX_INITIALIZER;
static sem_t hid_go;
static volatile int hid_held;

static void *hid_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&hid_y);
    hid_held = 1;
    sem_wait(&hid_go);
    pthread_mutex_unlock(&hid_y);
    return NULL;
}

static void *hid_poster(void *arg)
{
    (void)arg;
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL);
    pthread_mutex_lock(&hid_x);
    sem_post(&hid_go);
    pthread_mutex_unlock(&hid_x);
    return NULL;
}

static void test_same_rank_unseen_dependency(void **state)
{
    (void)state;
    assert_int_equal(sem_init(&hid_go, 0, 0), 0);
    assert_int_equal(forksafe_register_mutex(&hid_x, "hid x", 820), 0);
    assert_int_equal(forksafe_register_mutex(&hid_y, "hid y", 820), 0);
    pthread_t t1, t2;
    hid_held = 0;
    assert_int_equal(pthread_create(&t1, NULL, hid_waiter, NULL), 0);
    while (!hid_held)
        sched_yield();
    assert_int_equal(pthread_create(&t2, NULL, hid_poster, NULL), 0);
    struct forksafe_fork_opts o = {.timeout_ms = 2000};
    uint64_t t0 = fs_now_ms();
    pid_t pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(pthread_mutex_trylock(&hid_x) == 0 &&
                      pthread_mutex_trylock(&hid_y) == 0
                  ? 0
                  : 1);
    uint64_t took = fs_now_ms() - t0;
    if (pid < 0)
        fail_msg("forksafe_fork: %s", forksafe_last_error());
    fs_assert_child_ok(pid, 5000);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    /* It let go of x long before its deadline. */
    assert_true(took < 1000);
    assert_int_equal(forksafe_unregister(&hid_x), 0);
    assert_int_equal(forksafe_unregister(&hid_y), 0);
    sem_destroy(&hid_go);
}

/* A thread that spins for a spinlock runs without a system call, just as
   one inside a long critical section does: with a spinlock of the rank
   held, a running holder is not taken for one that will let go. T holds
   m, sleeps, then spins for s, which the forker took first. */
static pthread_spinlock_t spin_s;
static pthread_mutex_t spin_m = PTHREAD_MUTEX_INITIALIZER;
static volatile int spin_held;

static void *spin_nester(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&spin_m);
    spin_held = 1;
    struct timespec d = {0, 30 * 1000 * 1000};
    nanosleep(&d, NULL);
    pthread_spin_lock(&spin_s);
    pthread_spin_unlock(&spin_s);
    pthread_mutex_unlock(&spin_m);
    return NULL;
}

static void test_same_rank_spinning_holder(void **state)
{
    (void)state;
    assert_int_equal(pthread_spin_init(&spin_s, PTHREAD_PROCESS_PRIVATE), 0);
    assert_int_equal(forksafe_register_spinlock(&spin_s, "spin s", 830), 0);
    assert_int_equal(forksafe_register_mutex(&spin_m, "spin m", 830), 0);
    pthread_t t;
    spin_held = 0;
    assert_int_equal(pthread_create(&t, NULL, spin_nester, NULL), 0);
    while (!spin_held)
        sched_yield();
    struct forksafe_fork_opts o = {.timeout_ms = 2000};
    uint64_t t0 = fs_now_ms();
    pid_t pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(pthread_spin_trylock(&spin_s) == 0 &&
                      pthread_mutex_trylock(&spin_m) == 0
                  ? 0
                  : 1);
    uint64_t took = fs_now_ms() - t0;
    if (pid < 0)
        fail_msg("forksafe_fork: %s", forksafe_last_error());
    fs_assert_child_ok(pid, 5000);
    pthread_join(t, NULL);
    assert_true(took < 1000);
    assert_int_equal(forksafe_unregister((const void *)&spin_s), 0);
    assert_int_equal(forksafe_unregister(&spin_m), 0);
    pthread_spin_destroy(&spin_s);
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
        cmocka_unit_test(test_same_rank_steady_use_wrapper),
        cmocka_unit_test(test_same_rank_steady_use_plain),
        cmocka_unit_test(test_same_rank_unseen_dependency),
        cmocka_unit_test(test_same_rank_spinning_holder),
        cmocka_unit_test(test_same_rank_locks_before_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
