/* SPDX-License-Identifier: MIT */
/*
 * test-audit-rules.c: every rule of docs/audit.md "When each finding
 * fires", both ways: a case it must report (test_*_fires*) and near misses
 * it must not (test_*_not_* and the info cases: a finding the rule keeps
 * as inventory, not as a hazard). Each runs the real CLI on a real program
 * (tests/audit/target-rules.c and the other targets, Debian's python3) and
 * checks the JSON report with check_report.py. FS_AUDIT_TEST_CLI (with
 * FORKSAFE_AUDIT_PRELOAD) runs the same tests against another build, to
 * see them fail on the code before the rules.
 */
#include "audit-util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RULES AU_TARGET("target-rules")

static void audit_mode(const char *target, const char *mode, int want)
{
    const char *opts[] = {"--grace-ms", "300", NULL};
    char *argv[] = {(char *)target, (char *)mode, NULL};
    if (!mode)
        argv[1] = NULL;
    int st = au_audit(opts, argv);
    if (st == 77)
        skip(); /* SQLite is not built here */
    if (st != want)
        fprintf(stderr, "%s %s: status %d\n%s\n", target, mode ? mode : "", st,
                au_slurp(au_err));
    assert_int_equal(st, want);
}

/* ------------------------------------------------------------ fork */

static void test_fork_with_threads_fires_when_child_runs_on(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-threads"), NULL, 0);
    au_check("--kinds=fork-with-threads",
             "--severity=fork-with-threads=warning",
             "--detail-eq=fork-with-threads:children=1",
             "--detail-eq=fork-with-threads:forksafe=false");
}

static void test_fork_with_threads_not_when_child_only_exits(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-threads"), "exit-only", 0);
    au_check("--kinds=");
}

static void test_fork_with_threads_info_when_forksafe_covers(void **state)
{
    (void)state;
    /* libforksafe is linked: its fork handler ran for the fork. */
    audit_mode(RULES, "unsafe-own", 0);
    au_check("--kinds=fork-with-threads", "--severity=fork-with-threads=info",
             "--detail-eq=fork-with-threads:forksafe=true");
}

/* ------------------------------------------------------------ held */

static void test_lock_held_fires_when_child_blocks(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-held"), "deadlock", 0);
    au_check("--severity=lock-held-at-fork=warning",
             "--detail-eq=lock-held-at-fork:child_blocked=true",
             "--severity=child-deadlock=error",
             "--detail=child-deadlock:holder_name~target-held");
}

static void test_lock_held_info_when_child_never_touches(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-held"), NULL, 0);
    au_check("--severity=lock-held-at-fork=info",
             "--detail-eq=lock-held-at-fork:child_blocked=false",
             "--detail-eq=lock-held-at-fork:registered=false",
             "--lacks=child-deadlock");
}

static void test_lock_held_not_when_child_only_exits(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-held"), "exit-only", 0);
    au_check("--kinds=");
}

static void test_lock_held_info_when_child_reinitialises(void **state)
{
    (void)state;
    audit_mode(RULES, "held-reinit", 0);
    au_check("--severity=lock-held-at-fork=info", "--lacks=child-deadlock",
             "--lacks=unsafe-call-in-child");
}

static void test_lock_held_registered_at_fork_is_covered(void **state)
{
    (void)state;
    audit_mode(RULES, "held-registered", 0);
    au_check("--severity=lock-held-at-fork=info",
             "--detail-eq=lock-held-at-fork:registered=true",
             "--detail=lock-held-at-fork:covered_by~registry",
             "--detail=lock-held-at-fork:lock_name~rules.m");
    /* The holder's name, read before it exited. */
    au_check("--detail=lock-held-at-fork:holder_name~target-rules",
             "--lacks=child-deadlock", "--lacks=unsafe-call-in-child");
}

static void test_lock_held_taken_by_callback_prepare_is_covered(void **state)
{
    (void)state;
    audit_mode(RULES, "held-callback", 0);
    au_check("--severity=lock-held-at-fork=info",
             "--detail=lock-held-at-fork:covered_by~prepare",
             "--detail-eq=lock-held-at-fork:registered=false");
}

static void test_lock_held_registry_asked_at_fork_not_exit(void **state)
{
    (void)state;
    /* The plugin that registered the lock is unloaded before exit. */
    audit_mode(RULES, "held-plugin", 0);
    au_check("--severity=lock-held-at-fork=info",
             "--detail-eq=lock-held-at-fork:registered=true",
             "--detail=lock-held-at-fork:lock_name~plugin.lock");
}

static void test_lock_held_not_for_process_shared_semaphore(void **state)
{
    (void)state;
    audit_mode(RULES, "psem", 0);
    au_check("--lacks=lock-held-at-fork", "--lacks=child-deadlock");
}

static void test_lock_held_not_for_pshared_mutex(void **state)
{
    (void)state;
    const char *opts[] = {"--grace-ms", "100", NULL};
    char *argv[] = {AU_TARGET("target-held"), "pshared", NULL};
    assert_int_equal(au_audit(opts, argv), 0);
    au_check("--kinds=fork-with-threads");
}

static void test_lock_held_python_thread_state_lock_is_info(void **state)
{
    (void)state;
    /* A threading.Thread holds a threading.Lock (and its own state lock)
       at os.fork(); CPython's child re-creates or drops both. */
    /* The rule knows CPython 3.11's lock functions (Debian bookworm); a
       CPython whose binary does not export them (3.13 on trixie) is not
       recognised yet (docs/audit.md, "Limits"). */
    if (system(AU_PYTHON " -c 'import sys; "
                         "sys.exit(sys.version_info[:2] != (3, 11))'") != 0) {
        print_message("    (skipped: the rule is for CPython 3.11)\n");
        skip();
    }
    char *argv[] = {AU_PYTHON, AUDIT_SRC "/py_fork_threads.py", NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    au_check("--severity=lock-held-at-fork=info",
             "--severity=fork-with-threads=warning", "--lacks=child-deadlock");
}

static void test_lock_held_python_logging_handler_is_info(void **state)
{
    (void)state;
    /* A thread is inside a logging handler (holding its lock) at the
       fork; the child logs through the same handler, whose lock CPython
       re-created in the child. */
    char *argv[] = {AU_PYTHON, AUDIT_SRC "/py_logging_handler.py", NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    assert_string_equal(au_slurp(au_out), "child logged\n");
    au_check("--has=lock-held-at-fork", "--severity=lock-held-at-fork=info",
             "--lacks=child-deadlock");
}

/* ------------------------------------------------------------ deadlock */

static void test_child_deadlock_fires_on_condition_wait(void **state)
{
    (void)state;
    audit_mode(RULES, "cond", 0);
    au_check("--detail=child-deadlock:lock_kind~condition",
             "--frame=child-deadlock:lock-taken:function=cond_user");
}

static void test_child_deadlock_not_on_timed_condition_wait(void **state)
{
    (void)state;
    audit_mode(RULES, "cond-timed", 0);
    au_check("--lacks=child-deadlock");
}

static void test_child_deadlock_fires_on_rwlock(void **state)
{
    (void)state;
    audit_mode(RULES, "rwlock", 0);
    au_check("--detail=child-deadlock:lock_kind~rwlock",
             "--severity=lock-held-at-fork=warning");
}

/* ------------------------------------------------------------ unsafe */

static void test_unsafe_call_fires_once_per_site_with_children(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe", 0);
    au_check("--count=unsafe-call-in-child=1",
             "--detail-eq=unsafe-call-in-child:children=3",
             "--detail=unsafe-call-in-child:function~pthread_mutex_lock",
             "--frame=unsafe-call-in-child:call:function=child_takes");
    /* The thread of the parent that used the lock is named. */
    au_check("--frame=unsafe-call-in-child:other-thread-lock:function="
             "use_then_park");
}

static void test_unsafe_call_labelled_with_the_calling_program(void **state)
{
    (void)state;
    /* The child execs /bin/true after the call. */
    audit_mode(RULES, "unsafe-exec", 0);
    au_check("--exe=unsafe-call-in-child=/target-rules");
}

static void test_unsafe_call_not_for_malloc_family(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-malloc", 0);
    au_check("--lacks=unsafe-call-in-child");
}

static void test_unsafe_call_not_for_registered_lock(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-registered", 0);
    au_check("--lacks=unsafe-call-in-child");
}

/* A thread of the parent took the lock only while holding a registered
   lock (forksafe's prepare takes it): it cannot be held at the fork. */
static void
test_unsafe_call_not_for_lock_only_taken_under_registered(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-registered", 0);
    au_check("--lacks=unsafe-call-in-child");
}

/* The same under an unregistered lock, once with nothing held, or once
   kept after the registered lock is released (hand over hand): fires. */
static void test_unsafe_call_fires_for_lock_under_unregistered(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-plain", 0);
    au_check("--count=unsafe-call-in-child=1",
             "--frame=unsafe-call-in-child:other-thread-lock:function="
             "use_nested_then_park");
    audit_mode(RULES, "unsafe-nested-bare", 0);
    au_check("--count=unsafe-call-in-child=1");
    audit_mode(RULES, "unsafe-nested-handover", 0);
    au_check("--count=unsafe-call-in-child=1");
}

/* inner was also taken under 24 short-lived locks (each destroyed since),
   with the registered lock innermost: more (innermost, outermost) pairs
   than a fixed table keeps, all over or covered. Before the fix this
   fired (the table gave up past 8 pairs; workload-sqlite's per-file shm
   mutex under the VFS mutex and one short-lived connection mutex each). */
static void test_unsafe_call_not_for_lock_under_many_transient(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-transient", 0);
    au_check("--lacks=unsafe-call-in-child");
}

/* The same, but the last short-lived lock stays alive and is held alone
   around inner: not covered, fires. */
static void test_unsafe_call_fires_for_live_one_of_many(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-transient-live", 0);
    au_check("--count=unsafe-call-in-child=1");
}

/* inner was held under a lock destroyed since; a new lock at the same
   address is alive at the fork but never held around inner: covered
   (before the fix the old taking was charged to the new lock; seen in
   workload-sqlite as a connection mutex whose memory a new connection,
   not yet tracked, got). */
static void test_unsafe_call_not_for_lock_under_reused_address(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-reused", 0);
    au_check("--lacks=unsafe-call-in-child");
}

/* The new lock at that address is held around inner, with a registered
   lock inside it: covered. Before the fix this fired: the old lock's
   pair (held alone) was taken to imply the new pair and restamped, so the
   new lock counted as held alone (workload-sqlite, 1 or 2 children in
   about 1 run of 5). */
static void test_unsafe_call_not_under_registered_in_reused_lock(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-reused-under", 0);
    au_check("--lacks=unsafe-call-in-child");
}

/* The new lock at that address is held alone around inner: fires. */
static void
test_unsafe_call_fires_under_new_lock_at_reused_address(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-reused-live", 0);
    au_check("--count=unsafe-call-in-child=1");
}

/* inner was taken under 12 registered connection mutexes, each time once
   with outer_lock (registered) inside and once alone: 24 live pairs, more
   than the table keeps, but (conn, conn) is stricter than (outer_lock,
   conn), so 12 say it all. Before the fix this fired (no room). */
static void test_unsafe_call_not_for_lock_under_many_live_pairs(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-conns", 0);
    au_check("--lacks=unsafe-call-in-child");
}

/* The same with the last connection mutex not registered: fires. */
static void test_unsafe_call_fires_for_one_unregistered_of_many(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-nested-conns-one-plain", 0);
    au_check("--count=unsafe-call-in-child=1");
}

/* A thread the child started takes a lock a thread of the parent used:
   that thread of the parent is named, not one of the child's. */
static void test_unsafe_call_fires_in_a_thread_the_child_started(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-child-thread-parents", 0);
    au_check("--count=unsafe-call-in-child=1",
             "--frame=unsafe-call-in-child:call:function=child_takes",
             "--frame=unsafe-call-in-child:other-thread-lock:function="
             "use_then_park");
}

/* The child starts a thread of its own; each of two locks no thread of
   the parent used is taken by both: no "thread N of the parent" (the
   child's own TID, as reported before for a new ZeroMQ context's locks). */
static void
test_unsafe_call_not_for_locks_only_the_childs_threads_used(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-child-threads", 0);
    au_check("--lacks=unsafe-call-in-child");
}

static void test_unsafe_call_not_for_lock_only_this_thread_used(void **state)
{
    (void)state;
    audit_mode(RULES, "unsafe-own", 0);
    au_check("--lacks=unsafe-call-in-child");
}

static void test_unsafe_call_not_for_malloc_in_plain_target(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-unsafe"), NULL, 0);
    au_check("--kinds=");
}

/* ------------------------------------------------------------ atfork */

static void test_raw_atfork_handler_is_info(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-atfork"), NULL, 0);
    au_check("--kinds=raw-atfork-handler",
             "--severity=raw-atfork-handler=info");
}

static void test_raw_atfork_handler_warns_in_order_violation(void **state)
{
    (void)state;
    audit_mode(RULES, "atfork-order", 0);
    au_check("--severity=raw-atfork-handler=warning",
             "--detail-eq=raw-atfork-handler:order_violation=true",
             "--detail-eq=lock-order-violation:in_prepare=true",
             "--frame=lock-order-violation:held-taken:function=rules_prepare");
}

/* ------------------------------------------------------------ shared */

static void test_shared_lock_fires_as_info_when_child_runs_on(void **state)
{
    (void)state;
    audit_mode(RULES, "shared-runon", 0);
    au_check("--has=unregistered-shared-lock",
             "--severity=unregistered-shared-lock=info");
}

static void test_shared_lock_not_without_fork(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-shared"), NULL, 0);
    au_check("--kinds=");
}

static void test_shared_lock_not_when_child_only_exits(void **state)
{
    (void)state;
    audit_mode(RULES, "shared-exit", 0);
    au_check("--kinds=");
}

/* ------------------------------------------------------------ library */

static void test_library_fires_with_live_state_and_child_running_on(void **st)
{
    (void)st;
    audit_mode(RULES, "lib-open", 0);
    au_check("--severity=library-without-adapter=warning",
             "--detail=library-without-adapter:adapter~sqlite",
             "--detail=library-without-adapter:library~libsqlite3",
             "--frame=library-without-adapter:state-created:function=open_db");
}

static void test_library_not_when_merely_loaded(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-library"), NULL, 0);
    au_check("--kinds=");
}

static void test_library_not_when_closed_before_fork(void **state)
{
    (void)state;
    audit_mode(RULES, "lib-closed", 0);
    au_check("--lacks=library-without-adapter");
}

static void test_library_not_when_child_execs(void **state)
{
    (void)state;
    audit_mode(RULES, "lib-exec", 0);
    au_check("--lacks=library-without-adapter");
}

static void test_library_not_with_its_adapter(void **state)
{
    (void)state;
    audit_mode(RULES, "lib-adapter", 0);
    au_check("--lacks=library-without-adapter");
}

/* ------------------------------------------------------------ stdio */

static void test_stdio_fires_when_child_writes_it_again(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-stdio"), "exit", 0);
    /* Written twice: once by the child's exit(), once by the parent. */
    assert_string_equal(au_slurp(au_out), "pendingpending");
    au_check("--kinds=stdio-unflushed-at-fork",
             "--detail-eq=stdio-unflushed-at-fork:bytes=7",
             "--detail=stdio-unflushed-at-fork:stream~stdout");
}

static void test_stdio_not_when_child_only_exits(void **state)
{
    (void)state;
    audit_mode(AU_TARGET("target-stdio"), NULL, 0);
    assert_string_equal(au_slurp(au_out), "pending");
    au_check("--kinds=");
}

static void test_stdio_not_when_prepare_flushed_it(void **state)
{
    (void)state;
    /* A fork handler's prepare (forksafe-stdio's, here a raw one) wrote
       the bytes out before the fork: the child's flush writes only its
       own. */
    audit_mode(RULES, "stdio-prepared", 0);
    assert_string_equal(au_slurp(au_out), "pendingchild");
    au_check("--lacks=stdio-unflushed-at-fork");
}

static void test_stdio_not_when_child_execs(void **state)
{
    (void)state;
    audit_mode(RULES, "stdio-exec", 0);
    au_check("--kinds=");
}

/* ------------------------------------------------------------ fds */

static void test_fd_leak_not_for_jobserver(void **state)
{
    (void)state;
    audit_mode(RULES, "fd-jobserver", 0);
    au_check("--kinds=");
}

static void test_fd_leak_not_when_named_in_arguments(void **state)
{
    (void)state;
    audit_mode(RULES, "fd-arg", 0);
    au_check("--kinds=");
}

static void test_fd_leak_not_when_named_in_environment(void **state)
{
    (void)state;
    audit_mode(RULES, "fd-env", 0);
    au_check("--kinds=");
}

static void test_fd_leak_outside_filter_is_by_descriptor(void **state)
{
    (void)state;
    /* This process keeps a file open without close-on-exec: forksafe-audit
       inherits it, and so does everything below. The program opens the
       same file again and leaks that: reported; the inherited one is
       not. */
    char path[300];
    snprintf(path, sizeof path, "%s/outside.txt", au_tmp);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd > 2);
    char *argv[] = {RULES, "fd-same-file", path, NULL};
    int st = au_audit(NULL, argv);
    close(fd);
    assert_int_equal(st, 0);
    au_check("--count=fd-leak-on-exec=1",
             "--detail=fd-leak-on-exec:target~outside.txt");
}

int main(void)
{
    fs_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_with_threads_fires_when_child_runs_on),
        cmocka_unit_test(test_fork_with_threads_not_when_child_only_exits),
        cmocka_unit_test(test_fork_with_threads_info_when_forksafe_covers),
        cmocka_unit_test(test_lock_held_fires_when_child_blocks),
        cmocka_unit_test(test_lock_held_info_when_child_never_touches),
        cmocka_unit_test(test_lock_held_not_when_child_only_exits),
        cmocka_unit_test(test_lock_held_info_when_child_reinitialises),
        cmocka_unit_test(test_lock_held_registered_at_fork_is_covered),
        cmocka_unit_test(test_lock_held_taken_by_callback_prepare_is_covered),
        cmocka_unit_test(test_lock_held_registry_asked_at_fork_not_exit),
        cmocka_unit_test(test_lock_held_not_for_process_shared_semaphore),
        cmocka_unit_test(test_lock_held_not_for_pshared_mutex),
        cmocka_unit_test(test_lock_held_python_thread_state_lock_is_info),
        cmocka_unit_test(test_lock_held_python_logging_handler_is_info),
        cmocka_unit_test(test_child_deadlock_fires_on_condition_wait),
        cmocka_unit_test(test_child_deadlock_not_on_timed_condition_wait),
        cmocka_unit_test(test_child_deadlock_fires_on_rwlock),
        cmocka_unit_test(test_unsafe_call_fires_once_per_site_with_children),
        cmocka_unit_test(test_unsafe_call_labelled_with_the_calling_program),
        cmocka_unit_test(test_unsafe_call_not_for_malloc_family),
        cmocka_unit_test(test_unsafe_call_not_for_registered_lock),
        cmocka_unit_test(test_unsafe_call_not_for_lock_only_this_thread_used),
        cmocka_unit_test(
            test_unsafe_call_not_for_locks_only_the_childs_threads_used),
        cmocka_unit_test(test_unsafe_call_fires_in_a_thread_the_child_started),
        cmocka_unit_test(
            test_unsafe_call_not_for_lock_only_taken_under_registered),
        cmocka_unit_test(test_unsafe_call_fires_for_lock_under_unregistered),
        cmocka_unit_test(test_unsafe_call_not_for_lock_under_many_transient),
        cmocka_unit_test(test_unsafe_call_fires_for_live_one_of_many),
        cmocka_unit_test(test_unsafe_call_not_for_lock_under_reused_address),
        cmocka_unit_test(test_unsafe_call_not_under_registered_in_reused_lock),
        cmocka_unit_test(
            test_unsafe_call_fires_under_new_lock_at_reused_address),
        cmocka_unit_test(test_unsafe_call_not_for_lock_under_many_live_pairs),
        cmocka_unit_test(test_unsafe_call_fires_for_one_unregistered_of_many),
        cmocka_unit_test(test_unsafe_call_not_for_malloc_in_plain_target),
        cmocka_unit_test(test_raw_atfork_handler_is_info),
        cmocka_unit_test(test_raw_atfork_handler_warns_in_order_violation),
        cmocka_unit_test(test_shared_lock_fires_as_info_when_child_runs_on),
        cmocka_unit_test(test_shared_lock_not_without_fork),
        cmocka_unit_test(test_shared_lock_not_when_child_only_exits),
        cmocka_unit_test(
            test_library_fires_with_live_state_and_child_running_on),
        cmocka_unit_test(test_library_not_when_merely_loaded),
        cmocka_unit_test(test_library_not_when_closed_before_fork),
        cmocka_unit_test(test_library_not_when_child_execs),
        cmocka_unit_test(test_library_not_with_its_adapter),
        cmocka_unit_test(test_stdio_fires_when_child_writes_it_again),
        cmocka_unit_test(test_stdio_not_when_child_only_exits),
        cmocka_unit_test(test_stdio_not_when_child_execs),
        cmocka_unit_test(test_stdio_not_when_prepare_flushed_it),
        cmocka_unit_test(test_fd_leak_not_for_jobserver),
        cmocka_unit_test(test_fd_leak_not_when_named_in_arguments),
        cmocka_unit_test(test_fd_leak_not_when_named_in_environment),
        cmocka_unit_test(test_fd_leak_outside_filter_is_by_descriptor),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
