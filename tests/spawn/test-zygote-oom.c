/* SPDX-License-Identifier: MIT */
/*
 * test-zygote-oom.c: the fork server's client lock is registered with the
 * core on first use; if that registration runs out of memory, the call
 * that needed it says ENOMEM and the next call tries again, so the lock is
 * never left unregistered (a plain fork() would then hand children a copy
 * of it locked). Linked with the static library and -Wl,--wrap=malloc to
 * inject the failure into libforksafe's own allocation.
 */
#include "common.h"

#include <forksafe.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static int fail_mallocs; /* fail this many calls, then succeed */

void *__wrap_malloc(size_t n)
{
    if (__atomic_load_n(&fail_mallocs, __ATOMIC_RELAXED) > 0) {
        __atomic_sub_fetch(&fail_mallocs, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    return __real_malloc(n);
}

static int e_empty(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    return 0;
}

/* Whether the registry has an entry named name (from the text report). */
static int registered(const char *name)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(forksafe_audit_write(fileno(f), 0), 0);
    rewind(f);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL)
        found |= strstr(line, name) != NULL;
    fclose(f);
    return found;
}

/* ENOMEM while forksafe_zygote_start() registers the lock: no server. */
static void oom_on_start(void **state)
{
    (void)state;
    fail_mallocs = 1;
    int r = forksafe_zygote_start();
    fail_mallocs = 0;
    if (r == 0)
        forksafe_zygote_stop();
    assert_int_equal(r, ENOMEM);
    assert_int_equal(forksafe_zygote_pid(), 0);
    assert_false(registered("forksafe.zygote"));
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* ENOMEM while forksafe_zygote_register() registers it: the entry point
   is not added, and the next call registers both. */
static void oom_on_register_then_retry(void **state)
{
    (void)state;
    fail_mallocs = 1;
    int r = forksafe_zygote_register("empty", e_empty);
    fail_mallocs = 0;
    assert_int_equal(r, ENOMEM);
    assert_false(registered("forksafe.zygote"));
    assert_int_equal(forksafe_zygote_register("empty", e_empty), 0);
    assert_true(registered("forksafe.zygote"));
    assert_int_equal(forksafe_zygote_register("empty", e_empty), EEXIST);
}

/* With the lock registered, children forked while other threads use the
   fork server can use its client state (here: register an entry point,
   which takes the lock) without hanging. */
static volatile int hammer_stop;

static void *hammer_main(void *arg)
{
    (void)arg;
    while (!hammer_stop) {
        pid_t w;
        if (forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w) == 0)
            waitpid(w, NULL, 0);
    }
    return NULL;
}

static void oom_children_do_not_hang(void **state)
{
    (void)state;
    assert_int_equal(forksafe_zygote_start(), 0);
    hammer_stop = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, NULL), 0);
    int hung = 0;
    for (int i = 0; i < 40; i++) {
        pid_t c = fork();
        assert_true(c >= 0);
        if (c == 0) {
            int r = forksafe_zygote_register("in-child", e_empty);
            _exit(r == 0 ? 0 : 1);
        }
        int code = -1;
        if (fs_wait(c, 3000, &code) != FS_EXITED || code != 0)
            hung++;
        usleep(1000);
    }
    hammer_stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(forksafe_zygote_stop(), 0);
    assert_int_equal(hung, 0);
}

int main(void)
{
    fs_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oom_on_start),
        cmocka_unit_test(oom_on_register_then_retry),
        cmocka_unit_test(oom_children_do_not_hang),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
