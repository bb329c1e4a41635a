/* SPDX-License-Identifier: MIT */
/*
 * test-allocator.c: an allocator with its own fork handlers stays last
 * (issue 11, item 3). Threads allocate while holding a registered lock
 * while the main thread forks 200 times with fork() and 200 times with
 * forksafe_fork(): every fork must succeed, every child must allocate and
 * take the lock, and no plain fork() may skip an entry.
 *
 * Two allocators:
 *  - jemalloc (Debian's libjemalloc2) in LD_PRELOAD: it registers its
 *    handlers at its first malloc(), before libforksafe's constructor, so
 *    glibc runs them after forksafe's prepare on both paths;
 *  - this program's own malloc() (arena locks over glibc's __libc_malloc),
 *    whose handlers are registered in main(), after libforksafe: glibc
 *    would run them *first* under a plain fork() (a thread holding the
 *    registered lock and waiting for an arena then stalls the fork for the
 *    whole deadline); forksafe captures them and, since they belong to the
 *    object that provides the process's malloc(), runs them after every
 *    entry, on both paths.
 * The program runs itself once per allocator. Not under AddressSanitizer,
 * which replaces malloc() itself.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define JEMALLOC "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
#define FORKS    200
#define THREADS  3

/* ---- this program's allocator ---- */

#if !FS_ASAN
void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t m);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);

#define ARENAS 4
static pthread_mutex_t arena[ARENAS] = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
static int own_allocator; /* set in main() for the second run */
static __thread unsigned my_arena;

static pthread_mutex_t *lock_arena(void)
{
    if (!own_allocator)
        return NULL;
    if (!my_arena)
        my_arena = (unsigned)gettid() % ARENAS + 1;
    pthread_mutex_t *a = &arena[my_arena - 1];
    pthread_mutex_lock(a);
    return a;
}

void *malloc(size_t n)
{
    pthread_mutex_t *a = lock_arena();
    void *p = __libc_malloc(n);
    if (a)
        pthread_mutex_unlock(a);
    return p;
}

void *calloc(size_t n, size_t m)
{
    pthread_mutex_t *a = lock_arena();
    void *p = __libc_calloc(n, m);
    if (a)
        pthread_mutex_unlock(a);
    return p;
}

void *realloc(void *q, size_t n)
{
    pthread_mutex_t *a = lock_arena();
    void *p = __libc_realloc(q, n);
    if (a)
        pthread_mutex_unlock(a);
    return p;
}

void free(void *p)
{
    pthread_mutex_t *a = lock_arena();
    __libc_free(p);
    if (a)
        pthread_mutex_unlock(a);
}

/* What an allocator's fork handlers do: no thread is inside the allocator
   at the fork, and the child's arenas are usable. */
static void arenas_prepare(void)
{
    for (int i = 0; i < ARENAS; i++)
        pthread_mutex_lock(&arena[i]);
}

static void arenas_parent(void)
{
    for (int i = ARENAS; i-- > 0;)
        pthread_mutex_unlock(&arena[i]);
}

static void arenas_child(void)
{
    for (int i = 0; i < ARENAS; i++)
        pthread_mutex_init(&arena[i], NULL);
}
#endif

/* ---- the workload ---- */

static pthread_mutex_t app_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop;

static void *allocate_under_lock(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!stop) {
        pthread_mutex_lock(&app_lock);
        for (int i = 0; i < 4; i++) {
            void *p = malloc(16 + rand_r(&seed) % 4000);
            if (!p)
                abort();
            free(p);
        }
        pthread_mutex_unlock(&app_lock);
    }
    return NULL;
}

static int child_work(void)
{
    void *p = malloc(100);
    if (!p)
        return 1;
    free(p);
    if (pthread_mutex_lock(&app_lock) != 0)
        return 2;
    pthread_mutex_unlock(&app_lock);
    return 0;
}

/* Plain fork() failures recorded by the report (an entry skipped). */
static int plain_failures(void)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    forksafe_audit_write(fds[1], FORKSAFE_AUDIT_JSON);
    close(fds[1]);
    static char buf[65536];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(fds[0]);
    buf[n] = '\0';
    const char *c = strstr(buf, "\"plain_fork_failures\": {\"count\": ");
    return c ? atoi(c + strlen("\"plain_fork_failures\": {\"count\": ")) : -1;
}

static void run_workload(const char *label)
{
    assert_int_equal(
        forksafe_register_mutex(&app_lock, "app lock", FORKSAFE_RANK_APP), 0);
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++)
        assert_int_equal(
            pthread_create(&t[i], NULL, allocate_under_lock, (void *)(i + 1)),
            0);
    int failed[2] = {0, 0};
    for (int wrapper = 0; wrapper < 2; wrapper++) {
        for (int n = 0; n < FORKS && failed[wrapper] < 5; n++) {
            struct forksafe_fork_opts o = {.timeout_ms = 2000};
            pid_t pid = wrapper ? forksafe_fork(&o) : fork();
            if (pid == 0)
                _exit(child_work());
            int code = -1;
            if (pid < 0 || fs_wait(pid, 3000, &code) != FS_EXITED || code)
                failed[wrapper]++;
        }
    }
    stop = 1;
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    int skipped = plain_failures();
    print_message("%s: %d of %d fork() and %d of %d forksafe_fork() failed; "
                  "%d plain fork() entries skipped\n",
                  label, failed[0], FORKS, failed[1], FORKS, skipped);
    assert_int_equal(failed[0], 0);
    assert_int_equal(failed[1], 0);
    assert_int_equal(skipped, 0);
    assert_int_equal(forksafe_unregister(&app_lock), 0);
}

static void test_jemalloc_preloaded(void **state)
{
    (void)state;
    const char *pre = getenv("LD_PRELOAD");
    if (!pre || !strstr(pre, "jemalloc"))
        skip();
    run_workload("jemalloc (LD_PRELOAD)");
}

static void test_allocator_registered_late(void **state)
{
    (void)state;
#if FS_ASAN
    skip();
#else
    own_allocator = 1;
    /* After libforksafe's constructor: a late-registered allocator. */
    assert_int_equal(
        pthread_atfork(arenas_prepare, arenas_parent, arenas_child), 0);
    run_workload("own allocator, handlers registered late");
#endif
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *which = getenv("FS_TEST_ALLOCATOR");
    if (!which && !FS_ASAN) {
        /* Run once with jemalloc preloaded (if installed), once with the
           program's own allocator; a plain fork() that skips an entry
           shows after 500 ms. */
        int status = 0;
        for (int run = 0; run < 2; run++) {
            if (run == 0 && access(JEMALLOC, R_OK) != 0) {
                printf("test-allocator: %s not installed: jemalloc case "
                       "skipped\n",
                       JEMALLOC);
                continue;
            }
            fflush(stdout);
            pid_t pid = fork();
            if (pid == 0) {
                setenv("FS_TEST_ALLOCATOR", run ? "own" : "jemalloc", 1);
                setenv("FORKSAFE_TIMEOUT_MS", "500", 1);
                if (run == 0)
                    setenv("LD_PRELOAD", JEMALLOC, 1);
                execv("/proc/self/exe", argv);
                _exit(127);
            }
            int st = 0;
            waitpid(pid, &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                status = 1;
        }
        return status;
    }
    fs_watchdog(240);
    int own = which && strcmp(which, "own") == 0;
    const struct CMUnitTest jemalloc_tests[] = {
        cmocka_unit_test(test_jemalloc_preloaded),
    };
    const struct CMUnitTest own_tests[] = {
        cmocka_unit_test(test_allocator_registered_late),
    };
    return own ? cmocka_run_group_tests(own_tests, NULL, NULL)
               : cmocka_run_group_tests(jemalloc_tests, NULL, NULL);
}
