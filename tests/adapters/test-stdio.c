/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-stdio.c: the stdio adapter against glibc's real
 * stdio. Each scenario runs in its own process (forked from this
 * single-threaded test program) so that the same scenario can run with
 * the adapter installed and without it; the scenario writes into a pipe
 * that this process reads and checks.
 */
#include "common.h"

#include "adapter-test.h"

#include <forksafe/stdio.h>

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum mode { WITHOUT, WITH, UNINSTALLED };

/* A scenario's failure to run (as opposed to the outcome it writes). */
#define FAIL(code)                                                             \
    do {                                                                       \
        fprintf(stderr, "%s:%d: scenario step failed\n", __FILE__, __LINE__);  \
        return (code);                                                         \
    } while (0)

static int set_mode(enum mode m)
{
    if (m == WITHOUT)
        return 0;
    if (forksafe_stdio_install() != 0)
        return -1;
    if (m == UNINSTALLED && forksafe_stdio_uninstall() != 0)
        return -1;
    return 0;
}

struct output {
    char *buf;
    size_t len;
};

static int run_scenario(int (*fn)(int, int), enum mode m, struct output *out)
{
    return fs_run_scenario_alloc(fn, m, &out->buf, &out->len);
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *s = strstr(hay, needle); s; s = strstr(s + 1, needle))
        n++;
    return n;
}

/* ---------------------------------------------------------------------- */

/* Text printed to stdout without a newline, then fork(): the child writes
   its copy of the buffer when it flushes, so without the adapter the text
   arrives twice. */
static int partial_scenario(int m, int fd)
{
    if (dup2(fd, STDOUT_FILENO) < 0)
        FAIL(2);
    fs_idle_start();
    if (set_mode(m) != 0)
        FAIL(3);
    fputs("<partial-no-newline>", stdout);
    pid_t pid = fork();
    if (pid < 0)
        FAIL(4);
    if (pid == 0) {
        fputs("<child>", stdout);
        fflush(stdout);
        _exit(0);
    }
    int code;
    if (fs_wait(pid, 5000, &code) != FS_EXITED || code != 0)
        FAIL(5);
    fputs("<parent>", stdout);
    fflush(stdout);
    return 0;
}

static void test_stdio_partial_text_once(void **state)
{
    (void)state;
    struct output out;
    assert_int_equal(run_scenario(partial_scenario, WITH, &out), 0);
    assert_int_equal(count(out.buf, "<partial-no-newline>"), 1);
    assert_int_equal(count(out.buf, "<child>"), 1);
    assert_int_equal(count(out.buf, "<parent>"), 1);
    free(out.buf);
}

static void test_stdio_partial_text_twice_without(void **state)
{
    (void)state;
    struct output out;
    /* Not installed, and installed then uninstalled: both duplicate. */
    assert_int_equal(run_scenario(partial_scenario, WITHOUT, &out), 0);
    assert_int_equal(count(out.buf, "<partial-no-newline>"), 2);
    free(out.buf);
    assert_int_equal(run_scenario(partial_scenario, UNINSTALLED, &out), 0);
    assert_int_equal(count(out.buf, "<partial-no-newline>"), 2);
    free(out.buf);
}

/* ---------------------------------------------------------------------- */

#define N_FORKS 200
#define PAYLOAD "abcdefghijklmnopqrstuvwxyz0123456789"

static FILE *s_lines;
static atomic_ulong s_progress;
static atomic_bool s_stop;

/* Writes numbered records as three stdio calls under flockfile(), the way
   a logger writes a prefix, a message and a terminator as one record. */
static void *printer(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; !atomic_load(&s_stop); i++) {
        flockfile(s_lines);
        fprintf(s_lines, "P%07lu ", i);
        fputs(PAYLOAD, s_lines);
        fputs(" end\n", s_lines);
        funlockfile(s_lines);
        atomic_store(&s_progress, i + 1);
    }
    return NULL;
}

static int lines_scenario(int m, int fd)
{
    s_lines = fdopen(fd, "w");
    if (s_lines == NULL)
        FAIL(2);
    /* Line buffered: each whole record leaves in one write(). */
    setvbuf(s_lines, NULL, _IOLBF, BUFSIZ);
    if (set_mode(m) != 0)
        FAIL(3);
    if (m != WITHOUT && forksafe_stdio_track(s_lines) != 0)
        FAIL(3);
    pthread_t t;
    if (pthread_create(&t, NULL, printer, NULL) != 0)
        FAIL(4);
    for (int k = 0; k < N_FORKS; k++) {
        /* Fork only while the printer is making progress. */
        unsigned long seen = atomic_load(&s_progress);
        while (atomic_load(&s_progress) == seen)
            sched_yield();
        pid_t pid = forksafe_fork(NULL);
        if (pid < 0)
            FAIL(5);
        if (pid == 0) {
            fprintf(s_lines, "C%03d end\n", k);
            fflush(s_lines);
            _exit(0);
        }
        int code;
        if (fs_wait(pid, 5000, &code) != FS_EXITED || code != 0)
            FAIL(6);
    }
    atomic_store(&s_stop, true);
    pthread_join(t, NULL);
    fflush(s_lines);
    return 0;
}

struct line_stats {
    unsigned long records; /* parent records seen */
    unsigned long max_seq; /* highest parent record number + 1 */
    unsigned long bad;     /* lines that are no whole record */
    unsigned long dup;     /* records seen more than once */
    unsigned children[N_FORKS];
};

static void analyse(char *text, struct line_stats *st, unsigned char *seen,
                    size_t seen_cap)
{
    memset(st, 0, sizeof *st);
    char *save = NULL;
    for (char *l = strtok_r(text, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        unsigned long seq;
        int k, used = -1;
        if (sscanf(l, "P%7lu " PAYLOAD " end%n", &seq, &used) == 1 &&
            used == (int)strlen(l) && strlen(l) == 1 + 7 + 1 + 36 + 4) {
            if (seq < seen_cap && seen[seq]++)
                st->dup++;
            if (seq >= seen_cap)
                st->bad++;
            st->records++;
            if (seq + 1 > st->max_seq)
                st->max_seq = seq + 1;
        } else if (sscanf(l, "C%3d end%n", &k, &used) == 1 &&
                   used == (int)strlen(l) && k >= 0 && k < N_FORKS) {
            if (st->children[k]++)
                st->dup++;
        } else {
            st->bad++;
        }
    }
}

static void test_stdio_lines_whole_during_forks(void **state)
{
    (void)state;
    struct output out;
    assert_int_equal(run_scenario(lines_scenario, WITH, &out), 0);
    size_t cap = out.len; /* more records than bytes is impossible */
    unsigned char *seen = calloc(cap + 1, 1);
    assert_non_null(seen);
    struct line_stats st;
    analyse(out.buf, &st, seen, cap + 1);
    assert_int_equal(st.bad, 0);
    assert_int_equal(st.dup, 0);
    /* Every record of the parent arrived, once, in one piece. */
    assert_true(st.records > 0);
    assert_int_equal(st.records, st.max_seq);
    for (int k = 0; k < N_FORKS; k++)
        assert_int_equal(st.children[k], 1);
    free(seen);
    free(out.buf);
}

static void test_stdio_lines_torn_without(void **state)
{
    (void)state;
    struct output out;
#ifndef __GLIBC__
    /* musl does not reset stream locks in the child: without the adapter
       a child forked while the printer holds the stream hangs on it. */
    assert_int_equal(run_scenario(lines_scenario, WITHOUT, &out), 6);
    free(out.buf);
    return;
#endif
    assert_int_equal(run_scenario(lines_scenario, WITHOUT, &out), 0);
    size_t cap = out.len;
    unsigned char *seen = calloc(cap + 1, 1);
    assert_non_null(seen);
    struct line_stats st;
    analyse(out.buf, &st, seen, cap + 1);
    /* Children inherit half-written records (torn lines) or whole records
       still in the buffer (duplicates). Over 200 forks while the printer
       runs, at least one of them happens. */
    assert_true(st.bad + st.dup > 0);
    free(seen);
    free(out.buf);
}

/* ---------------------------------------------------------------------- */

static FILE *s_probe_fp;

static void *probe_locks(void *arg)
{
    (void)arg;
    int ok = ftrylockfile(stdout) == 0;
    if (ok)
        funlockfile(stdout);
    if (ok && s_probe_fp != NULL) {
        ok = ftrylockfile(s_probe_fp) == 0;
        if (ok)
            funlockfile(s_probe_fp);
    }
    return ok ? (void *)1 : NULL;
}

/* In the child, a new thread must be able to lock the streams the adapter
   locked in prepare: glibc resets them after a multi-threaded fork, and
   after a single-threaded fork (where glibc does not) the adapter must
   not have locked them. This guards the adapter's own hazard; without the
   adapter nothing is locked, so it passes there too. */
static int locks_scenario(int m, int fd)
{
    bool threaded = m == WITH;
    if (threaded)
        fs_idle_start();
    else if (forksafe_thread_count() != 1)
        FAIL(7); /* the premise of the single-threaded case */
    if (forksafe_stdio_install() != 0)
        FAIL(3);
    s_probe_fp = fdopen(fd, "w");
    if (s_probe_fp == NULL || forksafe_stdio_track(s_probe_fp) != 0)
        FAIL(3);
    for (int i = 0; i < 2; i++) {
        pid_t pid = i == 0 ? fork() : forksafe_fork(NULL);
        if (pid < 0)
            FAIL(4);
        if (pid == 0) {
            pthread_t t;
            void *ok = NULL;
            if (pthread_create(&t, NULL, probe_locks, NULL) != 0)
                _exit(2);
            pthread_join(t, &ok);
            _exit(ok ? 0 : 1);
        }
        int code;
        /* Generous: a thread's first start under ASan on a loaded 2-core
           machine has been seen to take seconds. A hang still fails. */
        if (fs_wait(pid, 20000, &code) != FS_EXITED)
            FAIL(5);
        if (code != 0)
            return 10 + code;
    }
    /* And the parent's streams are free again. */
    pthread_t t;
    void *ok = NULL;
    if (pthread_create(&t, NULL, probe_locks, NULL) != 0)
        FAIL(6);
    pthread_join(t, &ok);
    return ok ? 0 : 20;
}

static void test_stdio_child_streams_unlocked(void **state)
{
    (void)state;
    struct output out;
    /* WITH: multi-threaded parent; WITHOUT: single-threaded parent (the
       adapter is installed in both). */
    assert_int_equal(run_scenario(locks_scenario, WITH, &out), 0);
    free(out.buf);
    assert_int_equal(run_scenario(locks_scenario, WITHOUT, &out), 0);
    free(out.buf);
}

/* ---------------------------------------------------------------------- */

static FILE *s_held_fp;
static atomic_int s_held;

static void *hold_stream(void *arg)
{
    (void)arg;
    flockfile(s_held_fp);
    atomic_store(&s_held, 1);
    struct timespec d = {0, 600 * 1000 * 1000};
    nanosleep(&d, NULL);
    funlockfile(s_held_fp);
    return NULL;
}

/* A thread sits on a tracked stream's lock: forksafe_fork() with a short
   timeout fails with ETIMEDOUT instead of waiting, and leaves nothing
   locked (a later fork succeeds once the thread lets go). */
static int deadline_scenario(int m, int fd)
{
    (void)m;
    s_held_fp = fdopen(fd, "w");
    if (s_held_fp == NULL || forksafe_stdio_track(s_held_fp) != 0)
        FAIL(3);
    pthread_t t;
    if (pthread_create(&t, NULL, hold_stream, NULL) != 0)
        FAIL(4);
    while (!atomic_load(&s_held))
        sched_yield();
    struct forksafe_fork_opts o = {.timeout_ms = 100};
    uint64_t t0 = fs_now_ms();
    errno = 0;
    pid_t pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(0);
    uint64_t took = fs_now_ms() - t0;
    int err = errno;
    pthread_join(t, NULL);
    if (pid > 0) {
        int code;
        fs_wait(pid, 5000, &code);
        return 11;
    }
    if (err != ETIMEDOUT)
        return 12;
    if (took > 500)
        return 13;
    /* Nothing stayed locked: this thread can lock the stream, and a new
       fork goes through. */
    if (ftrylockfile(s_held_fp) != 0)
        return 14;
    funlockfile(s_held_fp);
    pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(0);
    int code;
    if (pid < 0 || fs_wait(pid, 5000, &code) != FS_EXITED || code != 0)
        return 15;
    return 0;
}

static void test_stdio_deadline_on_held_stream(void **state)
{
    (void)state;
    struct output out;
    assert_int_equal(run_scenario(deadline_scenario, WITH, &out), 0);
    free(out.buf);
}

/* ---------------------------------------------------------------------- */

static int api_scenario(int m, int fd)
{
    (void)m;
    FILE *fp = fdopen(fd, "w");
    if (fp == NULL)
        FAIL(2);
    if (forksafe_adapter_installed("stdio") != 0)
        return 10;
    if (forksafe_stdio_uninstall() != ENOENT)
        return 11;
    if (forksafe_stdio_install() != 0 || forksafe_stdio_install() != 0)
        return 12;
    if (forksafe_adapter_installed("stdio") != 1)
        return 13;
    if (forksafe_stdio_track(NULL) != EINVAL ||
        forksafe_stdio_track(stdout) != EEXIST ||
        forksafe_stdio_track(stderr) != EEXIST)
        return 14;
    if (forksafe_stdio_track(fp) != 0 || forksafe_stdio_track(fp) != EEXIST)
        return 15;
    if (forksafe_stdio_untrack(NULL) != EINVAL ||
        forksafe_stdio_untrack(fp) != 0 || forksafe_stdio_untrack(fp) != ENOENT)
        return 16;
    if (forksafe_stdio_uninstall() != 0 || forksafe_stdio_uninstall() != ENOENT)
        return 17;
    /* The audit report names the adapter. */
    int p[2];
    if (pipe(p) != 0 || forksafe_audit_write(p[1], 0) != 0)
        return 18;
    close(p[1]);
    char buf[16384];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    if (n <= 0)
        return 19;
    buf[n] = '\0';
    /* The install contract every adapter shares: nothing is tracked any
       more. */
    int shape = fs_adapter_shape(forksafe_stdio_install,
                                 forksafe_stdio_uninstall, "stdio", "stdio",
                                 FORKSAFE_STDIO_RANK);
    if (shape != 0)
        return 40 + shape;
    return strstr(buf, "stdio") ? 0 : 20;
}

static void test_stdio_install_api(void **state)
{
    (void)state;
    struct output out;
    assert_int_equal(run_scenario(api_scenario, WITH, &out), 0);
    free(out.buf);
}

int main(void)
{
    fs_watchdog(120);
    fs_adapter_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stdio_install_api),
        cmocka_unit_test(test_stdio_partial_text_once),
        cmocka_unit_test(test_stdio_partial_text_twice_without),
        cmocka_unit_test(test_stdio_lines_whole_during_forks),
        cmocka_unit_test(test_stdio_lines_torn_without),
        cmocka_unit_test(test_stdio_child_streams_unlocked),
        cmocka_unit_test(test_stdio_deadline_on_held_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
