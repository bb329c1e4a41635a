/*
 * tests/adapters/test-event.c: libforksafe-event against the real libevent,
 * with threading enabled (evthread_use_pthreads). A SIGUSR1 event added
 * before fork: when the child raises SIGUSR1 only the child's callback runs;
 * without the adapter the parent's callback runs for the child's signal.
 */
#include "common.h"

#include <forksafe/event.h>

#include <errno.h>
#include <event2/thread.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#define CHILD_CHECK(cond, code)                                              \
    do {                                                                     \
        if (!(cond))                                                         \
            _exit(code);                                                     \
    } while (0)

struct fixture {
    struct event_base *base;
    struct event *sig;
    int calls; /* SIGUSR1 callbacks run in this process */
};

static void on_sigusr1(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fixture *f = arg;
    f->calls++;
}

static struct fixture fx;

static int setup(void **state)
{
    fx.calls = 0;
    fx.base = event_base_new();
    if (!fx.base)
        return -1;
    fx.sig = evsignal_new(fx.base, SIGUSR1, on_sigusr1, &fx);
    if (!fx.sig || event_add(fx.sig, NULL) != 0)
        return -1;
    fs_idle_start();
    *state = &fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    fs_idle_stop();
    forksafe_event_untrack(f->base);
    event_free(f->sig);
    event_base_free(f->base);
    return 0;
}

static void test_event_track_contract(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(forksafe_event_track(NULL), EINVAL);
    assert_int_equal(forksafe_event_untrack(NULL), EINVAL);
    assert_int_equal(forksafe_event_untrack(f->base), ENOENT);
    assert_int_equal(forksafe_event_track(f->base), 0);
    assert_int_equal(forksafe_event_track(f->base), 0); /* idempotent */
    assert_int_equal(forksafe_adapter_installed("event"), 1);
    assert_int_equal(forksafe_event_untrack(f->base), 0);
    assert_int_equal(forksafe_event_untrack(f->base), ENOENT);
    assert_int_equal(forksafe_event_fork_error(), 0);
}

static void test_event_sigusr1_only_in_child(void **state)
{
    struct fixture *f = *state;
    int raised[2], go[2];
    assert_int_equal(pipe(raised), 0);
    assert_int_equal(pipe(go), 0);
    assert_int_equal(forksafe_event_track(f->base), 0);
    pid_t pid = forksafe_fork(NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        char c = 0;
        CHILD_CHECK(forksafe_event_fork_error() == 0, 10);
        CHILD_CHECK(raise(SIGUSR1) == 0, 11);
        /* Let the parent look first: had the signal reached the parent's
           base, the parent's loop would now run its callback. */
        CHILD_CHECK(write(raised[1], "r", 1) == 1, 12);
        /* Bounded, so a failing parent never leaves this child behind. */
        struct pollfd p = {go[0], POLLIN, 0};
        CHILD_CHECK(poll(&p, 1, 5000) == 1, 13);
        CHILD_CHECK(read(go[0], &c, 1) == 1, 13);
        /* Blocks until the signal event is active: a hang is caught by the
           parent's bounded wait. */
        CHILD_CHECK(event_base_loop(f->base, EVLOOP_ONCE) == 0, 14);
        CHILD_CHECK(f->calls == 1, 15);
        _exit(0);
    }
    char c = 0;
    assert_int_equal(read(raised[0], &c, 1), 1);
    /* The child's signal did not reach the parent's base. */
    assert_int_equal(event_base_loop(f->base, EVLOOP_NONBLOCK), 0);
    assert_int_equal(f->calls, 0);
    assert_int_equal(write(go[1], "g", 1), 1);
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(event_base_loop(f->base, EVLOOP_NONBLOCK), 0);
    assert_int_equal(f->calls, 0);
    /* The parent's own signal still does. */
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(event_base_loop(f->base, EVLOOP_ONCE), 0);
    assert_int_equal(f->calls, 1);
    close(raised[0]);
    close(raised[1]);
    close(go[0]);
    close(go[1]);
}

/* The same without the adapter: the child's signal handler writes into the
   socketpair it shares with the parent, so the parent's loop runs its
   SIGUSR1 callback although the parent never received SIGUSR1. (The child
   does not run its loop: on the shared epoll set the two processes would
   race for the byte.) */
static void test_event_without_adapter_parent_runs_child_signal(void **state)
{
    struct fixture *f = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        CHILD_CHECK(raise(SIGUSR1) == 0, 11);
        _exit(0);
    }
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(event_base_loop(f->base, EVLOOP_NONBLOCK), 0);
    assert_int_equal(f->calls, 1);
}

int main(void)
{
    fs_watchdog(60);
    if (evthread_use_pthreads() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_track_contract, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_event_sigusr1_only_in_child,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_event_without_adapter_parent_runs_child_signal, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
