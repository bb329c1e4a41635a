/* SPDX-License-Identifier: MIT */
/*
 * test-audit-ci.c: what a CI job uses besides the findings themselves:
 * --sarif FILE (validated against the official SARIF 2.1.0 schema by
 * check_sarif.py), --suppressions FILE and --baseline OLD.json, each with
 * the case it must change and a near miss it must not, and bad input
 * (a clear error, exit status 2, the program not run); frames with file,
 * line and inlined functions from DWARF, and without (ELF symbols only).
 */
#include "audit-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define THREADS AU_TARGET("target-threads")

static char path_a[300], path_b[300];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The line of target-threads.c that holds text (1-based), or 0. */
static int line_of(const char *file, const char *text)
{
    char path[400], buf[512];
    snprintf(path, sizeof path, "%s/%s", AUDIT_SRC, file);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, found = 0;
    while (!found && fgets(buf, sizeof buf, f)) {
        n++;
        found = strstr(buf, text) != NULL;
    }
    fclose(f);
    return found ? n : 0;
}

static int check_sarif(const char *a1, const char *a2, const char *a3)
{
    char *args[] = {AU_PYTHON,  AUDIT_SRC "/check_sarif.py",
                    path_a,     (char *)a1,
                    (char *)a2, (char *)a3,
                    NULL};
    char co[300];
    snprintf(co, sizeof co, "%s/check-sarif.txt", au_tmp);
    int st = au_run(args, NULL, co, co, AU_RUN_MS);
    if (st != 0)
        fprintf(stderr, "%s\n", au_slurp(co));
    return st;
}

/* ------------------------------------------------------------ SARIF */

static void test_sarif_is_valid_with_rule_level_and_location(void **state)
{
    (void)state;
    snprintf(path_a, sizeof path_a, "%s/report.sarif", au_tmp);
    const char *opts[] = {"--sarif", path_a, NULL};
    char *argv[] = {THREADS, NULL};
    assert_int_equal(au_audit(opts, argv), 0);
    char loc[200];
    snprintf(loc, sizeof loc,
             "--location=fork-with-threads=tests/audit/target-threads.c:%d",
             line_of("target-threads.c", "pid_t pid = fork();"));
    /* Without libdw the audit names functions only: no file:line. */
    assert_int_equal(check_sarif("--results=1",
                                 "--rule=fork-with-threads=warning",
                                 FS_HAVE_LIBDW ? loc : NULL),
                     0);
}

static void test_sarif_levels_follow_severity(void **state)
{
    (void)state;
    /* An error (child-deadlock) and a note (raw-atfork-handler is info). */
    snprintf(path_a, sizeof path_a, "%s/deadlock.sarif", au_tmp);
    const char *opts[] = {"--sarif", path_a, "--grace-ms", "200", NULL};
    char *argv[] = {AU_TARGET("target-held"), "deadlock", NULL};
    assert_int_equal(au_audit(opts, argv), 0);
    assert_int_equal(
        check_sarif("--rule=child-deadlock=error",
                    FS_HAVE_LIBDW ? "--location=child-deadlock=target-held.c:*"
                                  : NULL,
                    NULL),
        0);
    char *at[] = {AU_TARGET("target-atfork"), NULL};
    assert_int_equal(au_audit(opts, at), 0);
    assert_int_equal(check_sarif("--rule=raw-atfork-handler=note", NULL, NULL),
                     0);
}

static void test_sarif_of_a_clean_run_is_valid_and_empty(void **state)
{
    (void)state;
    snprintf(path_a, sizeof path_a, "%s/clean.sarif", au_tmp);
    const char *opts[] = {"--sarif", path_a, NULL};
    char *argv[] = {AU_TARGET("target-clean"), NULL};
    assert_int_equal(au_audit(opts, argv), 0);
    assert_int_equal(check_sarif("--results=0", NULL, NULL), 0);
}

static void test_sarif_unwritable_is_a_clear_error(void **state)
{
    (void)state;
    char marker[300], cmd[400];
    snprintf(marker, sizeof marker, "%s/ran", au_tmp);
    snprintf(cmd, sizeof cmd, "touch %s", marker);
    const char *opts[] = {"--sarif", "/nonexistent-dir/r.sarif", NULL};
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(au_audit(opts, argv), 2);
    assert_non_null(strstr(au_slurp(au_err), "cannot write the SARIF report"));
    assert_int_equal(access(marker, F_OK), -1); /* not run */
    /* Nor is the JSON report touched: a new one is not left behind empty,
       an earlier one keeps its contents. */
    assert_int_equal(access(au_json, F_OK), -1);
    snprintf(path_b, sizeof path_b, "%s/earlier.json", au_tmp);
    write_file(path_b, "earlier");
    char *args[] = {
        (char *)au_cli(),           "--json", path_b,      "--sarif",
        "/nonexistent-dir/r.sarif", "--",     "/bin/true", NULL};
    assert_int_equal(au_run(args, NULL, au_out, au_err, AU_RUN_MS), 2);
    assert_string_equal(au_slurp(path_b), "earlier");
}

/* ------------------------------------------------------------ frames */

static void test_frames_name_file_line_and_inlined_functions(void **state)
{
    (void)state;
    if (!FS_HAVE_LIBDW) {
        print_message("    (skipped: built without libdw, no DWARF frames)\n");
        skip();
    }
    char *argv[] = {AU_TARGET("target-rules"), "unsafe-inline", NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    char line[80];
    snprintf(line, sizeof line, "--frame=unsafe-call-in-child:call:line=%d",
             line_of("target-rules.c", "/* the inlined call */"));
    au_check(
        "--frame=unsafe-call-in-child:call:file=tests/audit/target-rules.c",
        line, "--frame=unsafe-call-in-child:call:function=child_inline",
        "--frame=unsafe-call-in-child:call:inlined=take_inline");
}

static void test_frames_without_dwarf_name_functions_only(void **state)
{
    (void)state;
    char *argv[] = {THREADS, NULL};
    setenv("FORKSAFE_AUDIT_NO_DWARF", "1", 1);
    int st = au_audit(NULL, argv);
    unsetenv("FORKSAFE_AUDIT_NO_DWARF");
    assert_int_equal(st, 0);
    au_check("--frame=fork-with-threads:fork-call:function=main",
             "--frame=fork-with-threads:fork-call:line=None",
             "--frame=fork-with-threads:fork-call:file=None");
}

/* The CLI built without libdw (forksafe-audit-nodw, next to the real one
   where libdw is there): frames name functions from the symbol tables,
   with no file or line. */
static void test_frames_of_a_build_without_libdw(void **state)
{
    (void)state;
    if (AUDIT_CLI_NODW[0] == '\0') {
        print_message("    (skipped: this build has no libdw to leave out)\n");
        skip();
    }
    char *argv[] = {THREADS, NULL};
    setenv("FS_AUDIT_TEST_CLI", AUDIT_CLI_NODW, 1);
    int st = au_audit(NULL, argv);
    unsetenv("FS_AUDIT_TEST_CLI");
    assert_int_equal(st, 0);
    au_check("--frame=fork-with-threads:fork-call:function=main",
             "--frame=fork-with-threads:fork-call:line=None",
             "--frame=fork-with-threads:fork-call:file=None");
}

/* ------------------------------------------------------------ suppressions */

static int audit_supp(const char *text, char *const *argv)
{
    snprintf(path_a, sizeof path_a, "%s/rules.supp", au_tmp);
    write_file(path_a, text);
    const char *opts[] = {"--suppressions", path_a, "--fail-on", "warning",
                          NULL};
    return au_audit(opts, argv);
}

static void test_suppression_matches_kind_and_function(void **state)
{
    (void)state;
    char *argv[] = {THREADS, NULL};
    assert_int_equal(audit_supp("# the census thread is known\n"
                                "\n"
                                "fork-with-threads function=main "
                                "object=*/target-threads  # trailing\n",
                                argv),
                     0);
    au_check("--kinds=", "--suppressed=1");
    /* The rule's use is counted in the text report. */
    assert_non_null(strstr(au_slurp(au_err), "rules.supp:3"));
}

static void test_suppression_near_miss_does_not_match(void **state)
{
    (void)state;
    char *argv[] = {THREADS, NULL};
    /* Right kind, wrong function; right function, wrong kind. */
    assert_int_equal(audit_supp("fork-with-threads function=not_main\n"
                                "lock-held-at-fork function=main\n",
                                argv),
                     3);
    au_check("--kinds=fork-with-threads", "--suppressed=0");
}

static void test_suppression_kind_glob(void **state)
{
    (void)state;
    char *argv[] = {THREADS, NULL};
    assert_int_equal(audit_supp("fork-* exe=*/target-threads\n", argv), 0);
    au_check("--kinds=", "--suppressed=1");
}

static void test_suppression_bad_file_is_a_clear_error(void **state)
{
    (void)state;
    char marker[300], cmd[400];
    snprintf(marker, sizeof marker, "%s/ran", au_tmp);
    snprintf(cmd, sizeof cmd, "touch %s", marker);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(audit_supp("no-such-kind function=x\n", argv), 2);
    assert_non_null(strstr(au_slurp(au_err), "rules.supp:1"));
    assert_int_equal(audit_supp("fork-with-threads colour=red\n", argv), 2);
    assert_non_null(strstr(au_slurp(au_err), "KEY=GLOB"));
    const char *missing[] = {"--suppressions", "/nonexistent/x.supp", NULL};
    assert_int_equal(au_audit(missing, argv), 2);
    assert_int_equal(access(marker, F_OK), -1); /* never run */
}

/* ------------------------------------------------------------ baseline */

static void test_baseline_passes_known_findings(void **state)
{
    (void)state;
    char *argv[] = {THREADS, NULL};
    snprintf(path_b, sizeof path_b, "%s/old.json", au_tmp);
    assert_int_equal(au_audit(NULL, argv), 0);
    assert_int_equal(rename(au_json, path_b), 0);
    const char *opts[] = {"--baseline", path_b, "--fail-on", "warning", NULL};
    /* The same finding in a later run (other pids, other addresses). */
    assert_int_equal(au_audit(opts, argv), 0);
    au_check("--kinds=fork-with-threads",
             "--baseline-state=fork-with-threads=unchanged");
}

static void test_baseline_fails_on_new_findings(void **state)
{
    (void)state;
    snprintf(path_b, sizeof path_b, "%s/old-clean.json", au_tmp);
    char *clean[] = {AU_TARGET("target-clean"), NULL};
    assert_int_equal(au_audit(NULL, clean), 0);
    assert_int_equal(rename(au_json, path_b), 0);
    const char *opts[] = {"--baseline", path_b, "--fail-on", "warning", NULL};
    char *argv[] = {THREADS, NULL};
    assert_int_equal(au_audit(opts, argv), 3);
    au_check("--kinds=fork-with-threads",
             "--baseline-state=fork-with-threads=new");
}

static void test_baseline_bad_file_is_a_clear_error(void **state)
{
    (void)state;
    snprintf(path_b, sizeof path_b, "%s/bad.json", au_tmp);
    write_file(path_b, "{");
    const char *opts[] = {"--baseline", path_b, NULL};
    char *argv[] = {"/bin/true", NULL};
    assert_int_equal(au_audit(opts, argv), 2);
    assert_non_null(strstr(au_slurp(au_err), "is not JSON"));
    write_file(path_b, "{\"schema\": \"something-else\"}");
    assert_int_equal(au_audit(opts, argv), 2);
}

int main(void)
{
    fs_watchdog(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sarif_is_valid_with_rule_level_and_location),
        cmocka_unit_test(test_sarif_levels_follow_severity),
        cmocka_unit_test(test_sarif_of_a_clean_run_is_valid_and_empty),
        cmocka_unit_test(test_sarif_unwritable_is_a_clear_error),
        cmocka_unit_test(test_frames_name_file_line_and_inlined_functions),
        cmocka_unit_test(test_frames_without_dwarf_name_functions_only),
        cmocka_unit_test(test_frames_of_a_build_without_libdw),
        cmocka_unit_test(test_suppression_matches_kind_and_function),
        cmocka_unit_test(test_suppression_near_miss_does_not_match),
        cmocka_unit_test(test_suppression_kind_glob),
        cmocka_unit_test(test_suppression_bad_file_is_a_clear_error),
        cmocka_unit_test(test_baseline_passes_known_findings),
        cmocka_unit_test(test_baseline_fails_on_new_findings),
        cmocka_unit_test(test_baseline_bad_file_is_a_clear_error),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
