/* SPDX-License-Identifier: MIT */
/*
 * test-audit.c: forksafe-audit end to end. Each test runs the real CLI on
 * a real program (a target from this folder, /bin/sh, or Debian's
 * python3) with the real interposer, then checks the exit status, the
 * program's own output, and the JSON report with check_report.py (schema
 * plus the expected findings). Nothing is mocked.
 */
#include "audit-util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON AU_PYTHON
#define TARGET AU_TARGET
#define audit  au_audit
#define slurp  au_slurp
#define json   au_json
#define out    au_out
#define err    au_err
#define tmpdir au_tmp
#define RUN_MS AU_RUN_MS
#define run    au_run

/* check_report.py with up to four expectations (NULL: none). */
static void check(const char *a1, const char *a2, const char *a3,
                  const char *a4)
{
    const char *a[4] = {a1, a2, a3, a4};
    const char *v[5] = {NULL, NULL, NULL, NULL, NULL};
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (a[i])
            v[n++] = a[i];
    au_check_args(v[0], v[1], v[2], v[3], v[4]);
}

static void test_audit_clean_program_has_no_findings(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-clean"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    assert_string_equal(slurp(out), "counter 2000\n");
    check("--kinds", "", NULL, NULL);
}

static void test_audit_fork_with_threads(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-threads"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=fork-with-threads", "--thread-tid-file", out,
          "--frame=fork-with-threads:thread-start:function=announce_main");
}

/* Each process reports once per fork site: a child forgets the marks its
   parent made, and its own fork from the same site is a finding of its
   own (two, from two pids). */
static void test_audit_child_reports_same_site_again(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-refork"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    assert_string_equal(slurp(out), "refork: 0\n");
    check("--kinds=fork-with-threads", "--count", "fork-with-threads=2",
          NULL);
}

static void test_audit_lock_held_at_fork(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-held"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=fork-with-threads,lock-held-at-fork",
          "--detail-eq=lock-held-at-fork:registered=false",
          "--frame=lock-held-at-fork:lock-taken:function=holder_main", NULL);
}

static void test_audit_child_deadlock_ends_child(void **state)
{
    (void)state;
    const char *opts[] = {"--grace-ms", "200", NULL};
    char *argv[] = {TARGET("target-held"), "deadlock", NULL};
    uint64_t t0 = fs_now_ms();
    /* The target exits 0 only if its child ended with status 86. */
    assert_int_equal(audit(opts, argv), 0);
    assert_true(fs_now_ms() - t0 < 8000);
    /* The blocking lock call is child-deadlock's, not also an
       unsafe-call-in-child (docs/audit.md, "When each finding fires"). */
    check("--kinds=fork-with-threads,lock-held-at-fork,child-deadlock",
          "--detail-eq=child-deadlock:exit_status=86",
          "--frame=child-deadlock:lock-call:function=main",
          "--frame=child-deadlock:lock-taken:function=holder_main");
    /* The grace period is in the record, typed, and in the sentence. */
    check("--detail-eq=child-deadlock:grace_ms=200",
          "--message=child-deadlock~ended after 200 ms with status 86",
          "--detail-eq=child-deadlock:registered=false", NULL);
}

static void test_audit_pshared_lock_is_not_a_deadlock(void **state)
{
    (void)state;
    /* Another process can release a process-shared mutex: the child waits
       past the grace period, gets it, and exits 0 (the target checks). */
    const char *opts[] = {"--grace-ms", "100", NULL};
    char *argv[] = {TARGET("target-held"), "pshared", NULL};
    assert_int_equal(audit(opts, argv), 0);
    /* Nor is it "held at fork": the parent's thread lets go of it for
       the child too. */
    check("--kinds=fork-with-threads", NULL, NULL, NULL);
}

/* Each kind's must-fire case and near miss is in test-audit-rules.c; these
   are the end-to-end cases with the simple targets. */
static void test_audit_raw_atfork_handler(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-atfork"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=raw-atfork-handler",
          "--frame=raw-atfork-handler:prepare:function=target_prepare",
          "--frame=raw-atfork-handler:child:function=target_child",
          "--detail=raw-atfork-handler:object~target-atfork");
    /* The only registration in the process: first in every phase. */
    check("--detail-eq=raw-atfork-handler:prepare_position=1",
          "--detail-eq=raw-atfork-handler:child_position=1",
          "--detail-eq=raw-atfork-handler:registrations=1",
          "--detail-eq=raw-atfork-handler:seq=1");
}

static void test_audit_lock_order_violation(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-order"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=lock-order-violation",
          "--detail=lock-order-violation:held_name~order.cache",
          "--detail=lock-order-violation:taken_name~order.queue",
          "--frame=lock-order-violation:taken:function=take_inner");
}

static void test_audit_fd_leak_on_exec(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-fdleak"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=fd-leak-on-exec",
          "--detail=fd-leak-on-exec:target~fsaudit-leak", NULL, NULL);
}

static void test_audit_fail_on_statuses(void **state)
{
    (void)state;
    /* A fork with a thread alive whose child runs on: a warning. */
    char *shared[] = {TARGET("target-threads"), NULL};
    char *clean[] = {TARGET("target-clean"), NULL};
    char *dead[] = {TARGET("target-held"), "deadlock", NULL};
    const char *warn[] = {"--fail-on", "warning", NULL};
    const char *error[] = {"--fail-on", "error", NULL};
    const char *error_fast[] = {"--fail-on", "error", "--grace-ms", "100",
                                NULL};
    const char *bad[] = {"--fail-on", "sometimes", NULL};
    assert_int_equal(audit(warn, shared), 3);
    assert_non_null(strstr(slurp(err), "failing (exit 3)"));
    assert_int_equal(audit(error, shared), 0);
    assert_int_equal(audit(warn, clean), 0);
    assert_int_equal(audit(error_fast, dead), 3);
    assert_int_equal(audit(bad, clean), 2);
}

static void test_audit_keeps_program_status(void **state)
{
    (void)state;
    char *five[] = {"/bin/sh", "-c", "echo out; exit 5", NULL};
    const char *warn[] = {"--fail-on", "warning", NULL};
    assert_int_equal(audit(warn, five), 5);
    assert_string_equal(slurp(out), "out\n");
    char *killed[] = {"/bin/sh", "-c", "kill -TERM $$", NULL};
    assert_int_equal(audit(NULL, killed), 128 + 15);
    char *missing[] = {"/nonexistent/program", NULL};
    assert_int_equal(audit(NULL, missing), 127);
}

static void test_audit_bad_json_path_is_a_clear_error(void **state)
{
    (void)state;
    char marker[300], cmd[400];
    snprintf(marker, sizeof marker, "%s/ran", tmpdir);
    snprintf(cmd, sizeof cmd, "touch %s", marker);
    char *args[] = {AUDIT_CLI, "--json",  "/nonexistent-dir/r.json",
                    "--",      "/bin/sh", "-c",
                    cmd,       NULL};
    assert_int_equal(run(args, NULL, out, err, RUN_MS), 2);
    assert_non_null(strstr(slurp(err), "cannot write the JSON report"));
    assert_int_equal(access(marker, F_OK), -1); /* not run */
    args[2] = "";                               /* malformed: an empty path */
    assert_int_equal(run(args, NULL, out, err, RUN_MS), 2);
    assert_non_null(strstr(slurp(err), "cannot write the JSON report"));
    assert_int_equal(access(marker, F_OK), -1);
}

static void test_audit_unwritable_record_dir_is_silent(void **state)
{
    (void)state;
    /* The interposer used directly, with a directory it cannot write:
       the program must behave exactly as without it. */
    static const char *envs[] = {"LD_PRELOAD=" AUDIT_PRELOAD,
                                 "FORKSAFE_AUDIT_DIR=/nonexistent-dir/x", NULL};
    char *argv[] = {TARGET("target-stdio"), NULL};
    assert_int_equal(run(argv, envs, out, err, RUN_MS), 0);
    assert_string_equal(slurp(out), "pending");
    assert_string_equal(slurp(err), "");
}

static void robust(const char *mode)
{
    char *argv[] = {TARGET("target-robust"), (char *)mode, AUDIT_BIN, NULL};
    char want[64];
    snprintf(want, sizeof want, "%s: ok\n", mode);
    assert_int_equal(audit(NULL, argv), 0);
    assert_string_equal(slurp(out), want);
    check(NULL, NULL, NULL, NULL);
}

static void test_audit_robust_fork_in_signal_handler(void **state)
{
    (void)state;
    robust("signal");
    check("--has=fork-with-threads", NULL, NULL, NULL);
}

static void test_audit_robust_vfork(void **state)
{
    (void)state;
    robust("vfork");
}

static void test_audit_robust_posix_spawn(void **state)
{
    (void)state;
    robust("spawn");
}

static void test_audit_robust_Fork(void **state)
{
    (void)state;
    robust("_Fork");
    check("--has=fork-with-threads", NULL, NULL, NULL);
}

static void test_audit_robust_clone_thread(void **state)
{
    (void)state;
    robust("clone");
    /* The raw clone() thread is seen by the census, without a start
       routine (it never went through pthread_create). */
    check("--has=fork-with-threads", NULL, NULL, NULL);
}

static void test_audit_robust_dlopen_after_start(void **state)
{
    (void)state;
    robust("dlopen");
    check("--kinds=raw-atfork-handler",
          "--frame=raw-atfork-handler:prepare:object=audit-plugin.so",
          "--detail=raw-atfork-handler:object~audit-plugin.so", NULL);
}

/* The CPython minor version /usr/bin/python3 runs (11 on Debian bookworm,
   13 on trixie), from the name of the binary it links to. */
static int python_minor(void)
{
    char path[PATH_MAX];
    int minor = 0;
    if (!realpath(PYTHON, path) ||
        sscanf(strrchr(path, '/') + 1, "python3.%d", &minor) != 1)
        fail_msg("cannot tell the version of %s", PYTHON);
    return minor;
}

/* CPython 3.13 made threading.Lock a PyMutex, a futex word of its own,
   which the interposer does not see (it sees sem_wait and pthread locks). */
static int python_lock_visible(void)
{
    if (python_minor() < 13)
        return 1;
    fprintf(stderr, "skipped: CPython 3.%d's threading.Lock is a PyMutex, "
                    "which the interposer does not see\n",
            python_minor());
    return 0;
}

static void test_audit_python_fork_with_threads(void **state)
{
    (void)state;
    char *argv[] = {PYTHON, AUDIT_SRC "/py_fork_threads.py", NULL};
    assert_int_equal(audit(NULL, argv), 0);
    char frame[128];
    snprintf(frame, sizeof frame,
             "--frame=fork-with-threads:thread-start:object=python3.%d",
             python_minor());
    check("--has=fork-with-threads", "--thread-tid-file", out, frame);
    /* threading.Lock is a semaphore in CPython: the holder is named. */
    if (python_lock_visible())
        check("--detail=lock-held-at-fork:lock_kind~semaphore",
              "--detail-eq=lock-held-at-fork:registered=false", NULL, NULL);
}

static void test_audit_python_child_deadlock(void **state)
{
    (void)state;
    if (!python_lock_visible())
        skip();
    /* The script exits 0 only if its child was ended with status 86. */
    const char *opts[] = {"--grace-ms", "200", NULL};
    char *argv[] = {PYTHON, AUDIT_SRC "/py_child_deadlock.py", NULL};
    assert_int_equal(audit(opts, argv), 0);
    char frame[128];
    snprintf(frame, sizeof frame,
             "--frame=child-deadlock:lock-call:object=python3.%d",
             python_minor());
    check("--has=child-deadlock", "--detail=child-deadlock:lock_kind~semaphore",
          frame, NULL);
}

static void test_audit_python_test_fork1_passes(void **state)
{
    (void)state;
    char *probe[] = {PYTHON, "-c", "import test.test_fork1", NULL};
    if (run(probe, NULL, NULL, NULL, RUN_MS) != 0) {
        fprintf(stderr, "skipped: CPython's test package is missing "
                        "(apt-get install libpython3.%d-testsuite)\n",
                python_minor());
        skip();
    }
    char *argv[] = {PYTHON, "-m", "test", "test_fork1", NULL};
    assert_int_equal(audit(NULL, argv), 0);
    assert_non_null(strstr(slurp(out), "SUCCESS"));
    check("--has=fork-with-threads", NULL, NULL, NULL);
}

int main(void)
{
    fs_watchdog(240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_clean_program_has_no_findings),
        cmocka_unit_test(test_audit_fork_with_threads),
        cmocka_unit_test(test_audit_child_reports_same_site_again),
        cmocka_unit_test(test_audit_lock_held_at_fork),
        cmocka_unit_test(test_audit_child_deadlock_ends_child),
        cmocka_unit_test(test_audit_pshared_lock_is_not_a_deadlock),
        cmocka_unit_test(test_audit_raw_atfork_handler),
        cmocka_unit_test(test_audit_lock_order_violation),
        cmocka_unit_test(test_audit_fd_leak_on_exec),
        cmocka_unit_test(test_audit_fail_on_statuses),
        cmocka_unit_test(test_audit_keeps_program_status),
        cmocka_unit_test(test_audit_bad_json_path_is_a_clear_error),
        cmocka_unit_test(test_audit_unwritable_record_dir_is_silent),
        cmocka_unit_test(test_audit_robust_fork_in_signal_handler),
        cmocka_unit_test(test_audit_robust_vfork),
        cmocka_unit_test(test_audit_robust_posix_spawn),
        cmocka_unit_test(test_audit_robust_Fork),
        cmocka_unit_test(test_audit_robust_clone_thread),
        cmocka_unit_test(test_audit_robust_dlopen_after_start),
        cmocka_unit_test(test_audit_python_fork_with_threads),
        cmocka_unit_test(test_audit_python_child_deadlock),
        cmocka_unit_test(test_audit_python_test_fork1_passes),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
