/* SPDX-License-Identifier: MIT */
/*
 * test-audit-json.c: the JSON report any consumer can trust. Names that
 * are not UTF-8 (a thread name, the program's path, an argument) come out
 * as valid UTF-8 with the exact bytes beside them in hex; a backslash and
 * a tab in a path are kept, not turned into '?'; every value has its type
 * (numbers, booleans, null). check_report.py validates each report
 * against docs/forksafe.schema.json before looking at it.
 */
#include "audit-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_thread_name_not_utf8(void **state)
{
    (void)state;
    char *argv[] = {AU_TARGET("target-names"), NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    /* "bad\xff\xfe\\\"\t" as the kernel keeps it (15 bytes at most). */
    au_check("--has=fork-with-threads", "--hex=thread_name=626164fffe5c2209");
    /* The text report shows such bytes escaped, never raw. */
    char *t = au_slurp(au_err);
    assert_non_null(strstr(t, "\"bad\\xff\\xfe\\\"\\x09\""));
    assert_null(strchr(t, '\xff'));
}

static void test_program_path_not_utf8_with_backslash_and_tab(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/t\xff\\\tx", au_tmp);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp %s '%s'", AU_TARGET("target-forker"), path);
    char *cp[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(au_run(cp, NULL, NULL, NULL, AU_RUN_MS), 0);
    char *argv[] = {path, "arg\xc3(", "\xe2\x82\xac", NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    /* exe: ".../t\xff\\\tx"; the argument has a broken sequence; the euro
       sign is valid UTF-8 and needs no twin. */
    au_check("--has=fork-with-threads", "--hex=exe=74ff5c0978",
             "--hex=command=617267c328");
}

static void test_exe_keeps_backslash_and_tab(void **state)
{
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/back\\slash\ttab", au_tmp);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp %s '%s'", AU_TARGET("target-forker"), path);
    char *cp[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(au_run(cp, NULL, NULL, NULL, AU_RUN_MS), 0);
    char *argv[] = {path, NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    char co[300];
    snprintf(co, sizeof co, "%s/exe.txt", au_tmp);
    char *py[] = {AU_PYTHON, "-c",
                  "import json,sys; d=json.load(open(sys.argv[1])); "
                  "print(sorted({f['exe'] for f in d['findings']}))",
                  au_json, NULL};
    assert_int_equal(au_run(py, NULL, co, NULL, AU_RUN_MS), 0);
    assert_non_null(strstr(au_slurp(co), "back\\\\slash\\ttab"));
}

static void test_details_are_typed(void **state)
{
    (void)state;
    char *argv[] = {AU_TARGET("target-held"), NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    /* The schema types every member; these spell a few out. */
    au_check("--detail-eq=lock-held-at-fork:registered=false",
             "--detail-eq=fork-with-threads:threads=2",
             "--detail-eq=fork-with-threads:call=\"fork\"",
             "--top=signal=null");
}

int main(void)
{
    fs_watchdog(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_name_not_utf8),
        cmocka_unit_test(test_program_path_not_utf8_with_backslash_and_tab),
        cmocka_unit_test(test_exe_keeps_backslash_and_tab),
        cmocka_unit_test(test_details_are_typed),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
