/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-event.c: libforksafe-event against the real libevent,
 * with threading enabled (forksafe_event_use_pthreads). A SIGUSR1 event
 * added before fork: when the child raises SIGUSR1 only the child's callback
 * runs; without the adapter the parent's callback runs for the child's
 * signal. A fork while another thread is inside the base waits for it;
 * without the adapter the child's event_reinit() hangs on the base lock.
 */
#include "common.h"

#include "adapter-test.h"

#include <forksafe/event.h>

#include <errno.h>
#include <event2/thread.h>
#include <poll.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
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

/* How many times needle occurs in the text report. */
static int report_count(const char *needle)
{
    static char report[65536];
    FILE *fp = tmpfile();
    if (!fp || forksafe_audit_write(fileno(fp), 0) != 0)
        return -1;
    rewind(fp);
    size_t n = fread(report, 1, sizeof report - 1, fp);
    report[n] = '\0';
    fclose(fp);
    int count = 0;
    for (char *p = report; (p = strstr(p, needle)) != NULL; p++)
        count++;
    return count;
}

static void test_event_track_contract(void **state)
{
    struct fixture *f = *state;
    /* Threading is already on (main): setting it up again is a no-op. */
    assert_int_equal(forksafe_event_use_pthreads(), 0);
    assert_int_equal(report_count("event: base lock"), 0);
    assert_int_equal(forksafe_event_track(NULL), EINVAL);
    assert_int_equal(forksafe_event_untrack(NULL), EINVAL);
    assert_int_equal(forksafe_event_untrack(f->base), ENOENT);
    assert_int_equal(forksafe_event_track(f->base), 0);
    assert_int_equal(forksafe_event_track(f->base), 0); /* idempotent */
    assert_int_equal(forksafe_adapter_installed("event"), 1);
    assert_int_equal(report_count("event: base lock"), 1);
    assert_int_equal(forksafe_event_untrack(f->base), 0);
    assert_int_equal(report_count("event: base lock"), 0);
    assert_int_equal(forksafe_event_untrack(f->base), ENOENT);
    assert_int_equal(forksafe_event_fork_error(), 0);
    /* The install contract every adapter shares (nothing is tracked). */
    assert_int_equal(
        fs_adapter_shape(forksafe_event_install, forksafe_event_uninstall,
                         "event", "event: tracked bases",
                         FORKSAFE_EVENT_RANK),
        0);
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

/* A thread inside the base: event_base_foreach_event() holds the base lock
   while it calls this, which keeps it for hold_ms. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cv = PTHREAD_COND_INITIALIZER;
static int holding;
static long hold_ms;

static int hold_base_lock(const struct event_base *b, const struct event *e,
                          void *arg)
{
    (void)b;
    (void)e;
    (void)arg;
    pthread_mutex_lock(&hold_mu);
    holding = 1;
    pthread_cond_broadcast(&hold_cv);
    pthread_mutex_unlock(&hold_mu);
    struct timespec d = {hold_ms / 1000, (hold_ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
    return 1; /* stop the iteration: hold once */
}

static void *holder_main(void *arg)
{
    struct fixture *f = arg;
    event_base_foreach_event(f->base, hold_base_lock, NULL);
    return NULL;
}

/* Start a thread that holds f's base lock for ms; returns once it holds. */
static pthread_t hold_start(struct fixture *f, long ms)
{
    pthread_t t;
    holding = 0;
    hold_ms = ms;
    if (pthread_create(&t, NULL, holder_main, f) != 0)
        abort();
    pthread_mutex_lock(&hold_mu);
    while (!holding)
        pthread_cond_wait(&hold_cv, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
    return t;
}

static void test_event_fork_waits_for_thread_in_base(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(forksafe_event_track(f->base), 0);
    pthread_t t = hold_start(f, 300);
    /* prepare waits for the holder (the base lock is registered), so the
       child's event_reinit() finds the lock free. */
    pid_t pid = forksafe_fork(NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        CHILD_CHECK(forksafe_event_fork_error() == 0, 10);
        CHILD_CHECK(raise(SIGUSR1) == 0, 11);
        CHILD_CHECK(event_base_loop(f->base, EVLOOP_ONCE) == 0, 12);
        CHILD_CHECK(f->calls == 1, 13);
        _exit(0);
    }
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* Without the adapter: another thread is inside the base at the fork; the
   child calls event_reinit() as libevent says, and blocks forever on the
   base lock that thread held (the bounded wait reports FS_HUNG). */
static void test_event_without_adapter_reinit_hangs_on_base_lock(void **state)
{
    struct fixture *f = *state;
    pthread_t t = hold_start(f, 1500);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        event_reinit(f->base);
        _exit(0);
    }
    int code = 0;
    assert_int_equal(fs_wait(pid, 1000, &code), FS_HUNG);
    assert_int_equal(pthread_join(t, NULL), 0);
}

int main(void)
{
    fs_watchdog(60);
    fs_adapter_test_filter();
    if (forksafe_event_use_pthreads() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_event_track_contract, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_event_sigusr1_only_in_child,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_event_without_adapter_parent_runs_child_signal, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_event_fork_waits_for_thread_in_base,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_event_without_adapter_reinit_hangs_on_base_lock, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
