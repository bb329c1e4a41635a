/* SPDX-License-Identifier: MIT */
/*
 * test-exports.c: the shared library exports the public API and nothing
 * else (-fvisibility=hidden): every defined dynamic symbol is forksafe_*,
 * plus the documented __cxa_finalize hook, and the soname is versioned.
 */
#include "common.h"

#include <stdio.h>
#include <string.h>

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
        if (strcmp(name, "__cxa_finalize") == 0)
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

int main(void)
{
    fs_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_public_symbols),
        cmocka_unit_test(test_soname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
