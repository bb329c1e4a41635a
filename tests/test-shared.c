/* SPDX-License-Identifier: MIT */
/*
 * test-shared.c: process-shared locks in MAP_SHARED memory (issue 10, item
 * 2). After fork() such a lock is one lock in both processes, so forksafe
 * must leave it alone: rewriting, unlocking or rebuilding it in the child
 * broke the parent's hold (EPERM on its unlock) or let the child in while
 * the parent held it. Each case runs under fork() and forksafe_fork() with
 * another thread alive: errorcheck and robust mutexes held by the forking
 * thread; normal mutex, rwlock and spinlock free at the fork and taken by
 * the parent right after it. A process-shared lock in private memory is
 * copied like any other and keeps the usual contract.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct shared {
    pthread_mutex_t errorcheck, robust, normal;
    pthread_rwlock_t rw;
    pthread_spinlock_t spin;
};

static struct shared *sh;
static int to_child[2], to_parent[2];
static int slow_ctx;

static void init_mutex(pthread_mutex_t *m, int type, int robust)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (robust)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    assert_int_equal(pthread_mutex_init(m, &a), 0);
    pthread_mutexattr_destroy(&a);
}

/* Each test gets fresh shared memory and pipes, so that one failure (a
   lock left held in the mapping) cannot hang the next test. */
static int setup(void **state)
{
    (void)state;
    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        return -1;
    init_mutex(&sh->errorcheck, PTHREAD_MUTEX_ERRORCHECK, 0);
    init_mutex(&sh->robust, PTHREAD_MUTEX_ERRORCHECK, 1);
    init_mutex(&sh->normal, PTHREAD_MUTEX_NORMAL, 0);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setpshared(&ra, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(&sh->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_spin_init(&sh->spin, PTHREAD_PROCESS_SHARED);
    if (pipe(to_child) || pipe(to_parent))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const void *keys[] = {
        &sh->errorcheck,         &sh->robust, &sh->normal, &sh->rw,
        (const void *)&sh->spin, &slow_ctx};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        forksafe_unregister(keys[i]);
    fs_idle_stop();
    munmap(sh, sizeof *sh);
    close(to_child[0]), close(to_child[1]);
    close(to_parent[0]), close(to_parent[1]);
    return 0;
}

/* After the fork: each side closes the pipe ends it does not use, so a
   side that dies makes the other's read return instead of blocking. */
static void pipes_after_fork(pid_t pid)
{
    if (pid == 0) {
        close(to_child[1]);
        close(to_parent[0]);
        to_child[1] = to_parent[0] = -1;
    } else {
        close(to_child[0]);
        close(to_parent[1]);
        to_child[0] = to_parent[1] = -1;
    }
}

static void say(int fd, char c)
{
    (void)!write(fd, &c, 1);
}

static int hear(int fd)
{
    char c = 0;
    return read(fd, &c, 1) == 1 ? c : -1;
}

static pid_t do_fork(int wrapper)
{
    if (!wrapper)
        return fork();
    struct forksafe_fork_opts o = {.timeout_ms = 2000};
    pid_t pid = forksafe_fork(&o);
    if (pid < 0)
        fail_msg("forksafe_fork: %s", forksafe_last_error());
    return pid;
}

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x))                                                              \
            _exit(__LINE__ % 250 + 1);                                         \
    } while (0)

/* The forking thread holds m. The child must see it held by the parent
   (the same lock), and the parent must still own it: its unlock works and
   then lets the child in. */
static void held_by_forker(pthread_mutex_t *m, const char *name, int wrapper)
{
    fs_idle_start();
    assert_int_equal(forksafe_register_mutex(m, name, 100), 0);
    assert_int_equal(pthread_mutex_lock(m), 0);
    pid_t pid = do_fork(wrapper);
    pipes_after_fork(pid);
    if (pid == 0) {
        CHECK(pthread_mutex_trylock(m) == EBUSY);
        say(to_parent[1], 'a');
        CHECK(hear(to_child[0]) == 'b');
        CHECK(pthread_mutex_lock(m) == 0);
        CHECK(pthread_mutex_unlock(m) == 0);
        _exit(0);
    }
    assert_true(pid > 0);
    assert_int_equal(hear(to_parent[0]), 'a');
    int r = pthread_mutex_unlock(m);
    say(to_child[1], 'b');
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(r, 0);
    /* Still one working lock in this process. */
    assert_int_equal(pthread_mutex_trylock(m), 0);
    assert_int_equal(pthread_mutex_unlock(m), 0);
    assert_int_equal(forksafe_unregister(m), 0);
    fs_idle_stop();
}

/* The child's handlers for lower ranks run after this one's child
   callback: it waits, so that the parent has already taken the shared lock
   when a (wrong) child handler would touch it. */
static void slow_child(void *ctx)
{
    (void)ctx;
    struct timespec d = {0, 100 * 1000 * 1000};
    nanosleep(&d, NULL);
}

static const struct forksafe_ops slow_ops = {NULL, NULL, slow_child};

enum kind { K_MUTEX, K_RWLOCK, K_SPIN };

static void take(enum kind k)
{
    if (k == K_MUTEX)
        assert_int_equal(pthread_mutex_lock(&sh->normal), 0);
    else if (k == K_RWLOCK)
        assert_int_equal(pthread_rwlock_wrlock(&sh->rw), 0);
    else
        assert_int_equal(pthread_spin_lock(&sh->spin), 0);
}

static int try_take(enum kind k)
{
    return k == K_MUTEX    ? pthread_mutex_trylock(&sh->normal)
           : k == K_RWLOCK ? pthread_rwlock_tryrdlock(&sh->rw)
                           : pthread_spin_trylock(&sh->spin);
}

static int give(enum kind k)
{
    return k == K_MUTEX    ? pthread_mutex_unlock(&sh->normal)
           : k == K_RWLOCK ? pthread_rwlock_unlock(&sh->rw)
                           : pthread_spin_unlock(&sh->spin);
}

/* Free at the fork; the parent takes it at once. The child must find it
   busy (mutual exclusion across the two processes is kept). */
static void free_at_fork(enum kind k, int wrapper)
{
    fs_idle_start();
    void *key = k == K_MUTEX    ? (void *)&sh->normal
                : k == K_RWLOCK ? (void *)&sh->rw
                                : (void *)&sh->spin;
    int r = k == K_MUTEX    ? forksafe_register_mutex(key, "shared", 100)
            : k == K_RWLOCK ? forksafe_register_rwlock(key, "shared", 100)
                            : forksafe_register_spinlock(key, "shared", 100);
    assert_int_equal(r, 0);
    assert_int_equal(
        forksafe_register_ops(&slow_ctx, "slow child", 200, &slow_ops), 0);
    pid_t pid = do_fork(wrapper);
    pipes_after_fork(pid);
    if (pid == 0) {
        CHECK(hear(to_child[0]) == 'a');
        CHECK(try_take(k) == EBUSY);
        say(to_parent[1], 'b');
        _exit(0);
    }
    assert_true(pid > 0);
    take(k);
    say(to_child[1], 'a');
    int heard = hear(to_parent[0]);
    assert_int_equal(give(k), 0);
    fs_assert_child_ok(pid, 5000);
    assert_int_equal(heard, 'b');
    assert_int_equal(try_take(k), 0);
    assert_int_equal(give(k), 0);
    assert_int_equal(forksafe_unregister(key), 0);
    assert_int_equal(forksafe_unregister(&slow_ctx), 0);
    fs_idle_stop();
}

static void test_errorcheck_held_fork(void **s)
{
    (void)s;
    held_by_forker(&sh->errorcheck, "shared errorcheck", 0);
}
static void test_errorcheck_held_wrapper(void **s)
{
    (void)s;
    held_by_forker(&sh->errorcheck, "shared errorcheck", 1);
}
static void test_robust_held_fork(void **s)
{
    (void)s;
    held_by_forker(&sh->robust, "shared robust", 0);
}
static void test_robust_held_wrapper(void **s)
{
    (void)s;
    held_by_forker(&sh->robust, "shared robust", 1);
}
static void test_mutex_free_fork(void **s)
{
    (void)s;
    free_at_fork(K_MUTEX, 0);
}
static void test_mutex_free_wrapper(void **s)
{
    (void)s;
    free_at_fork(K_MUTEX, 1);
}
static void test_rwlock_free_fork(void **s)
{
    (void)s;
    free_at_fork(K_RWLOCK, 0);
}
static void test_rwlock_free_wrapper(void **s)
{
    (void)s;
    free_at_fork(K_RWLOCK, 1);
}
static void test_spinlock_free_fork(void **s)
{
    (void)s;
    free_at_fork(K_SPIN, 0);
}
static void test_spinlock_free_wrapper(void **s)
{
    (void)s;
    free_at_fork(K_SPIN, 1);
}

/* A process-shared mutex in private memory is copied by fork(): the child
   gets its own, held by its only thread, and can release it. */
static void test_pshared_in_private_memory(void **s)
{
    (void)s;
    static pthread_mutex_t m;
    init_mutex(&m, PTHREAD_MUTEX_ERRORCHECK, 0);
    fs_idle_start();
    assert_int_equal(forksafe_register_mutex(&m, "pshared, private", 100), 0);
    for (int wrapper = 0; wrapper < 2; wrapper++) {
        assert_int_equal(pthread_mutex_lock(&m), 0);
        if (fs_layer_is("posix")) {
            /* The POSIX layer cannot make the child's thread its owner: an
               errorcheck mutex held by the forker is refused (EDEADLK;
               docs/platforms.md), and a plain fork() skips it. */
            pid_t pid;
            if (wrapper) {
                struct forksafe_fork_opts o = {.timeout_ms = 2000};
                pid = forksafe_fork(&o);
                assert_int_equal(pid, -1);
                assert_int_equal(errno, EDEADLK);
                assert_non_null(
                    strstr(forksafe_last_error(), "\"pshared, private\""));
            } else {
                pid = fork();
                if (pid == 0)
                    _exit(0); /* m is the parent thread's here: unusable */
                fs_assert_child_ok(pid, 5000);
            }
            assert_int_equal(pthread_mutex_unlock(&m), 0);
            continue;
        }
        pid_t pid = do_fork(wrapper);
        if (pid == 0) {
            CHECK(pthread_mutex_lock(&m) == EDEADLK);
            CHECK(pthread_mutex_unlock(&m) == 0);
            CHECK(pthread_mutex_trylock(&m) == 0);
            _exit(0);
        }
        assert_true(pid > 0);
        fs_assert_child_ok(pid, 5000);
        assert_int_equal(pthread_mutex_unlock(&m), 0);
    }
    assert_int_equal(forksafe_unregister(&m), 0);
    fs_idle_stop();
}

int main(void)
{
    fs_watchdog(120);
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_errorcheck_held_fork),      T(test_errorcheck_held_wrapper),
        T(test_robust_held_fork),          T(test_robust_held_wrapper),
        T(test_mutex_free_fork),           T(test_mutex_free_wrapper),
        T(test_rwlock_free_fork),          T(test_rwlock_free_wrapper),
        T(test_spinlock_free_fork),        T(test_spinlock_free_wrapper),
        T(test_pshared_in_private_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
