/* SPDX-License-Identifier: MIT */
/*
 * test-run-cli.c: forksafe-run, the command. It leaves a program's output,
 * exit status and end by a signal as they are (without a report it is the
 * program: it execs it in its own place), follows descendants also when
 * they empty their environment (which they then see as they made it),
 * says which programs it cannot cover, answers bad input with a clear
 * error without running anything, and has a man page that renders
 * without warnings.
 */
#include "run-util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static char *copy(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* Same stdout, stderr and status without forksafe-run, under it without
   a report, and with a JSON report (which adds nothing to either). */
static void test_output_and_status_unchanged(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-output"), "exit", "7", NULL};
    assert_int_equal(ru_plain(argv), 7);
    char *out = copy(ru_slurp(ru_out)), *err = copy(ru_slurp(ru_err));
    assert_non_null(strstr(out, "out: from the child"));
    assert_int_equal(ru_cli(NULL, argv), 7);
    assert_string_equal(ru_slurp(ru_out), out);
    assert_string_equal(ru_slurp(ru_err), err);
    const char *opts[] = {"--json", ru_json, NULL};
    assert_int_equal(ru_cli(opts, argv), 7);
    assert_string_equal(ru_slurp(ru_out), out);
    assert_string_equal(ru_slurp(ru_err), err);
    ru_check("--eq", "exit_status=7", "--eq", "signal=null", "--eq",
             "forks.total=1", "--eq", "forks.threaded=1");
    free(out);
    free(err);
}

/* A program killed by a signal: forksafe-run ends by the same signal,
   with and without a report. */
static void test_death_by_signal_unchanged(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-output"), "abort", NULL};
    assert_int_equal(ru_plain(argv), 128 + SIGABRT);
    assert_true(ru_signaled);
    assert_int_equal(ru_cli(NULL, argv), 128 + SIGABRT);
    assert_true(ru_signaled);
    assert_int_equal(ru_cli_report(NULL, argv), 128 + SIGABRT);
    assert_true(ru_signaled);
    ru_check("--eq", "signal=6", "--eq", "exit_status=134");
    assert_non_null(strstr(ru_slurp(ru_text), "killed by signal 6"));
}

/* Without a report, forksafe-run becomes the program (exec): its parent
   is the caller, and nothing stays behind. */
static void test_without_report_it_is_the_program(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-output"), "ppid", NULL};
    assert_int_equal(ru_cli(NULL, argv), 0);
    char want[32];
    snprintf(want, sizeof want, "%ld\n", (long)getpid());
    assert_string_equal(ru_slurp(ru_out), want);
}

/* Real programs nobody here wrote print the same and exit the same. */
static void same_both_ways(char *const *argv, int status)
{
    assert_int_equal(ru_plain(argv), status);
    char *out = copy(ru_slurp(ru_out)), *err = copy(ru_slurp(ru_err));
    assert_int_equal(ru_cli(NULL, argv), status);
    assert_string_equal(ru_slurp(ru_out), out);
    assert_string_equal(ru_slurp(ru_err), err);
    free(out);
    free(err);
}

static void test_real_programs_unchanged(void **state)
{
    (void)state;
    char *sh[] = {"/bin/bash", "-c",
                  "for i in 1 2 3; do echo $i; done | sort -r | tr '\\n' ' ';"
                  " (exit 3)",
                  NULL};
    same_both_ways(sh, 3);
    char *py[] = {RU_PYTHON, "-c",
                  "import os, threading, sys\n"
                  "t = threading.Thread(target=lambda: None); t.start(); "
                  "t.join()\n"
                  "pid = os.fork()\n"
                  "if pid == 0:\n    print('child'); sys.stdout.flush(); "
                  "os._exit(5)\n"
                  "print('parent', os.waitstatus_to_exitcode(os.waitpid(pid, "
                  "0)[1]))\n",
                  NULL};
    same_both_ways(py, 0);
    char *xz[] = {"/bin/sh", "-c",
                  "printf 'forksafe %.0s' $(seq 1 500) | xz -T2 -c | xz -d |"
                  " wc -c",
                  NULL};
    same_both_ways(xz, 0);
}

/* Descendants are covered, also after the environment was emptied on
   the way (env -i): every fork of the innermost program is protected. */
static void test_descendants_are_covered(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c",
                    "exec /usr/bin/env -i " RU_TARGET("target-hang") " normal",
                    NULL};
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    int hung, n, wrong;
    ru_counts(ru_slurp(ru_out), "hung", &hung, &n, &wrong);
    assert_int_equal(hung, 0);
    assert_int_equal(wrong, 0);
    ru_check("--eq", "forks.total=200", "--min", "processes=3", "--eq",
             "complete=true");
}

/* ... and see the environment they were given. */
static void test_emptied_environment_stays_empty(void **state)
{
    (void)state;
    char *argv[] = {"/usr/bin/env", "-i", RU_TARGET("target-output"), "env",
                    NULL};
    assert_int_equal(ru_cli(NULL, argv), 0);
    assert_string_equal(ru_slurp(ru_out), "");
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    assert_string_equal(ru_slurp(ru_out), "");
    char *env[] = {"/usr/bin/env", "-i", "/usr/bin/env", NULL};
    assert_int_equal(ru_cli(NULL, env), 0);
    assert_string_equal(ru_slurp(ru_out), "");
}

/* A statically linked program cannot load the library: said, not
   hidden (a warning without a report; "not covered" in it). */
static void test_static_program_is_not_covered(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-hang-static"), "normal", "20", NULL};
    assert_int_equal(ru_cli(NULL, argv), 0);
    assert_non_null(strstr(ru_slurp(ru_err), "cannot be covered"));
    assert_non_null(strstr(ru_slurp(ru_err), "statically linked"));
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    ru_check("--eq", "complete=false", "--len", "not_covered=1", "--eq",
             "not_covered.0.reason=\"static\"", "--eq",
             "not_covered.0.via=\"command-line\"");
    assert_non_null(strstr(ru_slurp(ru_text), "not covered"));
    /* Started from a covered program, by exec. */
    char *sh[] = {"/bin/sh", "-c", RU_TARGET("target-hang-static") " normal 5",
                  NULL};
    assert_int_equal(ru_cli_report(NULL, sh), 0);
    ru_check("--eq", "complete=false", "--len", "not_covered=1", "--eq",
             "not_covered.0.reason=\"static\"");
}

/* Bad input: a clear error, exit 2, and the program is not run. */
static void test_usage_and_bad_input(void **state)
{
    (void)state;
    char marker[300];
    snprintf(marker, sizeof marker, "%s/ran", ru_tmp);
    char touch[400];
    snprintf(touch, sizeof touch, "touch %s", marker);
    char *prog[] = {"/bin/sh", "-c", touch, NULL};

    char *help[] = {RUN_CLI, "--help", NULL};
    assert_int_equal(ru_run(help, NULL, ru_out, ru_err, RU_RUN_MS), 0);
    assert_non_null(strstr(ru_slurp(ru_out), "usage: forksafe-run"));
    assert_non_null(strstr(ru_slurp(ru_out), "--timeout-ms"));
    char *version[] = {RUN_CLI, "--version", NULL};
    assert_int_equal(ru_run(version, NULL, ru_out, ru_err, RU_RUN_MS), 0);
    assert_non_null(strstr(ru_slurp(ru_out), "forksafe-run 0."));
    char *none[] = {RUN_CLI, NULL};
    assert_int_equal(ru_run(none, NULL, ru_out, ru_err, RU_RUN_MS), 2);
    assert_non_null(strstr(ru_slurp(ru_err), "usage:"));

    static const char *const bad[][3] = {
        {"--timeout-ms", "0", "--timeout-ms"},
        {"--timeout-ms", "ten", "--timeout-ms"},
        {"--timeout-ms", "999999999999", "--timeout-ms"},
        {"--frobnicate", NULL, "unknown"},
        {"--report", "/nonexistent-dir/r.txt", "cannot write"},
        {"--json", "/nonexistent-dir/r.json", "cannot write"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *opts[] = {bad[i][0], bad[i][1], NULL};
        assert_int_equal(ru_cli(opts, prog), 2);
        assert_non_null(strstr(ru_slurp(ru_err), bad[i][2]));
        struct stat st;
        assert_int_not_equal(stat(marker, &st), 0);
    }
    char *missing[] = {"/nonexistent/program", NULL};
    assert_int_equal(ru_cli(NULL, missing), 127);
    assert_non_null(
        strstr(ru_slurp(ru_err), "cannot run /nonexistent/program"));
    assert_int_equal(ru_cli(NULL, prog), 0);
    struct stat st;
    assert_int_equal(stat(marker, &st), 0);
}

/* A report to a FIFO is written once, to the reader that was there when
   the run started, and forksafe-run ends with PROGRAM's status; with no
   reader yet, it waits for one before running anything, as any writer of
   a FIFO does, and SIGTERM ends that wait (the program never ran). */
static void test_report_to_a_fifo(void **state)
{
    (void)state;
    char script[2048];
    snprintf(script, sizeof script,
             "f=%s/fifo; rm -f $f; mkfifo $f || exit 90\n"
             "cat $f > %s/got & r=$!\n"
             "%s --report $f /bin/sh -c 'exit 3'; s=$?\n"
             "wait $r; echo \"status $s\"; cat %s/got\n"
             "exit 0\n",
             ru_tmp, ru_tmp, RUN_CLI, ru_tmp);
    char *argv[] = {"/bin/sh", "-c", script, NULL};
    assert_int_equal(ru_run(argv, NULL, ru_out, ru_err, 20000), 0);
    const char *out = ru_slurp(ru_out);
    fprintf(stderr, "%s", out);
    assert_non_null(strstr(out, "status 3\n"));
    assert_non_null(strstr(out, "program exited with status 3"));

    /* No reader: it waits before running anything; SIGTERM ends it. */
    char fifo[300], ran[300], touch[400];
    snprintf(fifo, sizeof fifo, "%s/fifo", ru_tmp);
    snprintf(ran, sizeof ran, "%s/ran", ru_tmp);
    snprintf(touch, sizeof touch, "touch %s", ran);
    unlink(ran);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fe = open(ru_err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fe < 0)
            _exit(120);
        dup2(fe, 2);
        signal(SIGTERM, SIG_DFL);
        execl(RUN_CLI, RUN_CLI, "--json", fifo, "/bin/sh", "-c", touch,
              (char *)NULL);
        _exit(121);
    }
    struct timespec d = {0, 500 * 1000 * 1000};
    nanosleep(&d, NULL);
    kill(pid, SIGTERM);
    int code = 0;
    assert_int_equal(fs_wait(pid, 10000, &code), FS_SIGNALED);
    assert_int_equal(code, SIGTERM);
    struct stat st;
    assert_int_not_equal(stat(ran, &st), 0);
    assert_non_null(strstr(ru_slurp(ru_err), "waiting for a reader"));
}

/* The man page renders without warnings. */
static void test_man_page_renders(void **state)
{
    (void)state;
    if (access("/usr/bin/man", X_OK) != 0) {
        skip();
        return;
    }
    char *argv[] = {"/usr/bin/man", "--warnings", "-l",
                    RUN_TOP "/docs/man/forksafe-run.1", NULL};
    const char *envs[] = {"MANWIDTH=80", "MAN_KEEP_FORMATTING=0", NULL};
    assert_int_equal(ru_run(argv, envs, ru_out, ru_err, RU_RUN_MS), 0);
    assert_string_equal(ru_slurp(ru_err), "");
    assert_non_null(strstr(ru_slurp(ru_out), "forksafe-run"));
}

int main(void)
{
    fs_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_and_status_unchanged),
        cmocka_unit_test(test_death_by_signal_unchanged),
        cmocka_unit_test(test_without_report_it_is_the_program),
        cmocka_unit_test(test_real_programs_unchanged),
        cmocka_unit_test(test_descendants_are_covered),
        cmocka_unit_test(test_emptied_environment_stays_empty),
        cmocka_unit_test(test_static_program_is_not_covered),
        cmocka_unit_test(test_usage_and_bad_input),
        cmocka_unit_test(test_report_to_a_fifo),
        cmocka_unit_test(test_man_page_renders),
    };
    return cmocka_run_group_tests(tests, ru_setup, ru_teardown);
}
