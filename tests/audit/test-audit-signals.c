/* SPDX-License-Identifier: MIT */
/*
 * test-audit-signals.c: SIGTERM, SIGHUP and SIGQUIT sent to forksafe-audit
 * reach the program; the report of what was seen is still written, and
 * the temporary record directory is removed. A daemon that outlives the
 * audit is marked still running, and its later records go nowhere: the
 * temporary directory does not come back.
 */
#include "audit-util.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpd[300], tmpenv[320];

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Start the CLI on target-wait with TMPDIR=tmpd; returns once the program
   printed "ready". */
static pid_t start_waiting(const char *mode)
{
    snprintf(tmpd, sizeof tmpd, "%s/tmpdir", au_tmp);
    mkdir(tmpd, 0700);
    snprintf(tmpenv, sizeof tmpenv, "TMPDIR=%s", tmpd);
    const char *envs[] = {tmpenv, NULL};
    char *argv[] = {
        AUDIT_CLI,    "--json", au_json, "--", AU_TARGET("target-wait"),
        (char *)mode, NULL};
    unlink(au_json);
    unlink(au_out); /* "ready" from the last test must not count */
    pid_t cli = au_start(argv, envs, au_out, au_err);
    uint64_t t0 = fs_now_ms();
    while (!strstr(au_slurp(au_out), "ready")) {
        assert_true(fs_now_ms() - t0 < 20000);
        usleep(5000);
    }
    return cli;
}

static void forwarded(int sig, const char *mode, int want_status,
                      const char *want_out)
{
    pid_t cli = start_waiting(mode);
    assert_int_equal(kill(cli, sig), 0);
    /* PROGRAM killed by the signal: forksafe-audit dies of it too. */
    int code = -1;
    assert_int_equal(fs_wait(cli, 20000, &code),
                     want_status > 128 ? FS_SIGNALED : FS_EXITED);
    assert_int_equal(code, want_status > 128 ? want_status - 128 : want_status);
    assert_string_equal(au_slurp(au_out), want_out);
    char top[64];
    snprintf(top, sizeof top, "--top=interrupted_by=%d", sig);
    au_check("--has=fork-with-threads", top, "--top=complete=false");
    assert_non_null(strstr(au_slurp(au_err), "forwarded"));
    assert_int_equal(dir_entries(tmpd), 0);
}

static void test_sigterm_is_forwarded(void **state)
{
    (void)state;
    forwarded(SIGTERM, "", 128 + SIGTERM, "ready\n");
}

static void test_sighup_is_forwarded(void **state)
{
    (void)state;
    forwarded(SIGHUP, "", 128 + SIGHUP, "ready\n");
}

static void test_sigquit_is_forwarded(void **state)
{
    (void)state;
    forwarded(SIGQUIT, "", 128 + SIGQUIT, "ready\n");
}

static void test_program_that_handles_the_signal_exits_its_way(void **state)
{
    (void)state;
    forwarded(SIGTERM, "trap", 0, "ready\ngot TERM\n");
    forwarded(SIGHUP, "trap", 0, "ready\ngot HUP\n");
}

static void test_daemon_outliving_the_audit(void **state)
{
    (void)state;
    snprintf(tmpd, sizeof tmpd, "%s/tmpdir", au_tmp);
    mkdir(tmpd, 0700);
    snprintf(tmpenv, sizeof tmpenv, "TMPDIR=%s", tmpd);
    const char *envs[] = {tmpenv, NULL};
    char *argv[] = {
        AUDIT_CLI, "--json", au_json, "--", AU_TARGET("target-wait"),
        "daemon",  NULL};
    assert_int_equal(au_run(argv, envs, au_out, au_err, AU_RUN_MS), 0);
    assert_string_equal(au_slurp(au_out), "daemon started\n");
    au_check("--still-running");
    assert_non_null(strstr(au_slurp(au_err), "still running"));
    assert_int_equal(dir_entries(tmpd), 0);
    /* The daemon forks with a thread 2 s after it started, then exits:
       its records must not bring the directory back. */
    sleep(3);
    assert_int_equal(dir_entries(tmpd), 0);
}

int main(void)
{
    fs_watchdog(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_is_forwarded),
        cmocka_unit_test(test_sighup_is_forwarded),
        cmocka_unit_test(test_sigquit_is_forwarded),
        cmocka_unit_test(test_program_that_handles_the_signal_exits_its_way),
        cmocka_unit_test(test_daemon_outliving_the_audit),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
