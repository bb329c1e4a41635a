/* SPDX-License-Identifier: MIT */
/*
 * test-run.c: what forksafe-run fixes, on unmodified programs. Each case
 * runs the same program without forksafe-run (the hang or the wrong lock
 * state must show, so that the test can fail) and under it (none of
 * children may hang or find a lock in the wrong state), through the
 * command and as a plain LD_PRELOAD of the library.
 */
#include "run-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Run argv (target-hang or a wrapper of it) under forksafe-run with a
   JSON report: all 200 children must end well, none hung or wrong. */
static void none_hung_under_cli(char **argv)
{
    int hung, n, wrong;
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    ru_counts(ru_slurp(ru_out), "hung", &hung, &n, &wrong);
    assert_int_equal(n, 200);
    assert_int_equal(hung, 0);
    assert_int_equal(wrong, 0);
}

/* target-hang MODE [forker-holds]: without forksafe-run some children
   hang (or, when the forker holds a lock, find it wrong); under it none.
   Then the same through LD_PRELOAD alone. */
static void hang_case(const char *type, int holds)
{
    char *argv[] = {RU_TARGET("target-hang"), (char *)type,
                    holds ? "forker-holds" : NULL, NULL};
    int hung, n, wrong;
    /* The hang is a race the program usually loses (about 95% of its
       children), but on a loaded machine its threads may not run between
       two forks for a whole round: up to three rounds must show it. */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(ru_plain(argv), 0);
        ru_counts(ru_slurp(ru_out), "hung", &hung, &n, &wrong);
        fprintf(stderr,
                "  %s%s without forksafe-run: hung %d, wrong %d of %d\n", type,
                holds ? " forker-holds" : "", hung, wrong, n);
        if (hung + wrong > 0)
            break;
    }
    assert_true(hung + wrong > 0);

    none_hung_under_cli(argv);
    ru_check("--eq", "forks.total=200", "--eq", "forks.threaded=200", "--eq",
             "forks.timed_out=0", "--eq", "forks.stuck=0", "--len",
             "slow_forks=0", "--eq", "complete=true", "--eq", "exit_status=0",
             "--eq", "wait_ns.samples=200");

    assert_int_equal(ru_preload(NULL, argv), 0);
    ru_counts(ru_slurp(ru_out), "hung", &hung, &n, &wrong);
    assert_int_equal(hung, 0);
    assert_int_equal(wrong, 0);
}

/* Where membarrier(2) is refused (a seccomp profile), every lock call
   fences itself instead: the same program, through a wrapper that makes
   membarrier fail with EPERM, must be protected the same way, and no fork
   may time out (takers must still wait at the gate). */
static void test_fence_mode_without_membarrier(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("run-no-membarrier"), RU_TARGET("target-hang"),
                    "normal", NULL};
    none_hung_under_cli(argv);
    ru_check("--eq", "forks.total=200", "--eq", "forks.threaded=200", "--eq",
             "forks.timed_out=0", "--eq", "forks.stuck=0", "--eq",
             "complete=true", "--eq", "exit_status=0");
}

static void test_normal_mutexes(void **state)
{
    (void)state;
    hang_case("normal", 0);
}

static void test_errorcheck_mutexes(void **state)
{
    (void)state;
    hang_case("errorcheck", 0);
}

static void test_recursive_mutexes(void **state)
{
    (void)state;
    hang_case("recursive", 0);
}

/* The forking thread holds one of the mutexes (twice when recursive): the
   child holds it too, with the same type and depth. */
static void test_forker_holds_normal(void **state)
{
    (void)state;
    hang_case("normal", 1);
}

static void test_forker_holds_errorcheck(void **state)
{
    (void)state;
    hang_case("errorcheck", 1);
}

static void test_forker_holds_recursive(void **state)
{
    (void)state;
    hang_case("recursive", 1);
}

/* A target-cases MODE printing "MODE: hung H of N...": none under
   forksafe-run; some without when must_fail. */
static void many_case(const char *mode, int must_fail)
{
    char *argv[] = {RU_TARGET("target-cases"), (char *)mode, NULL};
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s:", mode);
    int hung, n, wrong;
    if (must_fail) {
        assert_int_equal(ru_plain(argv), 0);
        ru_counts(ru_slurp(ru_out), prefix, &hung, &n, &wrong);
        fprintf(stderr, "  %s without forksafe-run: hung %d, wrong %d of %d\n",
                mode, hung, wrong, n);
        assert_true(hung + wrong > 0);
    }
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    ru_counts(ru_slurp(ru_out), prefix, &hung, &n, &wrong);
    assert_int_equal(hung, 0);
    assert_int_equal(wrong, 0);
    ru_check("--eq", "forks.timed_out=0", "--eq", "forks.stuck=0");
}

/* rwlocks taken for reading and writing, and one the forker holds for
   writing (the child's unlock must release it). */
static void test_rwlocks(void **state)
{
    (void)state;
    many_case("rwlock", 1);
}

/* Threads waiting on a condition variable, woken all the time: the
   mutex they take back inside pthread_cond_wait is covered. */
static void test_condition_waiters(void **state)
{
    (void)state;
    many_case("cond", 0);
}

/* Holders that take more locks while a fork waits for them go on (they
   are never stopped at the gate), so the fork's wait ends. */
static void test_holders_are_never_stopped(void **state)
{
    (void)state;
    many_case("nested", 1);
}

/* A waiter cancelled in pthread_cond_wait: libc takes the mutex back
   inside the wait and the thread's cleanup handler runs with it held, out
   of sight of every hook but the condition wait's own record. The fork
   waits for the unlock (about 200 ms) instead of handing the child a
   locked mutex. */
static void test_mutex_taken_back_inside_cond_wait(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "cancel", NULL};
    assert_int_equal(ru_plain(argv), 0);
    assert_non_null(strstr(ru_slurp(ru_out), "cancel: child hung"));
    assert_int_equal(ru_cli(NULL, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, "cancel: child ok"));
    assert_true(ru_fork_ms(out, "cancel:") >= 100);
}

/* Locks in memory that was freed or unmapped with them held are not
   waited for (and not touched): the fork does not wait the timeout. */
static void test_locks_in_freed_memory(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "freed", NULL};
    const char *opts[] = {"--timeout-ms", "3000", NULL};
    assert_int_equal(ru_cli_report(opts, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, "freed: child ok"));
    assert_true(ru_fork_ms(out, "freed:") < 1500);
    ru_check("--eq", "forks.timed_out=0", "--eq", "forks.stuck=0");
}

/* A fork handler that wakes a worker and waits for it (condition wait,
   then pthread_join: OpenBLAS stops its threads so) does not deadlock on
   the gate: the gate is open while the forking thread waits in them. */
static void test_fork_handler_waiting_for_a_thread(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "handler", NULL};
    const char *opts[] = {"--timeout-ms", "3000", NULL};
    assert_int_equal(ru_cli_report(opts, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, "handler: child ok"));
    assert_true(ru_fork_ms(out, "handler:") < 1500);
    ru_check("--eq", "forks.gate_overruns=0", "--eq", "forks.timed_out=0");
}

/* A fork handler that waits for a worker by polling a flag, which the
   worker can only set after taking a lock: no hook sees that wait, so the
   worker waits at the gate for twice the timeout, then goes on; the fork
   ends, and the report counts it. */
static void test_fork_handler_polling_for_a_thread(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "poll", NULL};
    const char *opts[] = {"--timeout-ms", "200", NULL};
    assert_int_equal(ru_cli_report(opts, argv), 0);
    const char *out = ru_slurp(ru_out);
    assert_non_null(strstr(out, "poll: the worker answered"));
    assert_non_null(strstr(out, "poll: child ok"));
    int ms = ru_fork_ms(out, "poll: child");
    assert_true(ms >= 350 && ms < 5000);
    ru_check("--min", "forks.gate_overruns=1");
}

/* A robust and a PI mutex held by the forking thread: rebuilt in the
   child and held there (glibc marks robust mutexes process-shared; they
   are restored unless their memory really is shared). */
static void test_forker_holds_robust_and_pi(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-cases"), "robust", NULL};
    assert_int_equal(ru_plain(argv), 0);
    assert_null(strstr(ru_slurp(ru_out), "robust: child ok"));
    assert_int_equal(ru_cli(NULL, argv), 0);
    assert_non_null(strstr(ru_slurp(ru_out), "robust: child ok"));
}

/* libforksafe's registry in the same process: registered locks are the
   registry's to take and restore, the others forksafe-run's; fork() and
   forksafe_fork() both work, with the forker holding one of each. */
static void test_with_libforksafe_registry(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-registry"), NULL};
    int hung, n, wrong;
    assert_int_equal(ru_plain(argv), 0);
    ru_counts(ru_slurp(ru_out), "registry:", &hung, &n, &wrong);
    fprintf(stderr, "  registry without forksafe-run: hung %d, wrong %d\n",
            hung, wrong);
    assert_true(hung + wrong > 0);
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    ru_counts(ru_slurp(ru_out), "registry:", &hung, &n, &wrong);
    assert_int_equal(hung, 0);
    assert_int_equal(wrong, 0);
    ru_check("--eq", "forks.total=200", "--eq", "forks.timed_out=0");
}

/* A thread blocked taking a process-shared mutex that another process
   holds: no thread of this process holds it, so the fork has nothing to
   wait for and goes ahead at once (the taker is not in the child, and the
   lock, in shared memory, is the same lock there). */
static void test_lock_held_by_another_process(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-pshared"), NULL};
    const char *opts[] = {"--timeout-ms", "3000", NULL};
    assert_int_equal(ru_cli_report(opts, argv), 0);
    assert_true(ru_fork_ms(ru_slurp(ru_out), "pshared:") < 500);
    ru_check("--eq", "forks.timed_out=0", "--eq", "forks.stuck=0", "--len",
             "slow_forks=0");
}

/* A pthread_atfork prepare handler forks: both forks are protected and
   both are counted. */
static void test_fork_inside_prepare_handler(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-atfork"), NULL};
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    ru_check("--eq", "forks.total=2", "--eq", "forks.threaded=2");
    assert_non_null(strstr(ru_slurp(ru_text),
                           "2 forks in 1 process; 2 with other threads alive"));
}

/* While a fork waits for a holder, the try functions never wait at the
   gate and the timed ones take a free lock (no ETIMEDOUT): each call
   behaves as it would with no fork going on (target-trylock.c). */
static void test_try_and_timed_locks_during_a_fork(void **state)
{
    (void)state;
    char *argv[] = {RU_TARGET("target-trylock"), NULL};
    const char *opts[] = {"--timeout-ms", "3000", NULL};
    int st = ru_cli_report(opts, argv);
    fprintf(stderr, "%s", ru_slurp(ru_out));
    assert_int_equal(st, 0);
    assert_non_null(strstr(ru_slurp(ru_out), "child ok"));
    ru_check("--eq", "forks.timed_out=0");
}

/* CPython: a thread uses sqlite3 (SQLite's mutexes held while the GIL is
   released) while multiprocessing forks workers that use sqlite3. */
static void test_python_sqlite_thread(void **state)
{
    (void)state;
    char *argv[] = {RU_PYTHON, RUN_SRC "/py_sqlite_fork.py", "12", NULL};
    int hung, n, wrong;
    assert_int_equal(ru_plain(argv), 0);
    ru_counts(ru_slurp(ru_out), "sqlite:", &hung, &n, &wrong);
    fprintf(stderr, "  python sqlite3 without forksafe-run: hung %d of %d\n",
            hung, n);
    assert_true(hung > 0);
    assert_int_equal(ru_cli_report(NULL, argv), 0);
    ru_counts(ru_slurp(ru_out), "sqlite:", &hung, &n, &wrong);
    assert_int_equal(hung, 0);
    ru_check("--eq", "forks.timed_out=0", "--min", "forks.threaded=12");
}

int main(void)
{
    fs_watchdog(900);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_mutexes),
        cmocka_unit_test(test_fence_mode_without_membarrier),
        cmocka_unit_test(test_errorcheck_mutexes),
        cmocka_unit_test(test_recursive_mutexes),
        cmocka_unit_test(test_forker_holds_normal),
        cmocka_unit_test(test_forker_holds_errorcheck),
        cmocka_unit_test(test_forker_holds_recursive),
        cmocka_unit_test(test_rwlocks),
        cmocka_unit_test(test_condition_waiters),
        cmocka_unit_test(test_holders_are_never_stopped),
        cmocka_unit_test(test_mutex_taken_back_inside_cond_wait),
        cmocka_unit_test(test_locks_in_freed_memory),
        cmocka_unit_test(test_fork_handler_waiting_for_a_thread),
        cmocka_unit_test(test_fork_handler_polling_for_a_thread),
        cmocka_unit_test(test_forker_holds_robust_and_pi),
        cmocka_unit_test(test_with_libforksafe_registry),
        cmocka_unit_test(test_lock_held_by_another_process),
        cmocka_unit_test(test_fork_inside_prepare_handler),
        cmocka_unit_test(test_try_and_timed_locks_during_a_fork),
        cmocka_unit_test(test_python_sqlite_thread),
    };
    return cmocka_run_group_tests(tests, ru_setup, ru_teardown);
}
