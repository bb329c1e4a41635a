/* SPDX-License-Identifier: MIT */
/*
 * test-audit.c: forksafe-audit end to end. Each test runs the real CLI on
 * a real program (a target from this folder, /bin/sh, or Debian's
 * python3) with the real interposer, then checks the exit status, the
 * program's own output, and the JSON report with check_report.py (schema
 * plus the expected findings). Nothing is mocked.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PYTHON "/usr/bin/python3"
#define RUN_MS 20000

static char tmpdir[] = "/tmp/fs-audit-test-XXXXXX";
static char json[256], out[256], err[256];

/* Run argv with extra environment entries ("K=V", NULL-terminated; may be
   NULL), stdout and stderr to files; return the exit status (128+signal
   if killed). A hang fails the test. */
static int run(char *const argv[], const char *const *envs, const char *o,
               const char *e, unsigned ms)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(o ? o : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(e ? e : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0)
            _exit(120);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        for (; envs && *envs; envs++)
            putenv((char *)*envs);
        execv(argv[0], argv);
        _exit(121);
    }
    int code = -1;
    enum fs_wait_result r = fs_wait(pid, ms, &code);
    assert_int_not_equal(r, FS_HUNG);
    return r == FS_EXITED ? code : 128 + code;
}

static char *slurp(const char *path)
{
    static char buf[65536];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

/* Run the CLI with --json on target argv; return the CLI's status. */
static int audit(const char *const *opts, char *const *argv)
{
    char *args[32];
    int n = 0;
    args[n++] = AUDIT_CLI;
    args[n++] = "--json";
    args[n++] = json;
    for (; opts && *opts; opts++)
        args[n++] = (char *)*opts;
    args[n++] = "--";
    for (; *argv; argv++)
        args[n++] = *argv;
    args[n] = NULL;
    return run(args, NULL, out, err, RUN_MS);
}

/* check_report.py on the last JSON report with these expectations. */
static void check(const char *a1, const char *a2, const char *a3,
                  const char *a4)
{
    char *args[] = {PYTHON,     AUDIT_SRC "/check_report.py",
                    json,       (char *)a1,
                    (char *)a2, (char *)a3,
                    (char *)a4, NULL};
    char co[256];
    snprintf(co, sizeof co, "%s/check.txt", tmpdir);
    int st = run(args, NULL, co, co, RUN_MS);
    if (st != 0)
        fprintf(stderr, "%s\nreport stderr:\n%s\n", slurp(co), slurp(err));
    assert_int_equal(st, 0);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(json, sizeof json, "%s/report.json", tmpdir);
    snprintf(out, sizeof out, "%s/out.txt", tmpdir);
    snprintf(err, sizeof err, "%s/err.txt", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char *args[] = {"/bin/rm", "-rf", tmpdir, NULL};
    run(args, NULL, NULL, NULL, RUN_MS);
    return 0;
}

#define TARGET(name) AUDIT_BIN "/" name

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

static void test_audit_lock_held_at_fork(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-held"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=fork-with-threads,lock-held-at-fork",
          "--detail=lock-held-at-fork:registered~no",
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
    check("--kinds=fork-with-threads,lock-held-at-fork,unsafe-call-in-child,"
          "child-deadlock",
          "--detail=child-deadlock:exit_status~86",
          "--frame=child-deadlock:lock-call:function=main",
          "--frame=child-deadlock:lock-taken:function=holder_main");
}

static void test_audit_pshared_lock_is_not_a_deadlock(void **state)
{
    (void)state;
    /* Another process can release a process-shared mutex: the child waits
       past the grace period, gets it, and exits 0 (the target checks). */
    const char *opts[] = {"--grace-ms", "100", NULL};
    char *argv[] = {TARGET("target-held"), "pshared", NULL};
    assert_int_equal(audit(opts, argv), 0);
    check("--kinds=fork-with-threads,lock-held-at-fork,unsafe-call-in-child",
          NULL, NULL, NULL);
}

static void test_audit_unsafe_call_in_child(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-unsafe"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=fork-with-threads,unsafe-call-in-child",
          "--detail=unsafe-call-in-child:function~malloc",
          "--frame=unsafe-call-in-child:call:function=child_work", NULL);
}

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
    check("--detail=raw-atfork-handler:prepare_position~1",
          "--detail=raw-atfork-handler:child_position~1",
          "--detail=raw-atfork-handler:registrations~1", NULL);
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

static void test_audit_unregistered_shared_lock(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-shared"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    check("--kinds=unregistered-shared-lock",
          "--frame=unregistered-shared-lock:first-lock:function=bump",
          "--frame=unregistered-shared-lock:other-thread-lock:function=bump",
          NULL);
}

static void test_audit_library_without_adapter(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-library"), NULL};
    int st = audit(NULL, argv);
    if (st == 77)
        skip(); /* libsqlite3.so.0 is not installed here */
    assert_int_equal(st, 0);
    check("--kinds=library-without-adapter",
          "--detail=library-without-adapter:adapter~sqlite",
          "--detail=library-without-adapter:library~libsqlite3", NULL);
}

static void test_audit_stdio_unflushed_at_fork(void **state)
{
    (void)state;
    char *argv[] = {TARGET("target-stdio"), NULL};
    assert_int_equal(audit(NULL, argv), 0);
    /* The program's output is unchanged: written once, by the parent. */
    assert_string_equal(slurp(out), "pending");
    check("--kinds=stdio-unflushed-at-fork",
          "--detail=stdio-unflushed-at-fork:stream~stdout",
          "--detail=stdio-unflushed-at-fork:bytes~7", NULL);
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
    char *shared[] = {TARGET("target-shared"), NULL};
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
              "--detail=lock-held-at-fork:registered~no", NULL, NULL);
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
        cmocka_unit_test(test_audit_lock_held_at_fork),
        cmocka_unit_test(test_audit_child_deadlock_ends_child),
        cmocka_unit_test(test_audit_pshared_lock_is_not_a_deadlock),
        cmocka_unit_test(test_audit_unsafe_call_in_child),
        cmocka_unit_test(test_audit_raw_atfork_handler),
        cmocka_unit_test(test_audit_lock_order_violation),
        cmocka_unit_test(test_audit_unregistered_shared_lock),
        cmocka_unit_test(test_audit_library_without_adapter),
        cmocka_unit_test(test_audit_stdio_unflushed_at_fork),
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
    return cmocka_run_group_tests(tests, setup, teardown);
}
