/* SPDX-License-Identifier: MIT */
/*
 * test-zygote-hostile.c: the fork server against a hostile or careless
 * program: a thread cancelled in the middle of a round trip, a server
 * killed while it serves requests. Each test runs in a scenario process of
 * its own, with its own server, so that a broken state cannot leak into
 * the next test; blocking calls are made from helper threads joined with
 * a deadline, so a hang fails the test instead of stopping the run. The
 * program re-executes itself with FORKSAFE_TIMEOUT_MS=1500. It links the
 * static library with unshare() wrapped, so that one test can make the
 * server slow after it has accepted a request (a late worker).
 */
#include "common.h"

#include <forksafe.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_MS   1500
#define ENTRY_STATUS 7 /* what e_seven's workers exit with */

static int e_seven(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    return ENTRY_STATUS;
}

/* Runs until killed (ends by itself after 20 s, so that it cannot hold
   the runner's output open). */
static int e_forever(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    sleep(20);
    return 1;
}

/* The server's census (unshare()) is wrapped: when slow_census_ms is set
   before the server starts, the server's first census sleeps that long,
   after it has accepted the request and before it forks the worker, so
   the worker is made after its client gave up (a late worker). */
int __real_unshare(int flags);
int __wrap_unshare(int flags);
static unsigned slow_census_ms;
static pid_t census_client; /* the process whose census is never slow */
static int census_calls;

int __wrap_unshare(int flags)
{
    if (slow_census_ms && getpid() != census_client && census_calls++ == 0)
        usleep(slow_census_ms * 1000u);
    return __real_unshare(flags);
}

/* Join t within ms: 1 if it ended, else 0 (it is left running). */
static int join_within(pthread_t t, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

/* Wait until pid shows state T (stopped) in /proc, at most 2 s. */
static void wait_stopped(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 400; i++) {
        FILE *f = fopen(path, "r");
        if (f == NULL)
            return;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        if (p != NULL && p[1] == ' ' && p[2] == 'T')
            return;
        usleep(5000);
    }
}

struct stop_call {
    int r;
    uint64_t took_ms;
};

static void *stop_main(void *arg)
{
    struct stop_call *c = arg;
    uint64_t t0 = fs_now_ms();
    c->r = forksafe_zygote_stop();
    c->took_ms = fs_now_ms() - t0;
    return NULL;
}

/* ------------------------------------------------- cancellation */

struct cancel_spawn {
    volatile int ready, go, returned;
    int r;
    pid_t pid;
};

static void *cancel_spawn_main(void *arg)
{
    struct cancel_spawn *c = arg;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    c->ready = 1;
    while (!c->go)
        usleep(1000);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL); /* not a point */
    c->r = forksafe_zygote_spawn("seven", NULL, 0, NULL, 0, &c->pid);
    c->returned = 1;
    pthread_testcancel();
    return NULL;
}

/* A thread is cancelled while its round trip waits for a stopped server
   (pthread_cancel() on a thread blocked in forksafe_zygote_spawn(), or
   one with a cancellation pending on entry). The call still returns its
   result (ETIMEDOUT), and the fork server stays usable: the next spawn
   works and stop() returns within its bound (adversary: the cancelled
   thread left the round-trip lock held, so every later spawn returned
   ETIMEDOUT and stop() blocked for ever). */
static int cancel_scenario(int pending, int fd)
{
    if (forksafe_zygote_start() != 0)
        return 10;
    pid_t z = forksafe_zygote_pid();
    kill(z, SIGSTOP);
    wait_stopped(z);
    struct cancel_spawn c;
    memset(&c, 0, sizeof c);
    pthread_t t;
    if (pthread_create(&t, NULL, cancel_spawn_main, &c) != 0)
        return 11;
    while (!c.ready)
        usleep(1000);
    if (pending) {
        pthread_cancel(t);
        c.go = 1;
    } else {
        c.go = 1;
        usleep(300000); /* now blocked in the round trip */
        pthread_cancel(t);
    }
    int joined = join_within(t, TIMEOUT_MS + 1000);
    kill(z, SIGCONT);
    if (!joined) {
        dprintf(fd, "the cancelled spawn did not end\n");
        return 12;
    }
    if (!c.returned) {
        dprintf(fd, "cancelled inside forksafe_zygote_spawn\n");
    } else if (c.r != ETIMEDOUT) {
        dprintf(fd, "the cancelled spawn returned %d\n", c.r);
        return 13;
    }
    pid_t w = -1;
    int r = forksafe_zygote_spawn("seven", NULL, 0, NULL, 0, &w);
    if (r != 0) {
        dprintf(fd, "the next spawn returned %d (%s)\n", r, strerror(r));
    } else {
        int code;
        if (fs_wait(w, 5000, &code) != FS_EXITED || code != ENTRY_STATUS)
            return 14;
    }
    struct stop_call sc = {-1, 0};
    pthread_t st;
    if (pthread_create(&st, NULL, stop_main, &sc) != 0)
        return 15;
    if (!join_within(st, 3 * TIMEOUT_MS)) {
        dprintf(fd, "stop() blocked for %d ms and more\n", 3 * TIMEOUT_MS);
        return 16;
    }
    if (!c.returned || r != 0)
        return 17;
    if (sc.r != 0 || sc.took_ms > 2 * TIMEOUT_MS + 500)
        return 18;
    return 0;
}

static void zygote_spawn_cancelled_while_waiting(void **state)
{
    (void)state;
    fs_assert_scenario(cancel_scenario, 0);
}

static void zygote_spawn_cancel_pending_on_entry(void **state)
{
    (void)state;
    fs_assert_scenario(cancel_scenario, 1);
}

/* forksafe_zygote_pid() is not a cancellation point either: it looks at
   the server's pidfd with poll() while it holds the client lock, which is
   registered with the core. A thread cancelled there (a cancellation
   pending on entry) would leave that lock held: every later call of the
   fork server would wait, and every fork() by the program would wait for
   it until its timeout and fail. */
struct cancel_pid {
    volatile int ready, go, returned;
    pid_t pid;
};

static void *cancel_pid_main(void *arg)
{
    struct cancel_pid *c = arg;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    c->ready = 1;
    while (!c->go)
        usleep(1000);
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    c->pid = forksafe_zygote_pid();
    c->returned = 1;
    pthread_testcancel();
    return NULL;
}

static void *pid_main(void *arg)
{
    *(pid_t *)arg = forksafe_zygote_pid();
    return NULL;
}

static int cancel_pid_scenario(int unused, int fd)
{
    (void)unused;
    if (forksafe_zygote_start() != 0)
        return 10;
    pid_t z = forksafe_zygote_pid();
    struct cancel_pid c;
    memset(&c, 0, sizeof c);
    pthread_t t;
    if (pthread_create(&t, NULL, cancel_pid_main, &c) != 0)
        return 11;
    while (!c.ready)
        usleep(1000);
    pthread_cancel(t);
    c.go = 1;
    pthread_join(t, NULL);
    if (!c.returned)
        dprintf(fd, "cancelled inside forksafe_zygote_pid\n");
    else if (c.pid != z)
        return 12;
    pid_t again = -1;
    pthread_t p;
    if (pthread_create(&p, NULL, pid_main, &again) != 0)
        return 13;
    if (!join_within(p, 1000)) {
        dprintf(fd, "forksafe_zygote_pid() blocked after the cancellation\n");
        return 14;
    }
    uint64_t t0 = fs_now_ms();
    pid_t k = fork();
    if (k == 0)
        _exit(0);
    uint64_t took = fs_now_ms() - t0;
    if (k < 0) {
        dprintf(fd, "fork() failed after %llu ms\n", (unsigned long long)took);
        return 15;
    }
    int code;
    if (fs_wait(k, 5000, &code) != FS_EXITED || code != 0)
        return 16;
    if (!c.returned || again != z || took > TIMEOUT_MS / 2)
        return 17;
    return forksafe_zygote_stop() == 0 ? 0 : 18;
}

static void zygote_pid_cancel_pending_on_entry(void **state)
{
    (void)state;
    fs_assert_scenario(cancel_pid_scenario, 0);
}

/* ------------------------------------------------- server killed */

#define KILL_ROUNDS  60
#define MAX_REPORTED 20000

static pid_t reported[MAX_REPORTED];
static int n_reported;
static pthread_mutex_t reported_mu = PTHREAD_MUTEX_INITIALIZER;

static void *spin_main(void *arg)
{
    (void)arg;
    for (;;) {
        pid_t w = -1;
        int r = forksafe_zygote_spawn("seven", NULL, 0, NULL, 0, &w);
        if (r == 0) {
            pthread_mutex_lock(&reported_mu);
            if (n_reported < MAX_REPORTED)
                reported[n_reported++] = w;
            pthread_mutex_unlock(&reported_mu);
        } else if (r != EAGAIN) {
            return NULL; /* ECHILD: the server is gone */
        }
    }
}

static int was_reported(pid_t w)
{
    for (int i = 0; i < n_reported; i++)
        if (reported[i] == w)
            return 1;
    return 0;
}

/* The server is killed (SIGKILL, as the OOM killer or an operator would)
   while two threads spawn as fast as they can. Every worker that ran the
   entry point must have been reported to the spawn that asked for it: a
   spawn that fails with ECHILD made no worker that runs the program's
   code. A worker the dead server had already created, but not yet
   reported, may exist; it must die without running the entry point
   (adversary: in 88 of 300 runs a worker whose spawn had returned ECHILD
   ran the entry point to its end, unknown to the program). */
static int killed_scenario(int unused, int fd)
{
    (void)unused;
    srand((unsigned)getpid());
    int ran_unreported = 0, died_unreported = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        n_reported = 0;
        if (forksafe_zygote_start() != 0)
            return 10;
        pid_t z = forksafe_zygote_pid();
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            if (pthread_create(&t[i], NULL, spin_main, NULL) != 0)
                return 11;
        usleep((useconds_t)(rand() % 20000));
        kill(z, SIGKILL);
        for (int i = 0; i < 2; i++)
            if (!join_within(t[i], 2 * TIMEOUT_MS)) {
                dprintf(fd, "a spawn did not end after the server died\n");
                return 12;
            }
        forksafe_zygote_stop(); /* ECHILD if a spawn found it dead */
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, 0)) > 0) {
            if (w == z) {
                dprintf(fd, "the server was left for the program to reap\n");
                return 13;
            }
            if (was_reported(w))
                continue;
            if (WIFEXITED(st) && WEXITSTATUS(st) == ENTRY_STATUS)
                ran_unreported++;
            else
                died_unreported++;
        }
    }
    dprintf(fd,
            "%d rounds: %d unreported workers ran the entry point, %d "
            "died before it\n",
            KILL_ROUNDS, ran_unreported, died_unreported);
    return ran_unreported == 0 ? 0 : 20;
}

static void zygote_server_killed_mid_request(void **state)
{
    (void)state;
    char out[512];
    int code = fs_run_scenario(killed_scenario, 0, out, sizeof out);
    fprintf(stderr, "%s", out);
    assert_int_equal(code, 0);
}

/* ------------------------------------------------- frozen server */

#define FREEZER "/sys/fs/cgroup/freezer"

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int bad = fputs(text, f) < 0;
    return (fclose(f) != 0 || bad) ? -1 : 0;
}

/* The server is frozen by a cgroup v1 freezer (a container runtime's
   pause, a supervisor's freeze), where a SIGKILL takes effect only once
   the group is thawed. forksafe_zygote_stop() must still return within
   its bound (twice the timeout, plus 50 ms) and a later call must reap
   the server once it can die (adversary: stop() waited in waitid() until
   the group was thawed: 10 s in a probe, for ever if it never is). */
static int frozen_scenario(int unused, int fd)
{
    (void)unused;
    char dir[128], procs[160], state[160], pidtext[32];
    snprintf(dir, sizeof dir, FREEZER "/forksafe-test-%d", (int)getpid());
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    snprintf(state, sizeof state, "%s/freezer.state", dir);
    if (access(FREEZER, W_OK) != 0 || mkdir(dir, 0755) != 0)
        return 77;
    int code = 0;
    if (forksafe_zygote_start() != 0) {
        code = 10;
        goto out;
    }
    pid_t z = forksafe_zygote_pid();
    snprintf(pidtext, sizeof pidtext, "%d", (int)z);
    if (write_file(procs, pidtext) != 0 || write_file(state, "FROZEN") != 0) {
        forksafe_zygote_stop();
        code = 77;
        goto out;
    }
    struct stop_call sc = {-1, 0};
    pthread_t st;
    if (pthread_create(&st, NULL, stop_main, &sc) != 0) {
        code = 11;
        goto out;
    }
    int joined = join_within(st, 2 * TIMEOUT_MS + 1000);
    write_file(state, "THAWED");
    if (!joined) {
        pthread_join(st, NULL);
        dprintf(fd, "stop() of a frozen server took %llu ms\n",
                (unsigned long long)sc.took_ms);
        code = 12;
        goto out;
    }
    if (sc.r != 0 || sc.took_ms > 2 * TIMEOUT_MS + 500) {
        code = 13;
        goto out;
    }
    /* Thawed, the server dies of the pending SIGKILL; the next call of
       the fork server reaps it. */
    usleep(200000);
    if (forksafe_zygote_start() != 0) {
        code = 14;
        goto out;
    }
    pid_t w = -1;
    if (forksafe_zygote_spawn("seven", NULL, 0, NULL, 0, &w) != 0) {
        code = 15;
        goto out;
    }
    int wc;
    if (fs_wait(w, 5000, &wc) != FS_EXITED || wc != ENTRY_STATUS) {
        code = 16;
        goto out;
    }
    if (forksafe_zygote_stop() != 0) {
        code = 17;
        goto out;
    }
    if (waitpid(z, NULL, WNOHANG) != -1 || errno != ECHILD) {
        dprintf(fd, "the frozen server was not reaped after its thaw\n");
        code = 18;
    }
out:
    write_file(state, "THAWED");
    rmdir(dir);
    return code;
}

static void zygote_stop_frozen_server(void **state)
{
    (void)state;
    fs_assert_scenario(frozen_scenario, 0);
}

/* A late worker (made after its spawn returned ETIMEDOUT) that is frozen
   when the next round trip kills it: the SIGKILL takes effect only at the
   thaw, so it cannot be reaped then; the library must still reap it once
   it has died, as docs/zygote.md promises ("kills that worker and reaps
   it"), and not leave a zombie for the program (adversary: the pidfd was
   closed after 50 ms and the worker stayed a zombie). */
static pid_t other_child(pid_t self, pid_t not_this)
{
    char path[96], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)self,
             (int)self);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *p = buf; *p != '\0';) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            break;
        if (v > 0 && v != not_this)
            return (pid_t)v;
        p = end;
    }
    return -1;
}

static int frozen_late_scenario(int unused, int fd)
{
    (void)unused;
    char dir[128], procs[160], state[160], pidtext[32];
    snprintf(dir, sizeof dir, FREEZER "/forksafe-test-%d", (int)getpid());
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    snprintf(state, sizeof state, "%s/freezer.state", dir);
    if (access(FREEZER, W_OK) != 0 || access("/proc/self/task/", F_OK) != 0 ||
        mkdir(dir, 0755) != 0)
        return 77;
    int code = 0;
    census_client = getpid();
    slow_census_ms = TIMEOUT_MS + 500;
    int r = forksafe_zygote_start();
    slow_census_ms = 0;
    if (r != 0) {
        code = 10;
        goto out;
    }
    pid_t z = forksafe_zygote_pid();
    pid_t w = -1;
    r = forksafe_zygote_spawn("forever", NULL, 0, NULL, 0, &w);
    if (r != ETIMEDOUT) {
        dprintf(fd, "the slow spawn returned %d\n", r);
        code = 11;
        goto out;
    }
    pid_t late = -1;
    for (int i = 0; i < 200 && late < 0; i++) {
        usleep(10000);
        late = other_child(getpid(), z);
    }
    if (late < 0) {
        code = 12;
        goto out;
    }
    snprintf(pidtext, sizeof pidtext, "%d", (int)late);
    if (write_file(procs, pidtext) != 0 || write_file(state, "FROZEN") != 0) {
        code = 77;
        goto out;
    }
    usleep(100000);
    /* This round trip reads the late reply and kills the late worker. */
    r = forksafe_zygote_spawn("seven", NULL, 0, NULL, 0, &w);
    if (r == 0) {
        int wc;
        if (fs_wait(w, 5000, &wc) != FS_EXITED || wc != ENTRY_STATUS) {
            code = 13;
            goto out;
        }
    } else if (r != ETIMEDOUT) {
        code = 14;
        goto out;
    }
    write_file(state, "THAWED");
    usleep(200000); /* it dies of the pending SIGKILL */
    (void)forksafe_zygote_spawn("nope", NULL, 0, NULL, 0, &w); /* ENOENT */
    if (forksafe_zygote_stop() != 0) {
        code = 15;
        goto out;
    }
    errno = 0;
    if (waitpid(late, NULL, WNOHANG) != -1 || errno != ECHILD) {
        dprintf(fd, "the late worker was left a zombie\n");
        code = 16;
    }
out:
    write_file(state, "THAWED");
    rmdir(dir);
    return code;
}

static void zygote_frozen_late_worker_is_reaped(void **state)
{
    (void)state;
    fs_assert_scenario(frozen_late_scenario, 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (getenv("FORKSAFE_TIMEOUT_MS") == NULL) {
        /* Read by the library when it is loaded: set it, then start
           again. */
        setenv("FORKSAFE_TIMEOUT_MS", "1500", 1);
        execv("/proc/self/exe", argv);
        perror("test-zygote-hostile: execv");
        return 1;
    }
    fs_watchdog(180);
    if (forksafe_zygote_register("seven", e_seven) != 0 ||
        forksafe_zygote_register("forever", e_forever) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zygote_spawn_cancelled_while_waiting),
        cmocka_unit_test(zygote_spawn_cancel_pending_on_entry),
        cmocka_unit_test(zygote_pid_cancel_pending_on_entry),
        cmocka_unit_test(zygote_server_killed_mid_request),
        cmocka_unit_test(zygote_stop_frozen_server),
        cmocka_unit_test(zygote_frozen_late_worker_is_reaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
