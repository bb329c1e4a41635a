/* SPDX-License-Identifier: MIT */
/*
 * test-dlclose.c: entries registered by a shared object disappear when it is
 * unloaded, so a later fork never calls into unmapped code, and loading it
 * again registers afresh (no EEXIST from stale entries), also when the
 * plugin's registration compiles to a tail call or the lock inside it was
 * registered by another object.
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
static char plugin_dir[PATH_MAX - 32];

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
    void *kept_lock = NULL, *kept_ops = NULL;
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
            void *(*ctx)(void) =
                (void *(*)(void))dlsym(still, "plugin_ops_context");
            assert_non_null(ctx);
            kept_lock = lock;
            kept_ops = ctx();
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
    if (kept_lock) {
        /* Its child callback (exit 42) would run in every later child. */
        assert_int_equal(forksafe_unregister(kept_lock), 0);
        assert_int_equal(forksafe_unregister(kept_ops), 0);
    }
    fs_idle_stop();
}

/* Fork both ways and check that the child exits 0 (nothing of an unloaded
   plugin ran) and that this process survived (nothing unmapped was
   touched in prepare or in the parent). */
static void fork_both_ways(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    assert_true(pid > 0);
    fs_assert_child_ok(pid, 5000);
    pid = forksafe_fork(NULL);
    if (pid == 0)
        _exit(0);
    assert_true(pid > 0);
    fs_assert_child_ok(pid, 5000);
}

/* Issue 10, item 1: a plugin whose registration function is compiled to a
   tail call (-O2) makes forksafe see the plugin's caller as the caller.
   Its entries must still go away with it: a static lock belongs to the
   object that contains it, a callback set to the object that holds its
   code. Before, the entries stayed and the next fork touched unmapped
   memory (SIGSEGV). */
static void unload_tail_plugin(const char *opt)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fs-plugin-tail-%s.so", plugin_dir, opt);
    fs_idle_start();
    for (int round = 0; round < 2; round++) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            fail_msg("dlopen: %s", dlerror());
        int (*reg_lock)(void) = (int (*)(void))dlsym(h, "plugin_register_lock");
        int (*reg_ops)(void) = (int (*)(void))dlsym(h, "plugin_register_ops");
        void *(*addr)(void) = (void *(*)(void))dlsym(h, "plugin_lock_address");
        void *(*foreign)(void) =
            (void *(*)(void))dlsym(h, "plugin_foreign_lock");
        assert_non_null(reg_lock);
        assert_non_null(reg_ops);
        assert_non_null(addr);
        assert_non_null(foreign);
        /* Called from this program: after a tail call the return address
           forksafe sees is in this program, not in the plugin. */
        assert_int_equal(reg_lock(), 0);
        assert_int_equal(reg_ops(), 0);
        /* A lock inside the plugin, registered by this program. */
        void *lock = addr(), *other = foreign();
        assert_int_equal(
            forksafe_register_mutex(other, "registered from outside", 2100), 0);

        pid_t pid = forksafe_fork(NULL);
        if (pid == 0)
            _exit(0);
        int code = -1;
        assert_int_equal(fs_wait(pid, 5000, &code), FS_EXITED);
        assert_int_equal(code, 43); /* the plugin's child callback ran */

        void *(*ctx)(void) = (void *(*)(void))dlsym(h, "plugin_ops_context");
        assert_non_null(ctx);
        void *ops = ctx();
        assert_int_equal(dlclose(h), 0);
        void *still = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (still != NULL) {
            /* musl never unloads (its dlclose does nothing): the object
               stays mapped and its entries stay registered, and valid.
               Unregistered here so that the next round registers afresh. */
            assert_int_equal(forksafe_lookup(lock, NULL), 0);
            assert_int_equal(forksafe_lookup(other, NULL), 0);
            assert_int_equal(forksafe_lookup(ops, NULL), 0);
            assert_int_equal(forksafe_unregister(lock), 0);
            assert_int_equal(forksafe_unregister(other), 0);
            assert_int_equal(forksafe_unregister(ops), 0);
            dlclose(still);
            fork_both_ways();
            continue;
        }
        assert_int_equal(forksafe_lookup(lock, NULL), ENOENT);
        assert_int_equal(forksafe_lookup(other, NULL), ENOENT);
        assert_int_equal(forksafe_lookup(ops, NULL), ENOENT);
        fork_both_ways();
    }
    fs_idle_stop();
}

static void test_unload_tail_call_plugin_O0(void **state)
{
    (void)state;
    unload_tail_plugin("O0");
}

static void test_unload_tail_call_plugin_O2(void **state)
{
    (void)state;
    unload_tail_plugin("O2");
}

int main(int argc, char **argv)
{
    (void)argc;
    fs_watchdog(60);
    /* The plugins are built next to this program. */
    snprintf(plugin_dir, sizeof plugin_dir, "%s", argv[0]);
    char *slash = strrchr(plugin_dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(plugin_dir, sizeof plugin_dir, ".");
    snprintf(plugin_path, sizeof plugin_path, "%s/fs-plugin.so", plugin_dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unload_removes_entries),
        cmocka_unit_test(test_unload_tail_call_plugin_O0),
        cmocka_unit_test(test_unload_tail_call_plugin_O2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
