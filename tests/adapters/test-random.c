/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-random.c: the PRNG-state adapter against glibc's
 * random(), rand() and drand48(). Each scenario runs in its own process
 * (forked from this single-threaded test program), with another thread
 * alive, so the same scenario can run with and without the adapter; it
 * prints its findings into a pipe that this process checks.
 */
#include "common.h"

#include "adapter-test.h"

#include <forksafe/random.h>

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

#define FAIL(code)                                                             \
    do {                                                                       \
        fprintf(stderr, "%s:%d: scenario step failed\n", __FILE__, __LINE__);  \
        return (code);                                                         \
    } while (0)

static int set_mode(enum mode m)
{
    if (m == WITHOUT)
        return 0;
    if (forksafe_random_install() != 0)
        return -1;
    if (m == UNINSTALLED && forksafe_random_uninstall() != 0)
        return -1;
    return 0;
}

static size_t distinct(const long *v, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < i && v[j] != v[i])
            j++;
        d += j == i;
    }
    return d;
}

/* ---------------------------------------------------------------------- */

#define N_CHILDREN 16

/* 16 children each report their next random(), rand() and lrand48(); the
   parent then reports its own next random(). The parent seeds with a
   constant, as programs that want reproducible runs do. */
static int children_scenario(int m, int fd)
{
    fs_idle_start();
    if (set_mode(m) != 0)
        FAIL(3);
    srandom(4242);
    srand48(4242);
    long got[3][N_CHILDREN];
    for (int k = 0; k < N_CHILDREN; k++) {
        int p[2];
        if (pipe(p) != 0)
            FAIL(4);
        pid_t pid = fork();
        if (pid < 0)
            FAIL(4);
        if (pid == 0) {
            long v[3] = {random(), rand(), lrand48()};
            _exit(write(p[1], v, sizeof v) == (ssize_t)sizeof v ? 0 : 1);
        }
        close(p[1]);
        long v[3];
        ssize_t r = read(p[0], v, sizeof v);
        close(p[0]);
        int code;
        if (fs_wait(pid, 5000, &code) != FS_EXITED || code != 0 ||
            r != (ssize_t)sizeof v)
            FAIL(5);
        for (int i = 0; i < 3; i++)
            got[i][k] = v[i];
    }
    long parent_next = random();
    int parent_seen = 0;
    for (int k = 0; k < N_CHILDREN; k++)
        parent_seen += got[0][k] == parent_next;
    dprintf(fd, "random=%zu rand=%zu lrand48=%zu parent_seen=%d\n",
            distinct(got[0], N_CHILDREN), distinct(got[1], N_CHILDREN),
            distinct(got[2], N_CHILDREN), parent_seen);
    return 0;
}

struct children_result {
    unsigned random, rand, lrand48;
    int parent_seen;
};

static void children_result(enum mode m, struct children_result *res)
{
    char out[256];
    assert_int_equal(fs_run_scenario(children_scenario, m, out, sizeof out), 0);
    assert_int_equal(sscanf(out, "random=%u rand=%u lrand48=%u parent_seen=%d",
                            &res->random, &res->rand, &res->lrand48,
                            &res->parent_seen),
                     4);
}

static void test_random_children_distinct(void **state)
{
    (void)state;
    struct children_result r;
    children_result(WITH, &r);
    assert_int_equal(r.random, N_CHILDREN);
    assert_int_equal(r.rand, N_CHILDREN);
    assert_int_equal(r.lrand48, N_CHILDREN);
    assert_int_equal(r.parent_seen, 0);
}

static void test_random_children_equal_without(void **state)
{
    (void)state;
    struct children_result r;
    /* Every child continues the parent's sequence: one value, 16 times,
       and it is also the parent's own next value. */
    children_result(WITHOUT, &r);
    assert_int_equal(r.random, 1);
    assert_int_equal(r.rand, 1);
    assert_int_equal(r.lrand48, 1);
    assert_int_equal(r.parent_seen, N_CHILDREN);
    children_result(UNINSTALLED, &r);
    assert_int_equal(r.random, 1);
    assert_int_equal(r.lrand48, 1);
}

/* ---------------------------------------------------------------------- */

/* The parent's own seeded sequence is the same with forks in between as
   without them: the adapter gives its state back after every fork. (This
   holds without the adapter too; it fails if the adapter loses the
   parent's state.) */
static int sequence_scenario(int m, int fd)
{
    fs_idle_start();
    if (set_mode(m) != 0)
        FAIL(3);
    long want[20], got[20];
    srandom(77);
    for (int i = 0; i < 20; i++)
        want[i] = random();
    srandom(77);
    for (int i = 0; i < 20; i++) {
        pid_t pid = i % 2 ? forksafe_fork(NULL) : fork();
        if (pid < 0)
            FAIL(4);
        if (pid == 0)
            _exit(0);
        int code;
        if (fs_wait(pid, 5000, &code) != FS_EXITED || code != 0)
            FAIL(5);
        got[i] = random();
    }
    dprintf(fd, "same=%d\n", memcmp(want, got, sizeof want) == 0);
    return 0;
}

static void test_random_parent_sequence_kept(void **state)
{
    (void)state;
    fs_expect_scenario(sequence_scenario, WITH, "same=1\n");
}

/* ---------------------------------------------------------------------- */

static atomic_bool s_stop;
static atomic_ulong s_draws;

static void *drawer(void *arg)
{
    (void)arg;
    while (!atomic_load(&s_stop)) {
        (void)random();
        atomic_fetch_add(&s_draws, 1);
    }
    return NULL;
}

/* A thread draws from random() without pause while the main thread forks
   100 times; every child must exit promptly. Guards the adapter's own
   hazard: reseeding with srandom() in the child would take glibc's random
   lock, which the drawing thread often holds at the fork, and hang the
   child. Passes without the adapter too (the children do not draw). */
static int hammer_scenario(int m, int fd)
{
    if (set_mode(m) != 0)
        FAIL(3);
    pthread_t t;
    if (pthread_create(&t, NULL, drawer, NULL) != 0)
        FAIL(4);
    int hung = 0;
    for (int k = 0; k < 100; k++) {
        unsigned long seen = atomic_load(&s_draws);
        while (atomic_load(&s_draws) == seen)
            sched_yield();
        pid_t pid = fork();
        if (pid < 0)
            FAIL(5);
        if (pid == 0)
            _exit(7);
        int code;
        if (fs_wait(pid, 3000, &code) != FS_EXITED || code != 7) {
            hung++;
            break; /* one is proof enough; don't wait out 100 */
        }
    }
    atomic_store(&s_stop, true);
    pthread_join(t, NULL);
    dprintf(fd, "hung=%d\n", hung);
    return 0;
}

static void test_random_no_hang_while_drawing(void **state)
{
    (void)state;
    fs_expect_scenario(hammer_scenario, WITH, "hung=0\n");
}

/* ---------------------------------------------------------------------- */

static int api_scenario(int m, int fd)
{
    (void)m;
    (void)fd;
    if (forksafe_adapter_installed("random") != 0)
        return 10;
    if (forksafe_random_uninstall() != ENOENT)
        return 11;
    if (forksafe_random_install() != 0 || forksafe_random_install() != 0)
        return 12;
    if (forksafe_adapter_installed("random") != 1)
        return 13;
    int p[2];
    if (pipe(p) != 0 || forksafe_audit_write(p[1], 0) != 0)
        return 14;
    close(p[1]);
    char buf[16384];
    ssize_t n = read(p[0], buf, sizeof buf - 1);
    if (n <= 0)
        return 15;
    buf[n] = '\0';
    if (!strstr(buf, "random"))
        return 16;
    if (forksafe_random_uninstall() != 0 ||
        forksafe_random_uninstall() != ENOENT)
        return 17;
    /* The install contract every adapter shares: nothing is tracked any
       more. */
    int shape =
        fs_adapter_shape(forksafe_random_install, forksafe_random_uninstall,
                         "random", "random", FORKSAFE_RANDOM_RANK);
    if (shape != 0)
        return 40 + shape;
    return 0;
}

static void test_random_install_api(void **state)
{
    (void)state;
    fs_assert_scenario(api_scenario, WITH);
}

int main(void)
{
    fs_watchdog(120);
    fs_adapter_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_install_api),
        cmocka_unit_test(test_random_children_distinct),
        cmocka_unit_test(test_random_children_equal_without),
        cmocka_unit_test(test_random_parent_sequence_kept),
        cmocka_unit_test(test_random_no_hang_while_drawing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
