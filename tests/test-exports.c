/* SPDX-License-Identifier: MIT */
/*
 * test-exports.c: the shared library exports the public API and nothing
 * else (-fvisibility=hidden): every defined dynamic symbol is forksafe_*,
 * plus the documented __cxa_finalize hook, and the soname is versioned.
 */
#include "common.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

static char test_dir[PATH_MAX - 64];

static void test_only_public_symbols(void **state)
{
    (void)state;
    FILE *p = popen("nm -D --defined-only " FS_LIBDIR "/libforksafe.so", "r");
    assert_non_null(p);
    char line[512];
    int n = 0, public = 0;
    while (fgets(line, sizeof line, p)) {
        char addr[64], type[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3)
            continue;
        n++;
        if (strncmp(name, "forksafe_", 9) == 0) {
            public++;
            continue;
        }
        if (strcmp(name, "__cxa_finalize") == 0 ||
            strcmp(name, "__register_atfork") == 0)
            continue;
#ifndef __GLIBC__
        /* musl-gcc's crti.o/crtn.o define these global, in every shared
           object it links; they are not part of forksafe's interface. */
        if (strcmp(name, "_init") == 0 || strcmp(name, "_fini") == 0)
            continue;
#endif
        fail_msg("unexpected exported symbol: %s", name);
    }
    assert_int_equal(pclose(p), 0);
    assert_true(public >= 12); /* the core API at least */
    assert_true(n > 0);
}

/* A program that links the static archive, even with -rdynamic, exports
   none of the library's interposers: __cxa_finalize would otherwise catch
   every object's unload in the program (issue 10, item 7). */
static void test_static_archive_exports_no_interposer(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/fs-static-prog",
             test_dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    int bad = 0, n = 0;
    while (fgets(line, sizeof line, p)) {
        n++;
        if (strstr(line, "__cxa_finalize") ||
            strstr(line, "__register_atfork")) {
            print_error("exported: %s", line);
            bad++;
        }
    }
    assert_int_equal(pclose(p), 0);
    assert_true(n > 0); /* -rdynamic did export the program's symbols */
    assert_int_equal(bad, 0);
}

static void test_soname(void **state)
{
    (void)state;
    FILE *p = popen("readelf -d " FS_LIBDIR "/libforksafe.so", "r");
    assert_non_null(p);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, p))
        found |= strstr(line, "SONAME") && strstr(line, "[libforksafe.so.0]");
    pclose(p);
    assert_true(found);
}

int main(int argc, char **argv)
{
    (void)argc;
    fs_watchdog(60);
    snprintf(test_dir, sizeof test_dir, "%s", argv[0]);
    char *slash = strrchr(test_dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(test_dir, sizeof test_dir, ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_public_symbols),
        cmocka_unit_test(test_static_archive_exports_no_interposer),
        cmocka_unit_test(test_soname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
