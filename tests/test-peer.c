/* SPDX-License-Identifier: MIT */
/*
 * test-peer.c: one registry per process with two copies of libforksafe
 * (issue 10, item 7). This program links libforksafe.a; the plugin it loads
 * links libforksafe.so. Before, each copy kept its own registry and fork
 * handlers: each fork path ordered only its own half, the plugin's locks
 * were invisible to this program's lookups and reports. Now the plugin's
 * copy forwards to this one. A copy with an incompatible peer interface
 * refuses registrations (ENOTSUP) and says so. (That a program linking the
 * static archive exports none of the library's interposers is checked in
 * test-exports.c.)
 */
#include "common.h"

#include "forksafe.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[PATH_MAX - 64];

static char trace[64];
static int ctx_low, ctx_high;

static int on_prepare(void *c, const struct timespec *d)
{
    (void)d;
    strcat(trace, (int *)c == &ctx_low ? "p100" : "p300");
    return 0;
}

static void on_parent(void *c)
{
    strcat(trace, (int *)c == &ctx_low ? "P100" : "P300");
}

static const struct forksafe_ops ops = {on_prepare, on_parent, NULL};

static void *load(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        fail_msg("dlopen %s: %s", path, dlerror());
    return h;
}

static void report(char *buf, size_t cap, int (*writer)(int))
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(writer ? writer(fds[1]) : forksafe_audit_write(fds[1], 0),
                     0);
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fds[0], buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
}

static void test_one_registry(void **state)
{
    (void)state;
    static pthread_mutex_t mine = PTHREAD_MUTEX_INITIALIZER;
    fs_idle_start();
    assert_int_equal(forksafe_register_mutex(&mine, "program mutex", 100), 0);
    assert_int_equal(forksafe_register_ops(&ctx_low, "low", 100, &ops), 0);
    assert_int_equal(forksafe_register_ops(&ctx_high, "high", 300, &ops), 0);
    void *h = load("fs-plugin-peer.so");
    int *result = dlsym(h, "plugin_result");
    char *ptrace = dlsym(h, "plugin_trace");
    void *(*pmutex)(void) = (void *(*)(void))dlsym(h, "plugin_mutex");
    int (*plookup)(const void *) =
        (int (*)(const void *))dlsym(h, "plugin_lookup");
    int (*pnull)(void) = (int (*)(void))dlsym(h, "plugin_register_null");
    const char *(*perr)(void) =
        (const char *(*)(void))dlsym(h, "plugin_last_error");
    int (*preport)(int) = (int (*)(int))dlsym(h, "plugin_report");
    assert_non_null(result);
    assert_int_equal(*result, 0);

    /* Each side sees the other's entries: one registry. */
    assert_int_equal(forksafe_lookup(pmutex(), NULL), 0);
    assert_int_equal(plookup(&mine), 0);

    /* One order over both halves, on both fork paths. */
    for (int wrapper = 0; wrapper < 2; wrapper++) {
        trace[0] = ptrace[0] = '\0';
        pid_t pid = wrapper ? forksafe_fork(NULL) : fork();
        if (pid == 0)
            _exit(0);
        assert_true(pid > 0);
        fs_assert_child_ok(pid, 5000);
        /* p100, then the plugin's p200, then p300; released in reverse. */
        assert_string_equal(trace, "p100p300P300P100");
        assert_string_equal(ptrace, "p200P200");
    }

    /* Its errors and reports are this registry's too. */
    assert_int_equal(pnull(), EINVAL);
    assert_non_null(strstr(perr(), "forksafe_register_mutex"));
    assert_string_equal(perr(), forksafe_last_error());
    char buf[8192];
    report(buf, sizeof buf, preport);
    assert_non_null(strstr(buf, "plugin mutex"));
    assert_non_null(strstr(buf, "program mutex"));
    assert_non_null(strstr(buf, "keeps the registry"));
    assert_non_null(strstr(buf, "libforksafe.so"));

    /* Unloading the plugin takes its entries (its copy's __cxa_finalize is
       not in the global scope: the next fork's check does it). */
    void *pm = pmutex();
    assert_int_equal(dlclose(h), 0);
    for (int wrapper = 0; wrapper < 2; wrapper++) {
        trace[0] = '\0';
        pid_t pid = wrapper ? forksafe_fork(NULL) : fork();
        if (pid == 0)
            _exit(0);
        assert_true(pid > 0);
        fs_assert_child_ok(pid, 5000);
        assert_string_equal(trace, "p100p300P300P100");
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fs-plugin-peer.so", dir);
    void *still = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (still) {
        /* musl never unloads (its dlclose does nothing): the plugin's
           entries stay registered, and valid. */
        assert_int_equal(forksafe_lookup(pm, NULL), 0);
        dlclose(still);
    } else {
        assert_int_equal(forksafe_lookup(pm, NULL), ENOENT);
    }
    assert_int_equal(forksafe_unregister(&mine), 0);
    assert_int_equal(forksafe_unregister(&ctx_low), 0);
    assert_int_equal(forksafe_unregister(&ctx_high), 0);
    fs_idle_stop();
}

/* A copy built with another peer interface cannot share the registry: it
   refuses every registration, loudly. */
static void test_incompatible_copy_refuses(void **state)
{
    (void)state;
    void *h = load("fs-plugin-peer-abi99.so");
    int *result = dlsym(h, "plugin_result");
    const char *err = dlsym(h, "plugin_error");
    void *(*pmutex)(void) = (void *(*)(void))dlsym(h, "plugin_mutex");
    int (*preport)(int) = (int (*)(int))dlsym(h, "plugin_report");
    assert_non_null(result);
    assert_int_equal(*result, ENOTSUP);
    assert_non_null(strstr(err, "interface"));
    assert_non_null(strstr(err, "refuses"));
    assert_int_equal(forksafe_lookup(pmutex(), NULL), ENOENT);
    char buf[8192];
    report(buf, sizeof buf, preport);
    assert_non_null(strstr(buf, "refuses every registration"));
    assert_int_equal(dlclose(h), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    fs_watchdog(60);
    snprintf(dir, sizeof dir, "%s", argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_registry),
        cmocka_unit_test(test_incompatible_copy_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
