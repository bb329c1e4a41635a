/* SPDX-License-Identifier: MIT */
/*
 * test-dlclose.c: entries registered by a shared object disappear when it is
 * unloaded, so a later fork never calls into unmapped code, and loading it
 * again registers afresh (no EEXIST from stale entries).
 */
#include "common.h"

#include "forksafe.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char plugin_path[PATH_MAX];

static void *load(void)
{
    void *h = dlopen(plugin_path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        fail_msg("dlopen: %s", dlerror());
    int *ok = dlsym(h, "plugin_registered");
    assert_non_null(ok);
    assert_int_equal(*ok, 1);
    return h;
}

static void test_unload_removes_entries(void **state)
{
    (void)state;
    fs_idle_start();
    for (int round = 0; round < 3; round++) {
        void *h = load();
        void *(*addr)(void) = (void *(*)(void))dlsym(h, "plugin_lock_address");
        assert_non_null(addr);
        void *lock = addr();
        struct forksafe_info info;
        assert_int_equal(forksafe_lookup(lock, &info), 0);
        assert_string_equal(info.name, "plugin lock");

        /* While loaded, its child callback runs in every child. */
        pid_t pid = forksafe_fork(NULL);
        if (pid == 0)
            _exit(0);
        int code = -1;
        assert_int_equal(fs_wait(pid, 5000, &code), FS_EXITED);
        assert_int_equal(code, 42);

        assert_int_equal(dlclose(h), 0);
        void *still = dlopen(plugin_path, RTLD_NOW | RTLD_NOLOAD);
        if (still != NULL) {
            /* musl never unloads (its dlclose does nothing): the object
               stays mapped and its entries stay registered. */
            assert_int_equal(forksafe_lookup(lock, NULL), 0);
            dlclose(still);
            continue;
        }
        assert_int_equal(forksafe_lookup(lock, NULL), ENOENT);
        /* After unloading, fork calls nothing from it (it would crash or
           exit 42), with fork() and forksafe_fork() alike. */
        pid = fork();
        if (pid == 0)
            _exit(0);
        fs_assert_child_ok(pid, 5000);
        pid = forksafe_fork(NULL);
        if (pid == 0)
            _exit(0);
        fs_assert_child_ok(pid, 5000);
    }
    fs_idle_stop();
}

int main(int argc, char **argv)
{
    (void)argc;
    fs_watchdog(60);
    /* The plugin is built next to this program. */
    snprintf(plugin_path, sizeof plugin_path, "%s", argv[0]);
    char *slash = strrchr(plugin_path, '/');
    snprintf(slash ? slash + 1 : plugin_path,
             sizeof plugin_path - (size_t)(slash ? slash + 1 - plugin_path : 0),
             "fs-plugin.so");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unload_removes_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
