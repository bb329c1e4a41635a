/* SPDX-License-Identifier: MIT */
/*
 * test-locks.c: every lock kind is usable and keeps its type after fork(),
 * in the child and in the parent, with another thread alive; a lock the
 * forking thread held stays held by it, at the same recursion depth. Each
 * case runs under plain fork() and under forksafe_fork().
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

enum { NORMAL, ERRORCHECK, RECURSIVE, ADAPTIVE };

struct mcase {
    const char *name;
    int type;
    int robust;
    int pi;
};

static const struct mcase mcases[] = {
    {"normal", NORMAL, 0, 0},
    {"errorcheck", ERRORCHECK, 0, 0},
    {"recursive", RECURSIVE, 0, 0},
    {"adaptive", ADAPTIVE, 0, 0},
    {"robust-normal", NORMAL, 1, 0},
    {"robust-errorcheck", ERRORCHECK, 1, 0},
    {"robust-recursive", RECURSIVE, 1, 0},
    {"pi-errorcheck", ERRORCHECK, 0, 1},
    {"pi-recursive", RECURSIVE, 0, 1},
};

static void init_mutex(pthread_mutex_t *m, const struct mcase *c)
{
    static const int types[] = {PTHREAD_MUTEX_NORMAL, PTHREAD_MUTEX_ERRORCHECK,
                                PTHREAD_MUTEX_RECURSIVE,
                                PTHREAD_MUTEX_ADAPTIVE_NP};
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, types[c->type]);
    if (c->robust)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (c->pi)
        pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static void *lock_and_die(void *arg)
{
    pthread_mutex_lock(arg);
    return NULL; /* exits holding it: a robust mutex becomes EOWNERDEAD */
}

/* Check that m behaves as its type says, given that the calling thread
   holds it `depth` times (0: free). Leaves it free. Returns 0, or the line
   of the first failed check (usable as a child's exit status). */
#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x))                                                              \
            return __LINE__ % 250 + 1;                                         \
    } while (0)
static int check_mutex(pthread_mutex_t *m, const struct mcase *c, int depth)
{
    if (depth == 0) {
        CHECK(pthread_mutex_trylock(m) == 0);
        depth = 1;
    }
    if (c->type == ERRORCHECK)
        CHECK(pthread_mutex_lock(m) == EDEADLK);
    if (c->type == RECURSIVE) {
        CHECK(pthread_mutex_lock(m) == 0); /* nests */
        depth++;
        for (int i = 0; i < depth; i++)
            CHECK(pthread_mutex_unlock(m) == 0);
        CHECK(pthread_mutex_unlock(m) == EPERM); /* depth was exact */
    } else {
        CHECK(pthread_mutex_unlock(m) == 0);
        if (c->type == ERRORCHECK)
            CHECK(pthread_mutex_unlock(m) == EPERM);
    }
    /* Free now, for this thread and others. */
    CHECK(pthread_mutex_trylock(m) == 0);
    CHECK(pthread_mutex_unlock(m) == 0);
    if (c->robust) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, lock_and_die, m) == 0);
        pthread_join(t, NULL);
        CHECK(pthread_mutex_lock(m) == EOWNERDEAD);
        CHECK(pthread_mutex_consistent(m) == 0);
        CHECK(pthread_mutex_unlock(m) == 0);
    }
    return 0;
}

static pid_t do_fork(int wrapper)
{
    if (!wrapper)
        return fork();
    struct forksafe_fork_opts o = {.timeout_ms = 2000};
    return forksafe_fork(&o);
}

static void run_mutex_cases(int wrapper, int held)
{
    fs_idle_start();
    for (size_t i = 0; i < sizeof mcases / sizeof mcases[0]; i++) {
        const struct mcase *c = &mcases[i];
        pthread_mutex_t m;
        init_mutex(&m, c);
        assert_int_equal(forksafe_register_mutex(&m, c->name, 100), 0);
        int depth = 0;
        if (held) {
            depth = c->type == RECURSIVE ? 3 : 1;
            for (int d = 0; d < depth; d++)
                assert_int_equal(pthread_mutex_lock(&m), 0);
        }
        pid_t pid = do_fork(wrapper);
        if (pid < 0)
            fail_msg("%s: fork failed: %s (%s)", c->name, strerror(errno),
                     forksafe_last_error());
        if (pid == 0) {
            /* Also what glibc's destroy checks (no users left): the child
               handler frees mutexes with plain stores. */
            int line = check_mutex(&m, c, depth);
            _exit(line ? line : pthread_mutex_destroy(&m) == 0 ? 0 : 251);
        }
        int code = -1;
        enum fs_wait_result r = fs_wait(pid, 5000, &code);
        if (r != FS_EXITED || code != 0)
            fail_msg("%s (held %d): child %s %d", c->name, depth,
                     r == FS_HUNG     ? "hung"
                     : r == FS_EXITED ? "failed at line"
                                      : "died of signal",
                     code);
        int pcode = check_mutex(&m, c, depth);
        if (pcode)
            fail_msg("%s (held %d): parent failed at line %d", c->name, depth,
                     pcode);
        assert_int_equal(forksafe_unregister(&m), 0);
        pthread_mutex_destroy(&m);
    }
    fs_idle_stop();
}

static void test_mutex_free_fork(void **s)
{
    (void)s;
    run_mutex_cases(0, 0);
}
static void test_mutex_free_wrapper(void **s)
{
    (void)s;
    run_mutex_cases(1, 0);
}
static void test_mutex_held_fork(void **s)
{
    (void)s;
    run_mutex_cases(0, 1);
}
static void test_mutex_held_wrapper(void **s)
{
    (void)s;
    run_mutex_cases(1, 1);
}

/* rwlock: usable for readers and writers in both processes. */
static int check_rwlock(pthread_rwlock_t *l, int write_held)
{
    if (write_held) {
        CHECK(pthread_rwlock_rdlock(l) == EDEADLK);
        CHECK(pthread_rwlock_unlock(l) == 0);
    }
    CHECK(pthread_rwlock_trywrlock(l) == 0);
    CHECK(pthread_rwlock_unlock(l) == 0);
    CHECK(pthread_rwlock_tryrdlock(l) == 0);
    CHECK(pthread_rwlock_tryrdlock(l) == 0);
    CHECK(pthread_rwlock_trywrlock(l) == EBUSY);
    CHECK(pthread_rwlock_unlock(l) == 0);
    CHECK(pthread_rwlock_unlock(l) == 0);
    CHECK(pthread_rwlock_trywrlock(l) == 0);
    CHECK(pthread_rwlock_unlock(l) == 0);
    return 0;
}

static void run_rwlock(int wrapper, int write_held)
{
    fs_idle_start();
    pthread_rwlock_t l;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&l, &a);
    assert_int_equal(forksafe_register_rwlock(&l, "rw", 100), 0);
    if (write_held)
        assert_int_equal(pthread_rwlock_wrlock(&l), 0);
    pid_t pid = do_fork(wrapper);
    assert_true(pid >= 0);
    if (pid == 0) {
        int code = check_rwlock(&l, write_held);
        /* The rebuilt lock kept its kind. */
        if (!code &&
            l.__data.__flags != PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP)
            code = 99;
        _exit(code);
    }
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(check_rwlock(&l, write_held), 0);
    assert_int_equal(forksafe_unregister(&l), 0);
    pthread_rwlock_destroy(&l);
    fs_idle_stop();
}

static void test_rwlock_free_fork(void **s)
{
    (void)s;
    run_rwlock(0, 0);
}
static void test_rwlock_free_wrapper(void **s)
{
    (void)s;
    run_rwlock(1, 0);
}
static void test_rwlock_held_fork(void **s)
{
    (void)s;
    run_rwlock(0, 1);
}
static void test_rwlock_held_wrapper(void **s)
{
    (void)s;
    run_rwlock(1, 1);
}

/* A read lock held by the forking thread cannot be told apart from another
   thread's on glibc: with other threads alive, forksafe_fork fails within
   its timeout and says why; nothing stays held. */
static void test_rwlock_read_held_times_out(void **state)
{
    (void)state;
    fs_idle_start();
    pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
    assert_int_equal(forksafe_register_rwlock(&l, "read-held", 100), 0);
    assert_int_equal(pthread_rwlock_rdlock(&l), 0);
    struct forksafe_fork_opts o = {.timeout_ms = 150};
    uint64_t took;
    assert_int_equal(fs_fork_must_fail(&o, &took), ETIMEDOUT);
    assert_true(took >= 140 && took < 2000);
    assert_non_null(strstr(forksafe_last_error(), "\"read-held\""));
    assert_non_null(strstr(forksafe_last_error(), "held for reading"));
    assert_int_equal(pthread_rwlock_unlock(&l), 0);
    assert_int_equal(pthread_rwlock_trywrlock(&l), 0); /* nothing left held */
    assert_int_equal(pthread_rwlock_unlock(&l), 0);
    assert_int_equal(forksafe_unregister(&l), 0);
    fs_idle_stop();
}

/* Once the process is down to one thread, a read lock it holds is known to
   be its own, and the child inherits exactly that read count. */
static void test_rwlock_read_held_single_thread(void **state)
{
    (void)state;
    pid_t outer = fork(); /* a process with a single thread */
    assert_true(outer >= 0);
    if (outer == 0) {
        pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
        if (forksafe_register_rwlock(&l, "rd", 100))
            _exit(2);
        pthread_rwlock_rdlock(&l);
        pthread_rwlock_rdlock(&l);
        pid_t pid = forksafe_fork(NULL);
        if (pid < 0)
            _exit(3);
        int bad = 0;
        bad |= pthread_rwlock_trywrlock(&l) != EBUSY;
        bad |= pthread_rwlock_unlock(&l) != 0;
        bad |= pthread_rwlock_unlock(&l) != 0;
        bad |= pthread_rwlock_trywrlock(&l) != 0;
        if (pid == 0)
            _exit(bad ? 4 : 0);
        int code;
        _exit(fs_wait(pid, 5000, &code) == FS_EXITED && code == 0 && !bad ? 0
                                                                          : 5);
    }
    fs_assert_child_ok(outer, 10000);
}

static void run_spin(int wrapper)
{
    fs_idle_start();
    pthread_spinlock_t l;
    pthread_spin_init(&l, PTHREAD_PROCESS_PRIVATE);
    assert_int_equal(forksafe_register_spinlock(&l, "spin", 100), 0);
    pid_t pid = do_fork(wrapper);
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(pthread_spin_trylock(&l) == 0 && pthread_spin_unlock(&l) == 0
                  ? 0
                  : 1);
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(pthread_spin_trylock(&l), 0);
    /* Held by the forking thread: the platform records no owner. */
    struct forksafe_fork_opts o = {.timeout_ms = 100};
    assert_int_equal(fs_fork_must_fail(&o, NULL), ETIMEDOUT);
    assert_non_null(strstr(forksafe_last_error(), "\"spin\""));
    assert_int_equal(pthread_spin_unlock(&l), 0);
    assert_int_equal(forksafe_unregister((const void *)&l), 0);
    fs_idle_stop();
}

static void test_spinlock_fork(void **s)
{
    (void)s;
    run_spin(0);
}
static void test_spinlock_wrapper(void **s)
{
    (void)s;
    run_spin(1);
}

int main(void)
{
    fs_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutex_free_fork),
        cmocka_unit_test(test_mutex_free_wrapper),
        cmocka_unit_test(test_mutex_held_fork),
        cmocka_unit_test(test_mutex_held_wrapper),
        cmocka_unit_test(test_rwlock_free_fork),
        cmocka_unit_test(test_rwlock_free_wrapper),
        cmocka_unit_test(test_rwlock_held_fork),
        cmocka_unit_test(test_rwlock_held_wrapper),
        cmocka_unit_test(test_rwlock_read_held_times_out),
        cmocka_unit_test(test_rwlock_read_held_single_thread),
        cmocka_unit_test(test_spinlock_fork),
        cmocka_unit_test(test_spinlock_wrapper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
