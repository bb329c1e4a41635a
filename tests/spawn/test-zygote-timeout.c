/* SPDX-License-Identifier: MIT */
/*
 * test-zygote-timeout.c: every round trip to the fork server is bounded.
 * The server is stopped with SIGSTOP while the program spawns, asks for
 * its PID, forks and stops it. The program re-executes itself with
 * FORKSAFE_TIMEOUT_MS=1500, the library's default timeout, which bounds
 * both a round trip and a fork's wait for a registered lock: a fork that
 * still waited for the fork server's lock would take the whole 1.5 s.
 * Calls that might block are made from a helper thread and joined with a
 * deadline, so that a hang fails the test instead of stopping the run.
 * The server's census (unshare()) is wrapped so that one test can make the
 * server slow after it has accepted a request, which makes its reply late.
 */
#include "common.h"

#include <forksafe.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS 1500

static pid_t test_pid;

static int e_empty(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    return 0;
}

/* Runs until killed; if the library fails to kill it, it still ends after
   20 s, so that it cannot hold the test runner's output pipe open. */
static int e_forever(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    sleep(20);
    return 1;
}

/* In the server, the first census sleeps slow_census_ms when that was set
   before the server started: the request has passed the server's deadline
   check by then, so the worker is made after the client gave up. */
int __real_unshare(int flags);
int __wrap_unshare(int flags);
static unsigned slow_census_ms;
static int census_calls;

int __wrap_unshare(int flags)
{
    if (slow_census_ms && getpid() != test_pid && census_calls++ == 0)
        usleep(slow_census_ms * 1000u);
    return __real_unshare(flags);
}

/* getppid() is the server's first step after the fork (the library calls
   it nowhere else): with start_fault set, the server sleeps past the
   timeout there (1) or exits (2), before it says it is ready. */
pid_t __real_getppid(void);
pid_t __wrap_getppid(void);
static int start_fault;

pid_t __wrap_getppid(void)
{
    if (start_fault && getpid() != test_pid) {
        if (start_fault == 1)
            usleep((TIMEOUT_MS + 1000) * 1000u);
        else
            _exit(3);
    }
    return __real_getppid();
}

/* ------------------------------------------------- helpers */

/* One call in a helper thread. */
enum call_kind { CALL_SPAWN, CALL_PID, CALL_STOP };
struct call {
    enum call_kind kind;
    pthread_t thread;
    int r;     /* the call's result */
    pid_t pid; /* the worker (spawn) or the server (pid) */
    uint64_t took_ms;
};

static void *call_main(void *arg)
{
    struct call *c = arg;
    uint64_t t0 = fs_now_ms();
    switch (c->kind) {
    case CALL_SPAWN:
        c->r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &c->pid);
        break;
    case CALL_PID:
        c->pid = forksafe_zygote_pid();
        c->r = 0;
        break;
    case CALL_STOP:
        c->r = forksafe_zygote_stop();
        break;
    }
    c->took_ms = fs_now_ms() - t0;
    return NULL;
}

static void call_start(struct call *c, enum call_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->r = -1;
    assert_int_equal(pthread_create(&c->thread, NULL, call_main, c), 0);
}

/* Join c within ms; returns 1 if it finished, 0 if it is still blocked
   (then it is joined later, after the server has been continued). */
static int call_join(struct call *c, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(c->thread, NULL, &ts) == 0;
}

/* Wait until pid shows state T (stopped) in /proc. */
static void wait_stopped(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "r");
        if (f == NULL)
            break;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp != NULL && rp[1] == ' ' && rp[2] == 'T')
            return;
        usleep(2000);
    }
    fail_msg("process %d did not stop", (int)pid);
}

/* The children of this process, as listed by the kernel. */
static void children(char *out, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)test_pid,
             (int)test_pid);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
}

static int start_retry(void)
{
    int r = EBUSY;
    for (int i = 0; i < 200 && r == EBUSY; i++) {
        r = forksafe_zygote_start();
        if (r == EBUSY)
            usleep(5000);
    }
    return r;
}

static void spawn_ok(void)
{
    pid_t w = -1;
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w), 0);
    fs_assert_child_ok(w, 5000);
}

/* ------------------------------------------------- tests */

/* A stopped server: the spawn returns ETIMEDOUT after the timeout. Once
   continued, the server refuses the expired request (no worker is made)
   and serves the next one. */
static void timeout_spawn_to_stopped_server(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_true(z > 0);
    assert_int_equal(kill(z, SIGSTOP), 0);
    wait_stopped(z);
    struct call c;
    call_start(&c, CALL_SPAWN);
    int done = call_join(&c, TIMEOUT_MS + 4000);
    assert_int_equal(kill(z, SIGCONT), 0);
    if (!done)
        pthread_join(c.thread, NULL);
    assert_true(done);
    assert_int_equal(c.r, ETIMEDOUT);
    assert_true(c.took_ms >= TIMEOUT_MS - 100);
    assert_int_equal(forksafe_zygote_pid(), z);
    spawn_ok();
    /* No worker was made for the expired request: the server is this
       process's only child. */
    char kids[256], want[32];
    children(kids, sizeof kids);
    snprintf(want, sizeof want, "%d ", (int)z);
    assert_string_equal(kids, want);
}

/* While a spawn waits for a stopped server, forksafe_zygote_pid() answers
   at once and a plain fork() does not wait for the fork server's lock. */
static void timeout_pid_and_fork_do_not_wait(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_int_equal(kill(z, SIGSTOP), 0);
    wait_stopped(z);
    struct call s, p;
    call_start(&s, CALL_SPAWN);
    usleep(200000); /* the spawn is now waiting for its reply */
    call_start(&p, CALL_PID);
    int pid_done = call_join(&p, 1000);
    uint64_t t0 = fs_now_ms();
    pid_t c = fork();
    if (c == 0)
        _exit(0);
    uint64_t fork_ms = fs_now_ms() - t0;
    assert_int_equal(kill(z, SIGCONT), 0);
    if (!pid_done)
        pthread_join(p.thread, NULL);
    pthread_join(s.thread, NULL);
    assert_true(c > 0);
    fs_assert_child_ok(c, 5000);
    if (s.r == 0)
        fs_assert_child_ok(s.pid, 5000);
    assert_true(pid_done);
    assert_int_equal(p.pid, z);
    assert_true(p.took_ms < 500);
    assert_true(fork_ms < TIMEOUT_MS / 2);
    spawn_ok();
}

/* Threads spawning at once to a stopped server: each is bounded by its
   own timeout, not by the sum of the others'. */
static void timeout_concurrent_spawns(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_int_equal(kill(z, SIGSTOP), 0);
    wait_stopped(z);
    struct call c[3];
    for (int i = 0; i < 3; i++)
        call_start(&c[i], CALL_SPAWN);
    int done = 1;
    for (int i = 0; i < 3; i++)
        done &= call_join(&c[i], TIMEOUT_MS + 4000);
    assert_int_equal(kill(z, SIGCONT), 0);
    for (int i = 0; i < 3 && !done; i++)
        pthread_join(c[i].thread, NULL);
    assert_true(done);
    for (int i = 0; i < 3; i++) {
        if (c[i].r == 0)
            fs_assert_child_ok(c[i].pid, 5000);
        assert_int_equal(c[i].r, ETIMEDOUT);
        assert_true(c[i].took_ms < TIMEOUT_MS + 1500);
    }
    spawn_ok();
}

/* Stopping a stopped server: it is killed after the timeout and reaped;
   a new one can be started. */
static void timeout_stop_stopped_server(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_int_equal(kill(z, SIGSTOP), 0);
    wait_stopped(z);
    struct call c;
    call_start(&c, CALL_STOP);
    int done = call_join(&c, TIMEOUT_MS + 4000);
    if (!done) {
        kill(z, SIGCONT);
        pthread_join(c.thread, NULL);
    }
    assert_true(done);
    assert_int_equal(c.r, 0);
    errno = 0;
    assert_int_equal(waitpid(z, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(forksafe_zygote_pid(), 0);
    assert_int_equal(start_retry(), 0);
    spawn_ok();
}

/* A worker made after its client gave up (ETIMEDOUT) is killed and reaped
   through the pidfd in its late reply, by the next round trip. */
static void timeout_late_worker_is_killed(void **state)
{
    (void)state;
    assert_int_equal(forksafe_zygote_stop(), 0);
    slow_census_ms = TIMEOUT_MS + 500;
    int r = start_retry();
    slow_census_ms = 0;
    assert_int_equal(r, 0);
    pid_t z = forksafe_zygote_pid();
    pid_t w = 0;
    uint64_t t0 = fs_now_ms();
    assert_int_equal(forksafe_zygote_spawn("forever", NULL, 0, NULL, 0, &w),
                     ETIMEDOUT);
    assert_true(fs_now_ms() - t0 < TIMEOUT_MS + 400);
    assert_int_equal(w, 0);
    /* The server wakes up and makes the worker anyway. */
    char kids[256], only[32];
    snprintf(only, sizeof only, "%d ", (int)z);
    uint64_t end = fs_now_ms() + 5000;
    do {
        usleep(10000);
        children(kids, sizeof kids);
    } while (strcmp(kids, only) == 0 && fs_now_ms() < end);
    assert_string_not_equal(kids, only);
    /* The next round trip reads the late reply, and the worker is gone. */
    spawn_ok();
    children(kids, sizeof kids);
    assert_string_equal(kids, only);
}

/* A server that is silent past the timeout, or exits, before it says it
   is ready: start() says ETIMEDOUT or ECHILD within its bound and leaves
   no server and no child behind. */
static void timeout_start_of_a_silent_or_dead_server(void **state)
{
    (void)state;
    forksafe_zygote_stop();
    for (int fault = 1; fault <= 2; fault++) {
        start_fault = fault;
        uint64_t t0 = fs_now_ms();
        int r = start_retry();
        uint64_t took = fs_now_ms() - t0;
        start_fault = 0;
        assert_int_equal(r, fault == 1 ? ETIMEDOUT : ECHILD);
        assert_true(took < 2 * TIMEOUT_MS + 500);
        assert_int_equal(forksafe_zygote_pid(), 0);
        pid_t w;
        assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w),
                         ECHILD);
        errno = 0;
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
    }
    assert_int_equal(start_retry(), 0);
    spawn_ok();
}

/* Threads that spawn in a loop, until the server is gone (ECHILD). */
static void *spinner_main(void *arg)
{
    (void)arg;
    for (;;) {
        pid_t w = 0;
        int r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
        if (r == 0) {
            int code;
            fs_wait(w, 5000, &code);
        }
        if (r == ECHILD)
            return NULL;
    }
}

/* Stopping a stopped server while other threads keep spawning: stop()
   must not queue behind them round trip after round trip. Its bound is
   twice the timeout (the round trip in flight, then the server's exit);
   the spawners, once the server is gone, get ECHILD (adversary, after
   issue 10 item 13). */
static void timeout_stop_with_spawners_spinning(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_int_equal(kill(z, SIGSTOP), 0);
    wait_stopped(z);
    enum { N = 6 };
    pthread_t t[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, spinner_main, NULL), 0);
    usleep(300000);
    struct call c;
    call_start(&c, CALL_STOP);
    int done = call_join(&c, 6 * TIMEOUT_MS);
    if (!done) {
        kill(z, SIGKILL);
        pthread_join(c.thread, NULL);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    int restarted = start_retry();
    assert_true(done);
    assert_int_equal(c.r, 0);
    assert_true(c.took_ms <= 2 * TIMEOUT_MS + 500);
    assert_int_equal(restarted, 0);
    spawn_ok();
}

/* A fork by another thread that waits (with its own, longer timeout) for
   a registered lock ranked after the fork server's holds that lock
   meanwhile: a spawn must still return by its own deadline (adversary,
   after issue 10 item 13). */
static pthread_mutex_t late_leaf = PTHREAD_MUTEX_INITIALIZER;
static volatile int late_leaf_release;

static void *leaf_holder_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&late_leaf);
    while (!late_leaf_release)
        usleep(1000);
    pthread_mutex_unlock(&late_leaf);
    return NULL;
}

static void *long_forker_main(void *arg)
{
    struct forksafe_fork_opts o;
    memset(&o, 0, sizeof o);
    o.timeout_ms = 30000;
    pid_t c = forksafe_fork(&o);
    if (c == 0)
        _exit(0);
    *(pid_t *)arg = c;
    return NULL;
}

static void timeout_spawn_while_a_fork_holds_the_lock(void **state)
{
    (void)state;
    assert_int_equal(forksafe_register_mutex(&late_leaf, "late leaf",
                                             FORKSAFE_RANK_LEAF + 950),
                     0);
    late_leaf_release = 0;
    pthread_t holder, forker;
    pid_t forked = -1;
    assert_int_equal(pthread_create(&holder, NULL, leaf_holder_main, NULL), 0);
    usleep(100000);
    assert_int_equal(pthread_create(&forker, NULL, long_forker_main, &forked),
                     0);
    usleep(300000); /* the fork now waits for late_leaf */
    struct call c;
    call_start(&c, CALL_SPAWN);
    int done = call_join(&c, TIMEOUT_MS + 1500);
    late_leaf_release = 1;
    if (!done)
        pthread_join(c.thread, NULL);
    pthread_join(holder, NULL);
    pthread_join(forker, NULL);
    forksafe_unregister(&late_leaf);
    if (forked > 0)
        fs_assert_child_ok(forked, 5000);
    if (c.r == 0)
        fs_assert_child_ok(c.pid, 5000);
    assert_true(done);
    assert_true(c.took_ms <= TIMEOUT_MS + 500);
    assert_true(c.r == ETIMEDOUT || c.r == 0);
    spawn_ok();
}

/* The late worker is killed and reaped by the next round trip even when
   signals keep interrupting that round trip's wait for it to die. */
static pthread_t flood_target;
static volatile int flood_on;

static void on_usr1(int sig)
{
    (void)sig;
}

static void *flood_main(void *arg)
{
    (void)arg;
    while (flood_on)
        pthread_kill(flood_target, SIGUSR1);
    return NULL;
}

static void timeout_late_worker_reaped_under_signals(void **state)
{
    (void)state;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART */
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    char kids[256], only[32];
    for (int round = 0; round < 4; round++) {
        forksafe_zygote_stop();
        slow_census_ms = TIMEOUT_MS + 500;
        census_calls = 0;
        int r = start_retry();
        slow_census_ms = 0;
        assert_int_equal(r, 0);
        pid_t z = forksafe_zygote_pid(), w = 0;
        assert_int_equal(forksafe_zygote_spawn("forever", NULL, 0, NULL, 0, &w),
                         ETIMEDOUT);
        snprintf(only, sizeof only, "%d ", (int)z);
        uint64_t end = fs_now_ms() + 5000;
        do {
            usleep(10000);
            children(kids, sizeof kids);
        } while (strcmp(kids, only) == 0 && fs_now_ms() < end);
        assert_string_not_equal(kids, only); /* the late worker exists */
        flood_target = pthread_self();
        flood_on = 1;
        pthread_t f;
        assert_int_equal(pthread_create(&f, NULL, flood_main, NULL), 0);
        r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
        flood_on = 0;
        pthread_join(f, NULL);
        assert_int_equal(r, 0);
        fs_assert_child_ok(w, 5000);
        children(kids, sizeof kids);
        assert_string_equal(kids, only);
    }
    sigaction(SIGUSR1, &old, NULL);
}

/* The program has entered a time namespace (unshare(CLONE_NEWTIME)) whose
   CLOCK_MONOTONIC is offset: its server lives there, the program does
   not. Deadlines must still mean the same instant to both: with the
   server's clock ahead (mode 0), every spawn used to be refused as
   expired; with it behind (mode 1), an expired request used to make a
   worker. In a process of its own. */
static int timens_scenario(int mode, int fd)
{
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
    if (unshare(CLONE_NEWTIME) != 0)
        return 77;
    const char *off = mode == 0 ? "monotonic 1000 0" : "monotonic -5 0";
    FILE *f = fopen("/proc/self/timens_offsets", "w");
    if (f == NULL)
        return 77;
    int ok = fputs(off, f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok)
        return 77;
    if (forksafe_zygote_start() != 0)
        return 10;
    pid_t w = 0, z = forksafe_zygote_pid();
    int r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
    if (r != 0) {
        dprintf(fd, "spawn, server's clock %s: %s\n", off, strerror(r));
        return 1;
    }
    int code = -1;
    if (fs_wait(w, 5000, &code) != FS_EXITED || code != 0)
        return 2;
    if (mode == 1) {
        if (kill(z, SIGSTOP) != 0)
            return 11;
        wait_stopped(z);
        r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
        kill(z, SIGCONT);
        if (r != ETIMEDOUT)
            return 3;
        /* The continued server must refuse the expired request: the next
           spawn's worker is the only one, and nothing else is left. */
        usleep(300000);
        r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
        if (r != 0 || fs_wait(w, 5000, &code) != FS_EXITED)
            return 4;
        pid_t extra = waitpid(-1, NULL, WNOHANG);
        if (extra != 0) {
            dprintf(fd, "a worker was made for an expired request (%d)\n",
                    (int)extra);
            return 5;
        }
    }
    return forksafe_zygote_stop() == 0 ? 0 : 6;
}

static void timeout_in_time_namespace(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        char out[256];
        int code = fs_run_scenario(timens_scenario, mode, out, sizeof out);
        if (code == 77)
            skip();
        if (code != 0)
            fprintf(stderr, "mode %d: %s", mode, out);
        assert_int_equal(code, 0);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    if (getenv("FORKSAFE_TIMEOUT_MS") == NULL) {
        /* Read by the library when it is loaded: set it, then start
           again. */
        setenv("FORKSAFE_TIMEOUT_MS", "1500", 1);
        execv("/proc/self/exe", argv);
        perror("test-zygote-timeout: execv");
        return 1;
    }
    fs_watchdog(120);
    test_pid = getpid();
    forksafe_zygote_register("empty", e_empty);
    forksafe_zygote_register("forever", e_forever);
    if (forksafe_zygote_start() != 0) {
        fprintf(stderr, "test-zygote-timeout: setup failed\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(timeout_spawn_to_stopped_server),
        cmocka_unit_test(timeout_pid_and_fork_do_not_wait),
        cmocka_unit_test(timeout_concurrent_spawns),
        cmocka_unit_test(timeout_late_worker_is_killed),
        cmocka_unit_test(timeout_stop_stopped_server),
        cmocka_unit_test(timeout_start_of_a_silent_or_dead_server),
        cmocka_unit_test(timeout_stop_with_spawners_spinning),
        cmocka_unit_test(timeout_spawn_while_a_fork_holds_the_lock),
        cmocka_unit_test(timeout_late_worker_reaped_under_signals),
        cmocka_unit_test(timeout_in_time_namespace),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    forksafe_zygote_stop();
    return r;
}
