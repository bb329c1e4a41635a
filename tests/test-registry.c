/* SPDX-License-Identifier: MIT */
/*
 * test-registry.c: registration contract: bad input, duplicates, unknown
 * keys, out-of-memory leaving the registry unchanged, lookup, adapters, and
 * 100,000 entries. Linked with the static library and -Wl,--wrap=malloc so
 * that allocation failures can be injected into libforksafe itself.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static int fail_mallocs; /* fail this many calls, then succeed */

void *__wrap_malloc(size_t n)
{
    if (fail_mallocs > 0) {
        fail_mallocs--;
        return NULL;
    }
    return __real_malloc(n);
}

static pthread_mutex_t m1 = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t m2 = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_spinlock_t sp;

static int noop_prepare(void *ctx, const struct timespec *d)
{
    (void)ctx;
    (void)d;
    return 0;
}

static void *read_last_error(void *arg)
{
    snprintf(arg, 8, "%s", forksafe_last_error());
    return NULL;
}

static void test_bad_input(void **state)
{
    (void)state;
    struct forksafe_ops ops = {noop_prepare, NULL, NULL};
    assert_int_equal(forksafe_register_mutex(NULL, "x", 1), EINVAL);
    assert_int_equal(forksafe_register_mutex(&m1, NULL, 1), EINVAL);
    assert_int_equal(forksafe_register_rwlock(NULL, "x", 1), EINVAL);
    assert_int_equal(forksafe_register_spinlock(NULL, "x", 1), EINVAL);
    assert_int_equal(forksafe_register_ops(NULL, "x", 1, &ops), EINVAL);
    assert_int_equal(forksafe_register_ops(&ops, "x", 1, NULL), EINVAL);
    assert_int_equal(forksafe_unregister(NULL), EINVAL);
    assert_int_equal(forksafe_lookup(NULL, NULL), EINVAL);
    assert_int_equal(forksafe_register_adapter(NULL), EINVAL);
    assert_int_equal(forksafe_register_adapter(""), EINVAL);
    /* None of that registered anything. */
    assert_int_equal(forksafe_lookup(&m1, NULL), ENOENT);
    assert_int_equal(forksafe_lookup(&ops, NULL), ENOENT);
}

static void test_duplicate_and_unknown(void **state)
{
    (void)state;
    struct forksafe_info info;
    assert_int_equal(forksafe_register_mutex(&m1, "first", 10), 0);
    assert_int_equal(forksafe_register_mutex(&m1, "second", 20), EEXIST);
    /* The first registration is unchanged by the refused one. */
    assert_int_equal(forksafe_lookup(&m1, &info), 0);
    assert_string_equal(info.name, "first");
    assert_int_equal(info.rank, 10);
    assert_string_equal(info.kind, "mutex");
    /* One key, one entry, whatever the kind. */
    assert_int_equal(forksafe_register_rwlock((pthread_rwlock_t *)&m1, "x", 1),
                     EEXIST);
    assert_int_equal(forksafe_unregister(&m1), 0);
    assert_int_equal(forksafe_unregister(&m1), ENOENT);
    assert_int_equal(forksafe_unregister(&m2), ENOENT);
    assert_int_equal(forksafe_lookup(&m1, &info), ENOENT);
}

static void test_kinds_and_names(void **state)
{
    (void)state;
    struct forksafe_info info;
    char name[64];
    strcpy(name, "copied name");
    pthread_spin_init(&sp, PTHREAD_PROCESS_PRIVATE);
    struct forksafe_ops ops = {noop_prepare, NULL, NULL};
    int ctx;
    assert_int_equal(forksafe_register_rwlock(&rw, name, 5), 0);
    assert_int_equal(forksafe_register_spinlock(&sp, "spin", 6), 0);
    assert_int_equal(forksafe_register_ops(&ctx, "cb", 7, &ops), 0);
    strcpy(name, "overwritten");
    assert_int_equal(forksafe_lookup(&rw, &info), 0);
    assert_string_equal(info.name, "copied name"); /* the name was copied */
    assert_string_equal(info.kind, "rwlock");
    assert_int_equal(forksafe_lookup((const void *)&sp, &info), 0);
    assert_string_equal(info.kind, "spinlock");
    assert_int_equal(forksafe_lookup(&ctx, &info), 0);
    assert_string_equal(info.kind, "ops");
    assert_int_equal(info.rank, 7);
    assert_int_equal(forksafe_unregister(&rw), 0);
    assert_int_equal(forksafe_unregister((const void *)&sp), 0);
    assert_int_equal(forksafe_unregister(&ctx), 0);
}

static void test_enomem_leaves_registry_unchanged(void **state)
{
    (void)state;
    assert_int_equal(forksafe_register_mutex(&m2, "kept", 1), 0);
    fail_mallocs = 1;
    assert_int_equal(forksafe_register_mutex(&m1, "lost", 1), ENOMEM);
    assert_int_equal(fail_mallocs, 0); /* the injected failure was hit */
    assert_int_equal(forksafe_lookup(&m1, NULL), ENOENT);
    assert_int_equal(forksafe_lookup(&m2, NULL), 0);
    /* A retry after the failure works. */
    assert_int_equal(forksafe_register_mutex(&m1, "lost", 1), 0);
    fail_mallocs = 1;
    assert_int_equal(forksafe_register_adapter("enomem-adapter"), ENOMEM);
    fail_mallocs = 0;
    assert_int_equal(forksafe_adapter_installed("enomem-adapter"), 0);
    assert_int_equal(forksafe_unregister(&m1), 0);
    assert_int_equal(forksafe_unregister(&m2), 0);
}

/* forksafe_last_error() describes the calling thread's last failure,
   registry calls included (issue 10, item 8). */
static void test_last_error_after_registry_errors(void **state)
{
    (void)state;
    struct forksafe_ops ops = {noop_prepare, NULL, NULL};
    assert_int_equal(forksafe_register_mutex(NULL, "x", 1), EINVAL);
    assert_non_null(strstr(forksafe_last_error(), "forksafe_register_mutex"));
    assert_non_null(strstr(forksafe_last_error(), "NULL"));
    assert_int_equal(forksafe_register_ops(&ops, "x", 1, NULL), EINVAL);
    assert_non_null(strstr(forksafe_last_error(), "forksafe_register_ops"));
    assert_int_equal(forksafe_register_mutex(&m1, "first", 10), 0);
    assert_int_equal(forksafe_register_rwlock((pthread_rwlock_t *)&m1, "x", 3),
                     EEXIST);
    /* It names what holds the key. */
    assert_non_null(strstr(forksafe_last_error(), "forksafe_register_rwlock"));
    assert_non_null(strstr(forksafe_last_error(), "already registered"));
    assert_non_null(strstr(forksafe_last_error(), "\"first\""));
    assert_non_null(strstr(forksafe_last_error(), "rank 10"));
    assert_int_equal(forksafe_unregister(&m1), 0);
    assert_int_equal(forksafe_unregister(&m1), ENOENT);
    assert_non_null(strstr(forksafe_last_error(), "forksafe_unregister"));
    assert_non_null(strstr(forksafe_last_error(), "not registered"));
    assert_int_equal(forksafe_lookup(&m2, NULL), ENOENT);
    assert_non_null(strstr(forksafe_last_error(), "forksafe_lookup"));
    assert_int_equal(forksafe_register_adapter(""), EINVAL);
    assert_non_null(strstr(forksafe_last_error(), "forksafe_register_adapter"));
    fail_mallocs = 1;
    assert_int_equal(forksafe_register_mutex(&m1, "lost", 1), ENOMEM);
    fail_mallocs = 0;
    assert_non_null(strstr(forksafe_last_error(), "out of memory"));
    /* Each thread has its own: a new thread starts with none. */
    pthread_t t;
    char seen[8] = "unset";
    assert_int_equal(pthread_create(&t, NULL, read_last_error, seen), 0);
    pthread_join(t, NULL);
    assert_string_equal(seen, "");
}

static void test_adapters(void **state)
{
    (void)state;
    assert_int_equal(forksafe_adapter_installed("demo-lib"), 0);
    assert_int_equal(forksafe_register_adapter("demo-lib"), 0);
    assert_int_equal(forksafe_register_adapter("demo-lib"), 0);
    assert_int_equal(forksafe_adapter_installed("demo-lib"), 1);
    assert_int_equal(forksafe_adapter_installed(NULL), 0);
}

#define MANY 100000

static void test_hundred_thousand(void **state)
{
    (void)state;
    pthread_mutex_t *ms = calloc(MANY, sizeof *ms);
    assert_non_null(ms);
    for (int i = 0; i < MANY; i++) {
        pthread_mutex_init(&ms[i], NULL);
        /* Ranks in a scrambled order, many distinct. */
        assert_int_equal(
            forksafe_register_mutex(&ms[i], "m", (unsigned)(i * 7919u) % 5003u),
            0);
    }
    struct forksafe_info a, b;
    assert_int_equal(forksafe_lookup(&ms[MANY - 1], &a), 0);
    assert_int_equal(forksafe_lookup(&ms[0], &b), 0);
    assert_true(a.seq > b.seq);
    /* Remove every other entry, then all of them. */
    for (int i = 0; i < MANY; i += 2)
        assert_int_equal(forksafe_unregister(&ms[i]), 0);
    for (int i = 0; i < MANY; i += 2)
        assert_int_equal(forksafe_lookup(&ms[i], NULL), ENOENT);
    for (int i = 1; i < MANY; i += 2)
        assert_int_equal(forksafe_unregister(&ms[i]), 0);
    assert_int_equal(forksafe_lookup(&ms[1], NULL), ENOENT);
    free(ms);
}

int main(void)
{
    fs_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_duplicate_and_unknown),
        cmocka_unit_test(test_kinds_and_names),
        cmocka_unit_test(test_enomem_leaves_registry_unchanged),
        cmocka_unit_test(test_last_error_after_registry_errors),
        cmocka_unit_test(test_adapters),
        cmocka_unit_test(test_hundred_thousand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
