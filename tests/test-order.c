/* SPDX-License-Identifier: MIT */
/*
 * test-order.c: prepare runs in ascending (rank, registration order) and the
 * parent and child handlers in exactly the reverse order, for plain fork()
 * and for forksafe_fork(), whatever order the entries were registered in.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <string.h>
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

int main(void)
{
    fs_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_plain_fork, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_forksafe_fork, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_order_after_unregister, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
