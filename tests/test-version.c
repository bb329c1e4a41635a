/* SPDX-License-Identifier: MIT */
/*
 * test-version.c: the header's version macros agree with each other and
 * with the library a program runs against (forksafe_version() and
 * forksafe_version_string()), and the build gave the shared library the
 * same version (libforksafe.so.MAJOR.MINOR.PATCH, read by SConstruct from
 * include/forksafe.h, the one place the version is written).
 */
#include "common.h"

#include "forksafe.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void test_macros_agree(void **state)
{
    (void)state;
    assert_int_equal(FORKSAFE_VERSION_NUM, FORKSAFE_VERSION_MAJOR * 1000000 +
                                               FORKSAFE_VERSION_MINOR * 1000 +
                                               FORKSAFE_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FORKSAFE_VERSION_MAJOR,
             FORKSAFE_VERSION_MINOR, FORKSAFE_VERSION_PATCH);
    assert_string_equal(FORKSAFE_VERSION_STRING, want);
    /* Usable in #if, which is how programs test for a feature. */
#if FORKSAFE_VERSION_NUM < 2000
    fail_msg("FORKSAFE_VERSION_NUM is not usable in #if");
#endif
}

static void test_library_matches_header(void **state)
{
    (void)state;
    assert_int_equal(forksafe_version(), FORKSAFE_VERSION_NUM);
    assert_string_equal(forksafe_version_string(), FORKSAFE_VERSION_STRING);
    /* The same pointer every time: it is a constant, not a buffer. */
    assert_ptr_equal(forksafe_version_string(), forksafe_version_string());
}

static void test_shared_library_file_version(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/libforksafe.so.%s", FS_LIBDIR,
             FORKSAFE_VERSION_STRING);
    if (access(path, R_OK) != 0)
        fail_msg("%s does not exist: the build's version is not the "
                 "header's",
                 path);
}

int main(void)
{
    fs_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_macros_agree),
        cmocka_unit_test(test_library_matches_header),
        cmocka_unit_test(test_shared_library_file_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
