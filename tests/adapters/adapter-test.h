/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/adapter-test.h: checks every adapter suite shares. The
 * one shape of an adapter (forksafe_<lib>_install() / _uninstall(), one
 * callback entry at the rank its header names) is asserted the same way
 * for each, and FS_TEST_SKIP (a cmocka skip pattern) lets CI run only the
 * tests that use the adapter under forksafe-audit (tests/adapters/
 * audit-adapters.sh skips the deliberately hazardous "*without*" ones).
 */
#ifndef FORKSAFE_TESTS_ADAPTER_TEST_H
#define FORKSAFE_TESTS_ADAPTER_TEST_H

#include "common.h"

#include <forksafe.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Apply FS_TEST_SKIP, if set, as cmocka's skip filter. First in main(). */
static inline void fs_adapter_test_filter(void)
{
    const char *skip = getenv("FS_TEST_SKIP");
    if (skip != NULL && *skip != '\0')
        cmocka_set_skip_filter(skip);
}

/* The rank of the registry entry named name in the JSON report, or -1 if
   there is none. */
static inline long fs_entry_rank(const char *name)
{
    static char report[1 << 18];
    FILE *fp = tmpfile();
    if (fp == NULL || forksafe_audit_write(fileno(fp), FORKSAFE_AUDIT_JSON))
        return -2;
    rewind(fp);
    size_t n = fread(report, 1, sizeof report - 1, fp);
    report[n] = '\0';
    fclose(fp);
    char needle[256];
    snprintf(needle, sizeof needle, "\"name\": \"%s\"", name);
    const char *p = strstr(report, needle);
    if (p == NULL)
        return -1;
    p = strstr(p, "\"rank\": ");
    return p ? strtol(p + 8, NULL, 10) : -3;
}

/* Check the install contract: with nothing tracked, install is
   idempotent and registers entry at rank, uninstall removes it and then
   says ENOENT, and a second install works; the adapter is left
   uninstalled. Returns 0, or the number of the step that failed (usable
   both in a test and in a forked scenario). */
static inline int fs_adapter_shape(int (*install)(void), int (*uninstall)(void),
                                   const char *adapter, const char *entry,
                                   unsigned rank)
{
    if (install() != 0 || install() != 0)
        return 1;
    if (forksafe_adapter_installed(adapter) != 1)
        return 2;
    if (fs_entry_rank(entry) != (long)rank)
        return 3;
    if (uninstall() != 0 || fs_entry_rank(entry) != -1)
        return 4;
    if (uninstall() != ENOENT)
        return 5;
    if (install() != 0 || fs_entry_rank(entry) != (long)rank)
        return 6;
    if (uninstall() != 0)
        return 7;
    return 0;
}

#endif
