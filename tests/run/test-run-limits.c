/* SPDX-License-Identifier: MIT */
/*
 * test-run-limits.c: what forksafe-run cannot fix, each shown. A lock held
 * across a blocking call makes the fork go ahead after the timeout, and
 * the report names the lock, the thread and where it was taken; a thread
 * that needs the forking thread to make progress makes it go ahead at
 * once; semaphores, spinlocks, a program's own futex locks and libc's
 * internal locks are not pthread mutexes or rwlocks: their children hang
 * under forksafe-run as without it (libc handles some of its own locks
 * itself, and that is shown too).
 */
#include "run-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void holder_hangs(const char *mode)
{
    char *argv[] = {RU_TARGET("target-cases"), (char *)mode, NULL};
    char want[64];
    snprintf(want, sizeof want, "%s: child hung", mode);
    assert_int_equal(ru_plain(argv), 0);
    assert_non_null(strstr(ru_slurp(ru_out), want));
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, want));
    /* Not a lock forksafe-run knows: the fork does not wait either. */
    assert_true(ru_fork_ms(out, mode) < 500);
    ru_check("--eq", "forks.timed_out=0", "--eq", "forks.waited=0");
}

static void test_limit_semaphore(void **state)
{
    (void)state;
    holder_hangs("sem");
}

static void test_limit_spinlock(void **state)
{
    (void)state;
    holder_hangs("spin");
}

static void test_limit_custom_futex_lock(void **state)
{
    (void)state;
    holder_hangs("futex");
}

/* A mutex held across read(): the fork waits the timeout, then goes ahead
   as a plain fork would, and the report says who held what, from where. */
static void test_limit_lock_held_across_blocking_call(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "blocking", NULL};
    const char *opts[] = {"--timeout-ms", "200", NULL};
    assert_int_equal(ru_cli_report(opts, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, "blocking: child hung"));
    int ms = ru_fork_ms(out, "blocking:");
    assert_true(ms >= 180 && ms < 3000);
    ru_check("--eq", "forks.timed_out=1", "--eq", "timeout_ms=200", "--len",
             "slow_forks=1", "--eq", "slow_forks.0.reason=\"timeout\"", "--eq",
             "slow_forks.0.call=\"fork\"", "--frame",
             "slow_forks.0:fork-call:function=fork_once", "--eq",
             "slow_forks.0.blockers.0.thread_name=\"journal-writer\"", "--eq",
             "slow_forks.0.blockers.0.state=\"holds\"", "--eq",
             "slow_forks.0.blockers.0.lock_kind=\"mutex\"", "--frame",
             "slow_forks.0.blockers.0:lock-taken:function=journal_writer",
             "--frame",
             "slow_forks.0.blockers.0:thread-start:function=journal_writer");
    const char *text = ru_slurp(ru_text);
    assert_non_null(strstr(text, "after the 200 ms timeout"));
    assert_non_null(strstr(text, "thread"));
    assert_non_null(strstr(text, "\"journal-writer\" held mutex 0x"));
    assert_non_null(strstr(text, "taken at journal_writer+0x"));
}

/* A mutex registered with libforksafe held across a blocking read: the
   fork waits forksafe-run's timeout (200 ms), then libforksafe's own
   prepare waits for its lock up to its own deadline (FORKSAFE_TIMEOUT_MS,
   here 1000 ms). The report says what the fork really waited: both. */
static void test_limit_registered_lock_held_across_blocking_call(void **state)
{
    (void)state;
    char *argv[] = {RUN_CLI,  "--timeout-ms", "200",
                    "--json", ru_json,        "--report",
                    ru_text,  "--",           RU_TARGET("target-regheld"),
                    NULL};
    const char *envs[] = {"FORKSAFE_TIMEOUT_MS=1000", NULL};
    assert_int_equal(ru_run(argv, envs, ru_out, ru_err, RU_RUN_MS), 0);
    int ms = ru_fork_ms(ru_slurp(ru_out), "regheld:");
    fprintf(stderr, "  fork took %d ms\n", ms);
    assert_true(ms >= 1000);
    ru_check("--eq", "forks.timed_out=1", "--len", "slow_forks=1", "--min",
             "wait_ns.max=1000000000", "--min", "slow_forks.0.wait_us=1000000");
}

/* The same, timeout from the environment, library preloaded by hand. */
static void test_timeout_from_the_environment(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "blocking", NULL};
    const char *envs[] = {"FORKSAFE_RUN_TIMEOUT_MS=150", NULL};
    assert_int_equal(ru_preload(envs, argv), 0);
    int ms = ru_fork_ms(ru_slurp(ru_out), "blocking:");
    assert_true(ms >= 130 && ms < 3000);
}

/* A thread holds A and waits for B, which the forking thread holds: it
   cannot release A before the fork is over, so the fork goes ahead at
   once instead of waiting the timeout; A stays held in the child. */
static void test_limit_thread_needs_the_forker(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "forker", NULL};
    const char *opts[] = {"--timeout-ms", "5000", NULL};
    assert_int_equal(ru_cli_report(opts, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, "forker: child exit 4"));
    assert_true(ru_fork_ms(out, "forker:") < 2000);
    ru_check("--eq", "forks.stuck=1", "--eq", "forks.timed_out=0", "--eq",
             "slow_forks.0.reason=\"stuck\"", "--eq",
             "slow_forks.0.blockers.0.state=\"waits-for-forker\"", "--eq",
             "slow_forks.0.blockers.0.thread_name=\"a-then-b\"", "--frame",
             "slow_forks.0.blockers.0:lock-taken:function=a_then_b");
    assert_non_null(strstr(ru_slurp(ru_text),
                           "waiting for a lock the forking thread holds"));
}

/* A thread that holds a lock and calls fork() itself while another
   thread's fork waits for it: it waits for that fork to end, so that fork
   goes ahead at once; then the second fork is made. */
static void test_limit_holder_waits_to_fork(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "twoforks", NULL};
    const char *opts[] = {"--timeout-ms", "5000", NULL};
    assert_int_equal(ru_cli_report(opts, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, "twoforks: child exit 4"));
    assert_true(ru_fork_ms(out, "twoforks:") < 2000);
    ru_check("--eq", "forks.total=2", "--eq", "forks.stuck=1", "--eq",
             "slow_forks.0.blockers.0.state=\"waits-to-fork\"", "--eq",
             "slow_forks.0.blockers.0.thread_name=\"forking-holder\"");
}

/* libc's own locks are libc's: glibc takes its loader lock around fork,
   so a child can dlopen while another thread was inside dlopen ... */
static void test_libc_handles_its_loader_lock(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "dlopen",
                    RUN_BIN "/run-slow-ctor.so", RUN_BIN "/run-plain.so", NULL};
    assert_int_equal(ru_plain(argv), 0);
    assert_non_null(strstr(ru_slurp(ru_out), "dlopen: child ok"));
    assert_int_equal(ru_cli(NULL, argv), 0);
    assert_non_null(strstr(ru_slurp(ru_out), "dlopen: child ok"));
}

/* ... but not the lock of setenv(): children of a fork made while another
   thread was inside setenv() hang, with forksafe-run as without it. */
static void test_limit_libc_internal_lock(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "setenv", NULL};
    int hung, n, wrong;
    assert_int_equal(ru_plain(argv), 0);
    ru_counts(ru_slurp(ru_out), "setenv:", &hung, &n, &wrong);
    fprintf(stderr, "  setenv without forksafe-run: hung %d of %d\n", hung, n);
    assert_true(hung > 0);
    assert_int_equal(ru_cli(NULL, argv), 0);
    ru_counts(ru_slurp(ru_out), "setenv:", &hung, &n, &wrong);
    fprintf(stderr, "  setenv under forksafe-run: hung %d of %d\n", hung, n);
    assert_true(hung > 0);
}

int main(void)
{
    fs_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_semaphore),
        cmocka_unit_test(test_limit_spinlock),
        cmocka_unit_test(test_limit_custom_futex_lock),
        cmocka_unit_test(test_limit_lock_held_across_blocking_call),
        cmocka_unit_test(test_limit_registered_lock_held_across_blocking_call),
        cmocka_unit_test(test_timeout_from_the_environment),
        cmocka_unit_test(test_limit_thread_needs_the_forker),
        cmocka_unit_test(test_limit_holder_waits_to_fork),
        cmocka_unit_test(test_libc_handles_its_loader_lock),
        cmocka_unit_test(test_limit_libc_internal_lock),
    };
    return cmocka_run_group_tests(tests, ru_setup, ru_teardown);
}
