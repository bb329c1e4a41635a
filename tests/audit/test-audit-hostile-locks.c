/* SPDX-License-Identifier: MIT */
/*
 * test-audit-hostile-locks.c: attacks on forksafe-audit's lock hooks
 * (src/preload/locks.c) and its child-deadlock guard, with correct
 * programs (tests/audit/hostile-locks.c, hostile-order.c, and
 * hostile-guard.c for the guard's timers, descriptors and process-shared
 * memory) that must behave the same with
 * and without the audit (docs/audit.md "What changes for the program")
 * and be reported by the rules of "When each finding fires".
 *
 * Tests named test_break_* fail on the code they were written against:
 * they are real breaks, run only with FORKSAFE_ADV=1 (else skipped, the
 * reason printed) until they are fixed. test_held_* are attacks that held.
 */
#include "audit-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOSTILE AU_TARGET("hostile-locks")
#define ORDER   AU_TARGET("hostile-order")
#define GUARD   AU_TARGET("hostile-guard")

/* The mode without the audit must exit 0 (the program is correct), and
   with it too: the same status. */
static void same_status_of(const char *target, const char *mode)
{
    char *argv[] = {(char *)target, (char *)mode, NULL};
    int plain = au_plain(argv);
    if (plain != 0)
        fprintf(stderr, "plain %s: status %d\n%s\n", mode, plain,
                au_slurp(au_err));
    assert_int_equal(plain, 0);
    const char *opts[] = {"--grace-ms", "300", NULL};
    int st = au_audit(opts, argv);
    if (st != 0)
        fprintf(stderr, "audited %s: status %d\n%s\n", mode, st,
                au_slurp(au_err));
    assert_int_equal(st, 0);
}

static void same_status(const char *mode)
{
    same_status_of(HOSTILE, mode);
}

/* A hostile-guard mode whose child hangs without the audit (the parent
   kills it after 10 s and exits 10): under the audit the guard must end
   the child with status 86 after the grace period and say child-deadlock
   on a lock of this kind. The parent prints the child's status. */
static void guard_ends(const char *mode, const char *kind)
{
    char *argv[] = {(char *)GUARD, (char *)mode, NULL};
    const char *opts[] = {"--grace-ms", "300", NULL};
    int st = au_audit(opts, argv);
    const char *err = au_slurp(au_err);
    int ended = strstr(err, "child status 86") != NULL;
    if (st != 10 || !ended)
        fprintf(stderr, "audited %s: status %d\n%s\n", mode, st, err);
    assert_int_equal(st, 10);
    assert_true(ended);
    char detail[80];
    snprintf(detail, sizeof detail, "--detail=child-deadlock:lock_kind~%s",
             kind);
    au_check("--has=child-deadlock", detail);
}

/* ------------------------------------------------------------ breaks */

/* The child arms a one-shot ITIMER_VIRTUAL (50 ms, SIGVTALRM caught by a
   handler that does nothing) and locks a mutex a thread of the parent
   held at the fork. ITIMER_VIRTUAL counts the child's CPU time, and a
   child blocked on a lock uses none: the timer never fires, and the child
   hangs without the audit. docs/audit.md: such a child is waited on
   "until the timer has fired and one more grace period has passed", then
   ended with child-deadlock. Seen on a78c679: the child hangs under the
   audit too ("child status -1": the parent killed it after 10 s; no
   child-deadlock, no finding at all): at every grace end getitimer() still
   says 50 ms to go, and grace_over() waits again.
   Fixed: ITIMER_VIRTUAL and ITIMER_PROF are no longer counted (CPU time,
   which a blocked child does not use). */
static void test_cpu_time_itimer_ends_child(void **state)
{
    (void)state;
    guard_ends("vtimer-mutex", "mutex");
}

/* The same with a POSIX timer on CLOCK_PROCESS_CPUTIME_ID (SIGUSR1, a
   handler that does nothing, 50 ms) and a semaphore a parent thread took.
   Seen on a78c679: the child hangs under the audit ("child status -1"
   after 10 s, no finding); /proc/self/timers and timer_gettime() say
   50 ms to go at every grace end.
   Fixed: POSIX timers on a CPU-time clock (ClockID 2, 3 or negative) are no
   longer counted. */
static void test_cpu_time_posix_timer_ends_child(void **state)
{
    (void)state;
    guard_ends("cputimer-sem", "semaphore");
}

/* A correct child: its POSIX timer (CLOCK_MONOTONIC, SIGUSR1 in 1 s) has
   a handler that posts the semaphore a parent thread held at the fork;
   the child then uses up its descriptors (RLIMIT_NOFILE 64, opens until
   EMFILE) and waits (sem_wait, again on EINTR). Without the audit: exit
   0 after 1 s. Seen on a78c679: status 10, "child status 86",
   child-deadlock on the semaphore after 300 ms: posix_timer_ms() cannot
   open /proc/self/timers, so the timer is not seen. The control with
   descriptors to spare (ptimer, test_held_posix_timer_handler_posts)
   exits 0. Fixed: the guard's /proc reads (forksafe__open_spare) raise
   the soft RLIMIT_NOFILE by one for the open when the hard limit allows
   it, and put it back. */
static void test_out_of_descriptors_sees_posix_timer(void **state)
{
    (void)state;
    same_status_of(GUARD, "emfile-ptimer");
    au_check("--lacks=child-deadlock");
}

/* A robust mutex in private memory (static data), held at the fork by a
   parent thread; the child, out of descriptors, locks it: its copy is
   never released (without the audit it hangs). Since a78c679 such a
   mutex is guarded (test_held_robust_private_mutex_ends_child), but only
   when /proc/self/maps can be read. Seen on a78c679: the child hangs
   under the audit ("child status -1" after 10 s, no finding):
   forksafe__maps_shared() fails with EMFILE and shared_in_fact() then
   keeps glibc's "process-shared" for every robust mutex, so the wait is
   never cut short. Fixed as test_out_of_descriptors_sees_posix_timer;
   the finding's record is written through the same spare descriptor. */
static void test_out_of_descriptors_robust_mutex_ended(void **state)
{
    (void)state;
    guard_ends("emfile-robust", "mutex");
}

/* A correct child out of descriptors locks a robust mutex nobody holds,
   with errno set to 4242 before: glibc's pthread_mutex_lock leaves errno
   alone (as test_held_errno_kept checks for the parent). Seen on a78c679:
   "errno 24 after pthread_mutex_lock", child status 51, status 10: the
   guard's /proc/self/maps read for the robust ("process-shared") mutex
   failed with EMFILE and left errno at EMFILE. Without the audit: 0.
   Fixed: forksafe__maps_shared() and the guard keep the caller's errno. */
static void test_out_of_descriptors_lock_keeps_errno(void **state)
{
    (void)state;
    same_status_of(GUARD, "emfile-errno");
}

/* A correct child on Linux: SIGALRM is caught with SA_RESTART by a
   handler that posts the semaphore a parent thread held at the fork, and
   alarm(1); sem_wait() is called once, and any failure is fatal. glibc's
   sem_wait (a futex wait without a timeout) is restarted after an
   SA_RESTART handler: plain, it returns 0 after 1 s (exit 0). Seen on
   a78c679: "sem_wait: Interrupted system call", child status 52, status
   10: the guard waits with sem_clockwait(), a timed futex wait, which
   the kernel never restarts after a handler, and since a78c679 that
   EINTR reaches the caller (FORKSAFE_POLICY_PASS no longer -1). On
   814b094 the same child was ended with 86.
   Fixed: an interrupted guarded wait is resumed when every signal the child
   catches has SA_RESTART, as the kernel would restart the plain sem_wait. */
static void test_sa_restart_sem_wait_restarts(void **state)
{
    (void)state;
    same_status_of(GUARD, "sem-restart");
}

/* A correct child: a SIGEV_THREAD timer's thread posts the semaphore a
   parent thread held at the fork 1 s later; errno is 4242 before
   sem_wait() and must be after it returns 0 (glibc's success leaves it).
   Seen on a78c679: "errno 110 after sem_wait", child status 56, status
   10: the guard's sem_clockwait() timed out (ETIMEDOUT) at the grace end
   before it waited on without a deadline. Without the audit: 0.
   Fixed: a guarded sem_wait that succeeds restores errno as it was. */
static void test_guarded_sem_wait_keeps_errno(void **state)
{
    (void)state;
    same_status_of(GUARD, "thread-errno");
}

/* A correct child: its first POSIX timer (SIGUSR1 in 1 s) has a handler
   that posts the semaphore a parent thread held at the fork; then it
   creates 150 more timers (unarmed) and waits. Without the audit: exit 0
   after 1 s. Seen on a78c679: status 10, "child status 86",
   child-deadlock after 300 ms: posix_timer_ms() reads /proc/self/timers
   into 4096 bytes once (about 69 bytes a timer, newest first), so the
   oldest timers, the armed one here, are never looked at.
   Fixed: /proc/self/timers is read whole, line by line. */
static void test_many_timers_armed_one_seen(void **state)
{
    (void)state;
    same_status_of(GUARD, "many-timers");
    au_check("--lacks=child-deadlock");
}

/* The child's periodic POSIX timer (100 ms) sends SIGUSR2, ignored
   (SIG_IGN, installed with SA_SIGINFO in sa_flags): no handler ever runs,
   so the child blocked on a mutex a parent thread held hangs without the
   audit and must be ended (as test_held_ignored_timer_ends_child, SIG_IGN
   without SA_SIGINFO, is). Seen on a78c679: the child hangs under the
   audit ("child status -1" after 10 s, no finding): catches() takes
   SA_SIGINFO in sa_flags for a handler whatever sa_sigaction is, and the
   periodic timer is always armed.
   Fixed: a handler is SIG_IGN or SIG_DFL in the shared slot whatever
   SA_SIGINFO says. */
static void test_ignored_periodic_timer_ends_child(void **state)
{
    (void)state;
    guard_ends("ign-periodic", "mutex");
}

/* A thread takes 20 mutexes and releases the first 16 in the order it
   took them: it holds 4 at the fork. Seen on 814b094: no
   lock-held-at-fork at all: the held stack (16 entries) never got the
   last 4. Fixed: the stack goes on past 16 entries in a mapping of the
   thread's slot (1,024 in all). */
static void test_locks_held_after_fifo_release(void **state)
{
    (void)state;
    same_status("many-fifo");
    au_check("--has=lock-held-at-fork", "--count=lock-held-at-fork=4");
}

/* The same, by a thread that claimed the slot of one that took the 20
   mutexes, released them and exited: the slot keeps its stack's room
   past 16 entries for its next thread. */
static void test_locks_held_in_reused_slot(void **state)
{
    (void)state;
    same_status("many-reuse");
    au_check("--has=lock-held-at-fork", "--count=lock-held-at-fork=4");
}

/* A thread holds 100 distinct mutexes at the fork. lock-held-at-fork is
   made once per (lock, site) for the first 32 of a process, so 32 are
   reported: the 20 the fork's snapshot (80 entries) has no room for,
   reported as found, the last of them the 100th lock (the target prints
   its address), then the snapshot's first 12. */
static void test_hundred_locks_held_at_fork(void **state)
{
    (void)state;
    same_status("many-100");
    const char *out = au_slurp(au_out);
    const char *p = strstr(out, "last 0x");
    assert_non_null(p);
    char last[64], detail[96];
    assert_int_equal(sscanf(p + 7, "%40[0-9a-f]", last), 1);
    snprintf(detail, sizeof detail, "--detail=lock-held-at-fork:lock~%s",
             last);
    au_check("--count=lock-held-at-fork=32", detail);
}

/* A registered mutex taken with pthread_mutex_trylock() against rank
   order. Seen on 814b094: lock-order-violation, error (so --fail-on error
   exits 3), "forksafe's prepare can deadlock with this code": a trylock
   never waits, so it cannot; taking a lock against the order with
   trylock and backing off is the usual way to do it safely. Fixed: a try
   acquire notes no order pair (KIND_TRY in src/preload/locks.c), except
   inside a fork's prepare window (test-audit-rules'
   test_raw_atfork_handler_warns_in_order_violation). The control
   (test_held_lock_against_rank_order_fires) blocks and must fire. */
static void test_trylock_against_rank_order(void **state)
{
    (void)state;
    same_status_of(ORDER, "trylock");
    au_check("--lacks=lock-order-violation");
}

/* A thread of the parent took a semaphore (sem_wait) and holds it at the
   fork; the child's own SIGALRM handler posts it (sem_post is
   async-signal-safe) 1 s later, and the child's sem_wait then returns.
   docs/audit.md: child-deadlock fires only on "something only a thread
   the child does not have could release". Seen on 814b094: the child is
   ended with status 86 after the grace period (child-deadlock, error).
   Fixed: at the end of a grace period the guard looks for a timer of the
   child (alarm, setitimer, timer_create with a signal) whose signal the
   child catches, and waits until it has fired and one more grace period
   has passed. */
static void test_sem_posted_by_child_signal_handler(void **state)
{
    (void)state;
    same_status("sem-signal");
    au_check("--lacks=child-deadlock");
    /* The same with a timer_create() timer (SIGEV_SIGNAL, SIGUSR1). */
    same_status("sem-posix-timer");
    au_check("--lacks=child-deadlock");
}

/* The must-fire beside it: the same child, whose SIGALRM handler does
   nothing, waits forever (without the audit the parent gives up on it
   after 10 s). Under the audit it is ended once the alarm has fired and a
   grace period has passed, with child-deadlock on the semaphore. */
static void test_sem_alarm_handler_that_never_posts_ends_child(void **state)
{
    (void)state;
    char *argv[] = {(char *)HOSTILE, "sem-alarm-noop", NULL};
    const char *opts[] = {"--grace-ms", "300", NULL};
    int st = au_audit(opts, argv);
    if (st != 10)
        fprintf(stderr, "audited sem-alarm-noop: status %d\n%s\n", st,
                au_slurp(au_err));
    assert_int_equal(st, 10); /* the program's: its child ended with 86 */
    au_check("--has=child-deadlock",
             "--detail=child-deadlock:lock_kind~semaphore");
}

/* The child waits on a condition (no timeout) whose mutex a thread of the
   parent used; a SIGEV_THREAD timer's callback, a thread glibc starts in
   the child without the interposed pthread_create, signals it 1 s later.
   Seen on 7cdc072: the child is ended with status 86 (child-deadlock on
   a condition): the guard believed the child had no thread of its own.
   Fixed: at the end of the grace period the guard counts the child's
   threads (/proc/self/task) and, finding one, waits on. */
static void test_cond_signalled_by_sigev_thread_timer(void **state)
{
    (void)state;
    same_status("cond-timer");
    au_check("--lacks=child-deadlock");
}

/* A robust mutex whose owner died, taken by another thread
   (pthread_mutex_lock() returns EOWNERDEAD: the caller holds it) and held
   at the fork. Seen on 814b094: no lock-held-at-fork at all; the control,
   the same mutex taken plainly (test_held_plain_held_mutex_reported), is
   reported. Two causes: the hooks noted an acquire only when the result
   was 0, and glibc marks every robust mutex process-shared, which the
   fork check skipped (a process-shared lock is released for the child by
   the process that holds it). Fixed: EOWNERDEAD is an acquire, and a
   process-shared lock counts as one only in shared memory. */
static void test_robust_eownerdead_held_at_fork(void **state)
{
    (void)state;
    same_status("robust");
    au_check("--has=lock-held-at-fork",
             "--detail=lock-held-at-fork:lock_kind~mutex");
}

/* A mutex made process-shared but living in private memory (static data)
   is copied by fork like any other: held by a parent thread at the fork,
   it is reported. The near miss is test_held_pshared_mutex_released_by_parent
   (in a MAP_SHARED mapping: the parent's thread releases it for the
   child, no child-deadlock). */
static void test_pshared_mutex_in_private_memory_reported(void **state)
{
    (void)state;
    same_status("pshared-private");
    au_check("--has=lock-held-at-fork",
             "--detail=lock-held-at-fork:lock_kind~mutex");
}

/* A thread holds 1,030 mutexes at the fork: its held stack records
   1,024; the findings (32, the cap) say that it held 6 more
   (holder_untracked). */
static void test_locks_past_the_stack_counted(void **state)
{
    (void)state;
    same_status("many-over");
    au_check("--count=lock-held-at-fork=32",
             "--detail-eq=lock-held-at-fork:holder_untracked=6");
}

/* A recursive mutex locked 20 times and unlocked 19 (held once) at the
   fork. Seen on 814b094: no lock-held-at-fork: each recursion level was
   one entry of the 16-entry held stack, so 4 levels were never pushed and
   19 unlocks popped every entry. Fixed: taking the lock on top of the
   stack again adds a level to its entry (struct held's depth), and a
   release takes one off before it pops. test_held_recursive_shallow is
   the control (3 and 2). */
static void test_recursive_mutex_deeper_than_stack(void **state)
{
    (void)state;
    same_status("recursive-deep");
    au_check("--has=lock-held-at-fork",
             "--detail=lock-held-at-fork:lock_kind~mutex");
}

/* The same with a read lock taken 20 times and released 19. Seen on
   814b094: not seen; fixed as the recursive mutex. */
static void test_rdlock_recursion_deeper_than_stack(void **state)
{
    (void)state;
    same_status("rdlock-deep");
    au_check("--has=lock-held-at-fork",
             "--detail=lock-held-at-fork:lock_kind~rwlock");
}

/* Registered mutexes high (APP+200), low (APP+100), mid (APP+150): the
   thread locks high, trylocks low (succeeds), then locks mid, blocking,
   while it holds high. docs/audit.md: lock-order-violation fires when "a
   thread took a registered lock while holding a registered lock of a
   higher rank", and mid (150) was taken, with a blocking call, under high
   (200): a thread that follows the order (mid, then high) deadlocks with
   this one. Seen on a78c679: no finding at all (exit 0, "0 findings"):
   the hooks note only the innermost pair, and since a78c679 none for the
   trylock of low, so the high-over-mid descent is never noted (low to
   mid ascends). On 814b094 the same program gave lock-order-violation
   (error) for high over low.
   Fixed: a blocking acquire notes its pair with the locks under a tried one
   down to one taken blocking (struct held's tried). */
static void test_trylock_between_keeps_order_violation(void **state)
{
    (void)state;
    same_status_of(ORDER, "try-middle");
    au_check("--has=lock-order-violation",
             "--severity=lock-order-violation=error");
}

/* ------------------------------------------------------------ held */

static void test_held_lock_against_rank_order_fires(void **state)
{
    (void)state;
    same_status_of(ORDER, "lock");
    au_check("--has=lock-order-violation",
             "--severity=lock-order-violation=error");
}

/* Successful lock, semaphore, init/destroy and munmap calls leave errno
   as it was, with the audit as without. */
static void test_held_errno_kept(void **state)
{
    (void)state;
    same_status("errno");
}

/* A thread cancelled in pthread_cond_wait (its cleanup handler unlocks
   the mutex): not held at the fork, and the child takes it. */
static void test_held_cancelled_cond_wait(void **state)
{
    (void)state;
    same_status("cancel-cond");
    au_check("--lacks=lock-held-at-fork", "--lacks=child-deadlock");
}

static void test_held_plain_held_mutex_reported(void **state)
{
    (void)state;
    same_status("held");
    au_check("--has=lock-held-at-fork", "--severity=lock-held-at-fork=info");
}

static void test_held_recursive_shallow(void **state)
{
    (void)state;
    same_status("recursive-shallow");
    au_check("--has=lock-held-at-fork");
}

/* Trylock, timed mutex, rwlock and condition waits on locks held at the
   fork give up by themselves: never ended, never child-deadlock. */
static void test_held_timed_waits_never_cut(void **state)
{
    (void)state;
    same_status("timed");
    au_check("--lacks=child-deadlock");
    same_status("sem-timed");
    au_check("--lacks=child-deadlock");
}

/* A process-shared mutex held by a parent thread at the fork and released
   1 s later: the child waiting for it gets it. */
static void test_held_pshared_mutex_released_by_parent(void **state)
{
    (void)state;
    same_status("pshared");
    au_check("--lacks=child-deadlock");
}

/* The control of test_out_of_descriptors_sees_posix_timer: the
   child's POSIX timer handler posts the semaphore 1 s after the fork;
   the child is not ended. */
static void test_held_posix_timer_handler_posts(void **state)
{
    (void)state;
    same_status_of(GUARD, "ptimer");
    au_check("--lacks=child-deadlock");
}

/* A timer whose signal the child ignores (SIG_IGN) cannot release
   anything: the child is ended after the grace period. */
static void test_held_ignored_timer_ends_child(void **state)
{
    (void)state;
    guard_ends("ign-timer", "semaphore");
}

/* SIGALRM caught but blocked (sigprocmask): alarm(1) fires, the signal
   stays pending, the handler never runs; the timer is disarmed once it
   fired, so the child is ended a grace period later (seen: about 1.3 s). */
static void test_held_blocked_alarm_ends_child(void **state)
{
    (void)state;
    guard_ends("blocked-alarm", "semaphore");
}

/* A periodic ITIMER_REAL (100 ms) whose SIGALRM handler would post, with
   SIGALRM blocked around the wait: the kernel rearms an itimer only when
   its signal is delivered, so getitimer() says disarmed while the signal
   is pending, and the child is ended after one grace period (seen: 0.4 s,
   child-deadlock on the mutex). */
static void test_held_blocked_periodic_timer_ends_child(void **state)
{
    (void)state;
    guard_ends("blocked-periodic", "mutex");
}

/* A watchdog: the child's alarm(1) handler leaves with _exit(0) while the
   child waits for a mutex held at the fork. Exit 0 with the audit as
   without (on 814b094 the child was ended with 86 first). */
static void test_held_watchdog_alarm_exits_child(void **state)
{
    (void)state;
    same_status_of(GUARD, "watchdog");
    au_check("--lacks=child-deadlock");
}

/* The classic timeout: a SIGALRM handler siglongjmps out of a guarded
   pthread_mutex_lock or sem_wait on a lock held at the fork (1 s); the
   child takes a lock of its own, jumps out of a second guarded wait, and
   exits 0, with the audit as without. */
static void test_held_siglongjmp_out_of_guarded_wait(void **state)
{
    (void)state;
    same_status_of(GUARD, "longjmp-mutex");
    au_check("--lacks=child-deadlock");
    same_status_of(GUARD, "longjmp-sem");
    au_check("--lacks=child-deadlock");
}

/* A robust mutex, and a process-shared rwlock and semaphore, in private
   memory (static data), held at the fork by a parent thread: the child's
   copies are never released; each child is ended and each lock is
   reported held at the fork. */
static void test_held_private_pshared_locks_end_child(void **state)
{
    (void)state;
    guard_ends("robust-held", "mutex");
    au_check("--has=lock-held-at-fork");
    guard_ends("private-rwlock", "rwlock");
    au_check("--has=lock-held-at-fork");
    guard_ends("private-sem", "semaphore");
    au_check("--has=lock-held-at-fork");
}

/* A robust process-shared mutex and a process-shared semaphore in shared
   memory (MAP_SHARED anonymous, a memfd, a file, System V shm, a mapping
   mremap'd before the locks were made in it), held by a parent thread at
   the fork and released 1 s later: the child gets both, is never ended,
   and neither is reported held at the fork. */
static void test_held_shared_memory_locks_released_by_parent(void **state)
{
    (void)state;
    const char *modes[] = {"shared-anon", "shared-memfd", "shared-file",
                           "shared-sysv", "shared-mremap"};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        same_status_of(GUARD, modes[i]);
        au_check("--lacks=child-deadlock", "--lacks=lock-held-at-fork");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sem_posted_by_child_signal_handler),
        cmocka_unit_test(test_sem_alarm_handler_that_never_posts_ends_child),
        cmocka_unit_test(test_cond_signalled_by_sigev_thread_timer),
        cmocka_unit_test(test_robust_eownerdead_held_at_fork),
        cmocka_unit_test(test_pshared_mutex_in_private_memory_reported),
        cmocka_unit_test(test_recursive_mutex_deeper_than_stack),
        cmocka_unit_test(test_rdlock_recursion_deeper_than_stack),
        cmocka_unit_test(test_locks_held_after_fifo_release),
        cmocka_unit_test(test_locks_held_in_reused_slot),
        cmocka_unit_test(test_hundred_locks_held_at_fork),
        cmocka_unit_test(test_locks_past_the_stack_counted),
        cmocka_unit_test(test_trylock_against_rank_order),
        cmocka_unit_test(test_held_lock_against_rank_order_fires),
        cmocka_unit_test(test_held_errno_kept),
        cmocka_unit_test(test_held_cancelled_cond_wait),
        cmocka_unit_test(test_held_plain_held_mutex_reported),
        cmocka_unit_test(test_held_recursive_shallow),
        cmocka_unit_test(test_held_timed_waits_never_cut),
        cmocka_unit_test(test_held_pshared_mutex_released_by_parent),
        cmocka_unit_test(test_cpu_time_itimer_ends_child),
        cmocka_unit_test(test_cpu_time_posix_timer_ends_child),
        cmocka_unit_test(test_out_of_descriptors_sees_posix_timer),
        cmocka_unit_test(test_out_of_descriptors_robust_mutex_ended),
        cmocka_unit_test(test_out_of_descriptors_lock_keeps_errno),
        cmocka_unit_test(test_sa_restart_sem_wait_restarts),
        cmocka_unit_test(test_guarded_sem_wait_keeps_errno),
        cmocka_unit_test(test_many_timers_armed_one_seen),
        cmocka_unit_test(test_ignored_periodic_timer_ends_child),
        cmocka_unit_test(test_trylock_between_keeps_order_violation),
        cmocka_unit_test(test_held_posix_timer_handler_posts),
        cmocka_unit_test(test_held_ignored_timer_ends_child),
        cmocka_unit_test(test_held_blocked_alarm_ends_child),
        cmocka_unit_test(test_held_blocked_periodic_timer_ends_child),
        cmocka_unit_test(test_held_watchdog_alarm_exits_child),
        cmocka_unit_test(test_held_siglongjmp_out_of_guarded_wait),
        cmocka_unit_test(test_held_private_pshared_locks_end_child),
        cmocka_unit_test(test_held_shared_memory_locks_released_by_parent),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
