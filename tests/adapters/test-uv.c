/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-uv.c: libforksafe-uv against the real libuv. An
 * async handle and a timer made before fork work in the child, and the
 * child's uv_async_send() wakes only the child's loop; without the adapter
 * the same send wakes the parent's loop.
 */
#include "common.h"

#include "adapter-test.h"

#include <forksafe/uv.h>

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#define CHILD_CHECK(cond, code)                                              \
    do {                                                                     \
        if (!(cond))                                                         \
            _exit(code);                                                     \
    } while (0)

struct fixture {
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t timer;
    int async_calls, timer_calls;
};

static void on_async(uv_async_t *a)
{
    struct fixture *f = a->data;
    f->async_calls++;
    uv_close((uv_handle_t *)a, NULL);
}

static void on_timer(uv_timer_t *t)
{
    struct fixture *f = t->data;
    f->timer_calls++;
    uv_close((uv_handle_t *)t, NULL);
}

/* A loop with an async handle and a 20 ms timer, run once so that its
   wake-up descriptor is in its epoll set, as in any loop that has run. */
static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f || uv_loop_init(&f->loop) != 0 ||
        uv_async_init(&f->loop, &f->async, on_async) != 0 ||
        uv_timer_init(&f->loop, &f->timer) != 0 ||
        uv_timer_start(&f->timer, on_timer, 20, 0) != 0)
        return -1;
    f->async.data = f;
    f->timer.data = f;
    uv_run(&f->loop, UV_RUN_NOWAIT);
    fs_idle_start();
    *state = f;
    return 0;
}

static void close_one(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fs_idle_stop();
    forksafe_uv_untrack(&f->loop);
    uv_walk(&f->loop, close_one, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* 1 if the loop's backend (epoll) descriptor has an event pending, that is
   if something woke the loop, waiting at most ms. */
static int loop_woken(uv_loop_t *loop, int ms)
{
    struct pollfd p = {uv_backend_fd(loop), POLLIN, 0};
    return poll(&p, 1, ms) == 1;
}

static void test_uv_track_contract(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(forksafe_uv_track(NULL), EINVAL);
    assert_int_equal(forksafe_uv_untrack(NULL), EINVAL);
    assert_int_equal(forksafe_uv_untrack(&f->loop), ENOENT);
    assert_int_equal(forksafe_uv_track(&f->loop), 0);
    assert_int_equal(forksafe_uv_track(&f->loop), 0); /* idempotent */
    assert_int_equal(forksafe_adapter_installed("uv"), 1);
    struct forksafe_info info;
    assert_int_equal(forksafe_lookup(&f->loop.wq_mutex, &info), 0);
    assert_string_equal(info.kind, "mutex");
    assert_int_equal(info.rank, FORKSAFE_UV_RANK_WQ);
    assert_int_equal(forksafe_uv_untrack(&f->loop), 0);
    assert_int_equal(forksafe_uv_untrack(&f->loop), ENOENT);
    assert_int_equal(forksafe_lookup(&f->loop.wq_mutex, NULL), ENOENT);
    assert_int_equal(forksafe_uv_fork_error(), 0);
    /* The install contract every adapter shares (nothing is tracked). */
    assert_int_equal(
        fs_adapter_shape(forksafe_uv_install, forksafe_uv_uninstall, "uv",
                         "uv: tracked loops", FORKSAFE_UV_RANK),
        0);
}

static void test_uv_async_and_timer_work_in_child(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(forksafe_uv_track(&f->loop), 0);
    pid_t pid = forksafe_fork(NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        CHILD_CHECK(forksafe_uv_fork_error() == 0, 10);
        CHILD_CHECK(uv_async_send(&f->async) == 0, 11);
        /* Both handles close themselves: uv_run returns when both ran. */
        CHILD_CHECK(uv_run(&f->loop, UV_RUN_DEFAULT) == 0, 12);
        CHILD_CHECK(f->async_calls == 1, 13);
        CHILD_CHECK(f->timer_calls == 1, 14);
        CHILD_CHECK(forksafe_uv_untrack(&f->loop) == 0, 15);
        CHILD_CHECK(uv_loop_close(&f->loop) == 0, 16);
        _exit(0);
    }
    fs_assert_child_ok(pid, 5000);
    /* The child's send went to its own loop: nothing woke the parent's. */
    assert_int_equal(loop_woken(&f->loop, 200), 0);
    assert_int_equal(f->async_calls, 0);
    /* The parent's handles still work. */
    assert_int_equal(uv_async_send(&f->async), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->async_calls, 1);
    assert_int_equal(f->timer_calls, 1);
}

/* The same scenario without the adapter: the child's uv_async_send()
   writes to the eventfd it shares with the parent, whose epoll set (also
   shared) reports it: the parent's loop is woken by another process. */
static void test_uv_without_adapter_child_wakes_parent(void **state)
{
    struct fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        CHILD_CHECK(uv_async_send(&f->async) == 0, 11);
        _exit(0);
    }
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(loop_woken(&f->loop, 1000), 1);
    /* The parent's own handle was never sent: its callback must not run,
       yet its loop woke up. */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->async_calls, 0);
}

int main(void)
{
    fs_watchdog(60);
    fs_adapter_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uv_track_contract, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_uv_async_and_timer_work_in_child,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_uv_without_adapter_child_wakes_parent, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
