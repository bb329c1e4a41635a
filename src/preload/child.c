/* SPDX-License-Identifier: MIT */
/*
 * child.c: what the audit does in a watched child: the child of a
 * multi-threaded fork, or of a fork whose parent had output pending in
 * stdout/stderr or library state (libs.c). It notes whether the child runs
 * on (does anything but exec or _exit: takes a lock, waits, starts a
 * thread, writes or flushes stdio, calls exit), since every hazard at a
 * fork is one only for a child that runs on; reports a lock another thread
 * of the parent used that no prepare handler took (unsafe-call-in-child),
 * and output the parent had pending that the child writes again
 * (stdio-unflushed-at-fork). In the child of a multi-threaded fork, a
 * lock another thread held at the fork, or a condition only another
 * thread could signal, is waited for only for the grace period, after
 * which the child is ended with a child-deadlock finding instead of
 * hanging.
 *
 * malloc, calloc, realloc and free are not watched: glibc's fork takes and
 * resets the allocator's locks, so they are usable in the child; nor are
 * stdio's locks a hazard there (glibc re-initialises every FILE lock in the
 * child), only its pending output.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define fk forksafe__audit_fk

/* ------------------------------------------------------------ running on */

long forksafe__audit_grace_ms = 2000;

/* The fork that made this process, as a frame. */
static void fork_frame(struct forksafe__rec *r)
{
    forksafe__rec_frame(r, "fork-call", 0, NULL, LOAD(&fk.fork_site));
}

static void report_libs(void)
{
    for (int i = 0; i < fk.nlibs && i < LIBSNAP_MAX; i++) {
        const struct libsnap *l = &fk.libs[i];
        int nsw = forksafe__audit_lib_no_safe_way(l->lib);
        if (l->adapter && !nsw)
            continue;
        struct forksafe__rec *r = forksafe__rec_begin("finding");
        if (!r)
            return;
        forksafe__audit_rec_common(r, "library-without-adapter",
                                   nsw ? "error" : "warning");
        forksafe__rec_str(r, "library", forksafe__audit_lib_path(l->lib));
        forksafe__rec_str(r, "adapter", forksafe__audit_lib_adapter(l->lib));
        forksafe__rec_bool(r, "no_safe_way", nsw);
        forksafe__rec_int(r, "live", l->count);
        forksafe__rec_int(r, "fork_pid", LOAD(&fk.fork_pid));
        fork_frame(r);
        forksafe__rec_frame(r, "state-created", l->tid, NULL, l->site);
        forksafe__rec_end_batched(r);
    }
}

void forksafe__audit_ran_on(void)
{
    if (!LOAD(&fk.watch) || LOAD(&fk.ran_on) || forksafe__in_hook ||
        forksafe__in_resolve)
        return;
    STORE(&fk.ran_on, 1);
    int saved = errno;
    struct forksafe__rec *r = forksafe__rec_begin("ranon");
    if (r) {
        forksafe__rec_int(r, "pid", forksafe__getpid());
        forksafe__rec_int(r, "fork_pid", LOAD(&fk.fork_pid));
        forksafe__rec_bool(r, "mt", LOAD(&fk.child_mt));
        forksafe__rec_bool(r, "forksafe", LOAD(&fk.coordinated));
        fork_frame(r);
        /* A child of a multi-threaded fork writes it at once: the
           parent's findings about the fork count only children that ran
           on, and one that then dies of a signal (abort, SIGKILL) would
           take a batched record with it. */
        if (LOAD(&fk.child_mt))
            forksafe__rec_end(r);
        else
            forksafe__rec_end_batched(r);
    }
    report_libs();
    if (errno != saved)
        errno = saved;
}

/* ------------------------------------------------------------ locks */

/* The snapshot's holder of lock, if another thread held it at the fork
   and no prepare took it. */
static int snap_holder(const void *lock, void **site)
{
    int holder = 0;
    *site = NULL;
    for (int i = 0; i < fk.nsnap && i < SNAP_MAX; i++)
        if (fk.snap[i].lock == lock && !fk.snap[i].covered) {
            holder = fk.snap[i].holder;
            *site = fk.snap[i].site;
        }
    return holder;
}

static int in_snapshot(const void *lock)
{
    for (int i = 0; i < fk.nsnap && i < SNAP_MAX; i++)
        if (fk.snap[i].lock == lock)
            return 1;
    return 0;
}

/* The threads of this child: those that took a lock here or started
   here, by TID, so that a lock-table entry written after the fork (by a
   thread of the child, perhaps gone since) is not taken for a use by a
   thread of the parent. Reset in each new process. */
#define OWN_MAX 256
static struct {
    long pid; /* the process the set is for */
    int n;
    int tid[OWN_MAX];
} own;

static void own_reset_if_new(void)
{
    long pid = forksafe__getpid(), was = LOAD(&own.pid);
    if (was != pid &&
        __atomic_compare_exchange_n(&own.pid, &was, pid, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        STORE(&own.n, 0);
}

static void own_add(int tid)
{
    own_reset_if_new();
    int n = LOAD(&own.n);
    for (int i = 0; i < n && i < OWN_MAX; i++)
        if (LOAD(&own.tid[i]) == tid)
            return;
    int i = __atomic_fetch_add(&own.n, 1, __ATOMIC_ACQ_REL);
    if (i < OWN_MAX)
        STORE(&own.tid[i], tid);
}

/* 1 if tid is a thread of this process (not of the parent). */
static int own_tid(int tid)
{
    if (tid == 0)
        return 0;
    if (tid == (int)forksafe__getpid() || forksafe__thread_by_tid(tid))
        return 1;
    if (LOAD(&own.pid) != forksafe__getpid())
        return 0;
    int n = LOAD(&own.n);
    for (int i = 0; i < n && i < OWN_MAX; i++)
        if (LOAD(&own.tid[i]) == tid)
            return 1;
    return 0;
}

/* Another thread of the parent that used lock: its TID and where, from
   the lock table the child inherited (-1: a thread of unknown TID). 0 if
   only the forking thread used it in the parent, if only threads of this
   child did (a lock made or re-initialised in the child, or one the
   child's own threads share), or unknown. The forking thread keeps its
   record, and so its ident, in the child (its TID there is the child's
   PID); the entry's first user is known by ident, the second by TID. */
static int other_user(const void *lock, void **site)
{
    *site = NULL;
    struct lock_ent *e = forksafe__lock_lookup(lock);
    if (!e)
        return 0;
    unsigned owner = LOAD(&e->owner);
    if (!owner)
        return 0;
    struct thread_rec *forker =
        forksafe__thread_by_tid((int)forksafe__getpid());
    int tid1 = e->tid1, tid2 = e->tid2;
    if (!(forker && owner == forker->ident) && !(tid1 && own_tid(tid1))) {
        *site = e->site1;
        return tid1 ? tid1 : -1;
    }
    if (LOAD(&e->shared) && !(tid2 && own_tid(tid2))) {
        *site = e->site2;
        return tid2 ? tid2 : -1;
    }
    return 0;
}

/* 1 if o, a lock held when another was taken (the pair noted at stamp),
   covers that taking: a prepare took it at the fork that made this
   process, or the lock held then was gone by then (destroyed, its memory
   unmapped, or made anew at its address since: nobody held it at the
   fork). */
static int outer_covers(uintptr_t o, unsigned stamp)
{
    if (o == OUTER_BARE || o == 0)
        return 0;
    if (forksafe__audit_prepared((const void *)o))
        return 1;
    return forksafe__lock_gone_since(o, stamp);
}

/* 1 if, each time a thread of the parent took lock (as the table saw it:
   each distinct pair of innermost and outermost lock held then, while
   both lived), one of the two covered it (outer_covers): no thread could
   hold lock at the fork. SQLite's per-file lock and shm mutexes are taken
   only under a connection mutex, the VFS mutex or
   forksafe_sqlite_close()'s lock, which forksafe-sqlite registers. What
   the child's own threads added since does not count; a lock taken with
   no lock held, kept past a lock it was taken under, or under more
   distinct live pairs than the table keeps (OUTER_MAX), is not covered. */
static int covered_by_outer(const void *lock)
{
    struct lock_ent *e = forksafe__lock_lookup(lock);
    if (!e)
        return 0;
    if (LOAD(&e->mixed) && !own_tid(e->mixed_tid))
        return 0;
    int seen = 0;
    for (int i = 0; i < OUTER_MAX; i++) {
        uintptr_t o = LOAD(&e->outer[i]), o0 = LOAD(&e->outer0[i]);
        unsigned st = LOAD(&e->outer_stamp[i]);
        if (o == 0)
            continue;
        if (own_tid(LOAD(&e->outer_tid[i])))
            continue;
        if (o == (uintptr_t)lock && o0 == (uintptr_t)lock)
            continue; /* a relock under itself: its first taking counts */
        if (!outer_covers(o, st) &&
            !(o0 != (uintptr_t)lock && outer_covers(o0, st)))
            return 0;
        seen = 1;
    }
    return seen;
}

void forksafe__child_acquired(void *lock, int kind, const char *fn, void *site)
{
    forksafe__audit_ran_on();
    if (!LOAD(&fk.child_mt) || forksafe__in_hook || forksafe__in_resolve)
        return;
    own_add((int)forksafe__gettid());
    /* A lock held at the fork is child-deadlock's business; one a prepare
       took (a registered lock, a callback's or handler's) is covered; the
       re-acquire that ends a condition wait follows a lock call of its
       own. */
    if (strncmp(fn, "pthread_cond", 12) == 0 || in_snapshot(lock) ||
        forksafe__audit_prepared(lock))
        return;
    void *osite;
    int other = other_user(lock, &osite);
    /* A process-shared lock: the parent's thread releases it for the
       child too. */
    if (!other || forksafe__lock_pshared_copy(lock, kind, NULL) == 1 ||
        covered_by_outer(lock))
        return;
    if (!forksafe__audit_once_first(&fk.once_unsafe, (uintptr_t)site))
        return;
    int saved = errno;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (r) {
        forksafe__audit_rec_common(r, "unsafe-call-in-child", "warning");
        forksafe__rec_str(r, "function", fn);
        forksafe__rec_hex(r, "lock", (uintptr_t)lock);
        forksafe__rec_str(r, "lock_kind", kind_name(kind));
        forksafe__rec_int(r, "fork_pid", LOAD(&fk.fork_pid));
        forksafe__rec_frame(r, "call", forksafe__gettid(), NULL, site);
        forksafe__rec_frame(r, "other-thread-lock", other > 0 ? other : 0, NULL,
                            osite);
        forksafe__rec_end_batched(r);
    }
    if (errno != saved)
        errno = saved;
}

/* Write a child-deadlock finding for lock and end the process with
   FORKSAFE_AUDIT_DEADLOCK_STATUS. */
static void __attribute__((noreturn))
deadlock_exit(void *lock, const char *kind, void *site, int holder,
              void *holder_site)
{
    forksafe__rec_make_room(); /* frames need /proc/self/maps */
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (r) {
        forksafe__audit_rec_common(r, "child-deadlock", "error");
        forksafe__rec_hex(r, "lock", (uintptr_t)lock);
        forksafe__rec_str(r, "lock_kind", kind);
        forksafe__rec_int(r, "holder_tid", holder);
        forksafe__rec_int(r, "grace_ms", forksafe__audit_grace_ms);
        forksafe__rec_int(r, "exit_status", FORKSAFE_AUDIT_DEADLOCK_STATUS);
        forksafe__rec_frame(r, "lock-call", forksafe__gettid(), NULL, site);
        if (holder_site)
            forksafe__rec_frame(r, "lock-taken", holder, NULL, holder_site);
        forksafe__rec_end_final(r);
    }
    _exit(FORKSAFE_AUDIT_DEADLOCK_STATUS);
}

static void add_ms(struct timespec *ts, long ms)
{
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Now + the grace period, on clock. */
static void grace_deadline(struct timespec *ts, clockid_t clock)
{
    clock_gettime(clock, ts);
    add_ms(ts, forksafe__audit_grace_ms);
}

/* May this child's waits be cut short? Only in the child of a
   multi-threaded fork that started no thread of its own, with a record
   directory (without one the interposer changes nothing, not even a
   hanging child). */
static int guarded(void)
{
    return LOAD(&fk.child_mt) && !LOAD(&fk.child_has_threads) &&
           forksafe__out_enabled();
}

/* At the end of a grace period: has the child a thread it did not start
   through pthread_create()? glibc starts SIGEV_THREAD timer threads
   without it, and raw clone() threads exist. Such a thread may be the
   one to release the lock, so the wait goes on without a deadline, as it
   would without the audit, and later waits are not guarded. */
static int child_grew_thread(void)
{
    if (forksafe__task_count() <= 1)
        return 0;
    STORE(&fk.child_has_threads, 1);
    return 1;
}

/* The flags of sig's handler (sa_flags, >= 0) if the child catches it
   (a handler, not SIG_DFL or SIG_IGN), else -1. With SA_SIGINFO the same
   slot holds sa_sigaction, which may be SIG_IGN too. */
static int handler_flags(int sig)
{
    struct sigaction sa;
    if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP ||
        sigaction(sig, NULL, &sa) != 0 || sa.sa_handler == SIG_DFL ||
        sa.sa_handler == SIG_IGN)
        return -1;
    return sa.sa_flags & INT_MAX;
}

static int catches(int sig)
{
    return handler_flags(sig) >= 0;
}

/* A timer further off than this is taken for one that may never fire
   while the child waits: the wait goes on without a deadline. */
#define TIMER_FAR_MS (24L * 3600 * 1000)

static long ms_of(time_t sec, long nsec)
{
    if (sec >= TIMER_FAR_MS / 1000)
        return TIMER_FAR_MS;
    return (long)sec * 1000 + nsec / 1000000 + 1;
}

/* One timer of /proc/self/timers, its lines read so far. */
struct ptimer {
    long id;
    int sig, by_signal;
    long best; /* the longest time until a timer read so far fires */
};

/* The end of a timer's lines (its "ClockID: c"): the time until it fires,
   if it sends a signal the child catches on a clock that runs while the
   child waits (not a CPU-time clock: a blocked child uses none), else -1.
   A SIGEV_SIGNAL timer's timer_t is its kernel ID (glibc, musl);
   SIGEV_THREAD timers (notify: thread/) run in a thread, which
   child_grew_thread() sees. */
static long ptimer_ms(const struct ptimer *t, long clock)
{
    if (t->id < 0 || !t->by_signal || clock < 0 ||
        clock == CLOCK_PROCESS_CPUTIME_ID || clock == CLOCK_THREAD_CPUTIME_ID ||
        !catches(t->sig))
        return -1;
    struct itimerspec it;
    if (timer_gettime((timer_t)(intptr_t)t->id, &it) != 0 ||
        (!it.it_value.tv_sec && !it.it_value.tv_nsec))
        return -1;
    return ms_of(it.it_value.tv_sec, it.it_value.tv_nsec);
}

/* Per timer, /proc/self/timers has "ID: n", "signal: sig/mask", "notify:
   signal/pid.P" (or thread/tid.T, none/...) and "ClockID: c". */
static int ptimer_line(char *line, void *arg)
{
    struct ptimer *t = arg;
    if (strncmp(line, "ID: ", 4) == 0) {
        t->id = strtol(line + 4, NULL, 10);
        t->sig = t->by_signal = 0;
    } else if (strncmp(line, "signal: ", 8) == 0) {
        t->sig = (int)strtol(line + 8, NULL, 10);
    } else if (strncmp(line, "notify: signal/", 15) == 0) {
        t->by_signal = 1;
    } else if (strncmp(line, "ClockID: ", 9) == 0) {
        long ms = ptimer_ms(t, strtol(line + 9, NULL, 10));
        if (ms > t->best)
            t->best = ms;
        t->id = -1;
    }
    return 0;
}

/* The child's POSIX timers (/proc/self/timers, Linux, read whole): the
   longest time until one of them (ptimer_ms()) fires, or -1. Timers are
   not inherited: these are the child's own. */
static long posix_timer_ms(void)
{
    struct ptimer t = {-1, 0, 0, -1};
    forksafe__proc_lines("/proc/self/timers", ptimer_line, &t);
    return t.best;
}

/* At the end of a grace period with no thread grown: a timer of the child
   armed to send a signal it catches (alarm(), setitimer(ITIMER_REAL),
   timer_create() with SIGEV_SIGNAL on a clock that is not CPU time)
   whose handler may post the semaphore or release the lock. Returns the
   milliseconds until the latest such timer fires, or -1 if there is
   none. ITIMER_VIRTUAL and ITIMER_PROF count CPU time, which a blocked
   child does not use: they never fire while it waits. */
static long child_timer_ms(void)
{
    long best = posix_timer_ms();
    struct itimerval it;
    if (getitimer(ITIMER_REAL, &it) == 0 &&
        (it.it_value.tv_sec || it.it_value.tv_usec) && catches(SIGALRM)) {
        long ms = ms_of(it.it_value.tv_sec, it.it_value.tv_usec * 1000L);
        if (ms > best)
            best = ms;
    }
    return best;
}

enum { GRACE_END, GRACE_FOREVER, GRACE_MORE };

/* A guarded wait timed out at *ts (on clock): end the child
   (GRACE_END), wait on without a deadline (GRACE_FOREVER: a thread the
   child did not start through pthread_create() may release it), or wait
   again until *ts, moved past the child's own timer and one more grace
   period (GRACE_MORE: the timer's signal handler may release it; a
   handler that does not leaves the timer disarmed, or rearms it, and the
   next grace period decides). */
static int grace_over(struct timespec *ts, clockid_t clock)
{
    int saved = errno;
    int w = GRACE_MORE;
    long ms = -1;
    if (child_grew_thread())
        w = GRACE_FOREVER;
    else if ((ms = child_timer_ms()) < 0)
        w = GRACE_END;
    else if (ms >= TIMER_FAR_MS)
        w = GRACE_FOREVER;
    if (w == GRACE_MORE) {
        grace_deadline(ts, clock);
        add_ms(ts, ms);
    }
    errno = saved;
    return w;
}

/* A guarded semaphore wait (sem_clockwait, which the kernel never
   restarts) was interrupted by a signal handler: would the plain
   sem_wait the program called have been restarted? It is when the
   handler was installed with SA_RESTART. Which signal it was is not
   known: restarted when every signal the child catches has SA_RESTART. */
static int restart_after_handler(void)
{
    int saved = errno;
    int all = 1;
    for (int sig = 1; sig < NSIG && all; sig++) {
        int f = handler_flags(sig);
        if (f >= 0 && !(f & SA_RESTART))
            all = 0;
    }
    errno = saved;
    return all;
}

/* In a child of a multi-threaded fork, a lock that another thread held at
   the fork can never be released: wait for it for the grace period only.
   Process-shared locks can be released by another process, and are left
   alone. */
static int child_mutex_lock(pthread_mutex_t *m, void *site)
{
    if (!guarded())
        return FORKSAFE_POLICY_PASS;
    void *holder_site;
    int holder = snap_holder(m, &holder_site);
    int r = REAL(pthread_mutex_trylock)(m);
    if (r != EBUSY)
        return r;
    /* Busy in a single-threaded child: the holder is a thread that did not
       survive the fork, unless it is this thread itself (a relock). glibc
       keeps the holder's TID for every mutex type. */
    int owner = (int)forksafe__mutex_owner(m);
    if (!holder && owner != 0 && owner != (int)forksafe__gettid())
        holder = owner;
    /* A process-shared mutex, or one the platform cannot describe, may be
       released by another process: never ended. Asked only of a busy
       mutex, since the answer may take a read of /proc/self/maps. Nor is
       a priority-inheritance mutex: the kernel knows its holder by TID,
       and when that thread of the parent exits it gives a robust one to
       the waiting child (EOWNERDEAD); glibc aborts the wait for any
       other, with the audit as without. */
    if (!holder || forksafe__mutex_pshared(m) != 0 ||
        forksafe__mutex_pi(m) != 0)
        return FORKSAFE_POLICY_PASS;
    struct timespec ts;
    grace_deadline(&ts, CLOCK_MONOTONIC);
    for (;;) {
        r = REAL(pthread_mutex_clocklock)(m, CLOCK_MONOTONIC, &ts);
        if (r != ETIMEDOUT)
            return r;
        int w = grace_over(&ts, CLOCK_MONOTONIC);
        if (w == GRACE_FOREVER)
            return REAL(pthread_mutex_lock)(m);
        if (w == GRACE_END)
            deadlock_exit(m, "mutex", site, holder, holder_site);
    }
}

static int child_sem_wait(sem_t *s, void *site)
{
    void *holder_site;
    int holder = snap_holder(s, &holder_site);
    int v;
    if (!holder || !guarded() || forksafe__sem_pshared(s) != 0 ||
        sem_getvalue(s, &v) != 0 || v != 0)
        return FORKSAFE_POLICY_PASS;
    struct timespec ts;
    grace_deadline(&ts, CLOCK_MONOTONIC);
    int saved = errno;
    for (;;) {
        int r = REAL(sem_clockwait)(s, CLOCK_MONOTONIC, &ts);
        if (r == 0) {
            errno = saved; /* the timed-out waits before leave no trace */
            return 0;
        }
        if (errno == EINTR && restart_after_handler())
            continue;
        if (errno != ETIMEDOUT)
            return r;
        int w = grace_over(&ts, CLOCK_MONOTONIC);
        if (w == GRACE_FOREVER) {
            errno = saved;
            return REAL(sem_wait)(s);
        }
        if (w == GRACE_END)
            deadlock_exit(s, "semaphore", site, holder, holder_site);
    }
}

static int child_rwlock(pthread_rwlock_t *l, int write, void *site)
{
    void *holder_site;
    int holder = snap_holder(l, &holder_site);
    if (!holder || !guarded() ||
        forksafe__lock_pshared_copy(l, KIND_RWLOCK, NULL) != 0)
        return FORKSAFE_POLICY_PASS;
    int r = write ? REAL(pthread_rwlock_trywrlock)(l)
                  : REAL(pthread_rwlock_tryrdlock)(l);
    if (r != EBUSY)
        return r;
    struct timespec ts;
    grace_deadline(&ts, CLOCK_REALTIME);
    for (;;) {
        r = write ? REAL(pthread_rwlock_timedwrlock)(l, &ts)
                  : REAL(pthread_rwlock_timedrdlock)(l, &ts);
        if (r != ETIMEDOUT)
            return r;
        int w = grace_over(&ts, CLOCK_REALTIME);
        if (w == GRACE_FOREVER)
            return write ? REAL(pthread_rwlock_wrlock)(l)
                         : REAL(pthread_rwlock_rdlock)(l);
        if (w == GRACE_END)
            deadlock_exit(l, "rwlock", site, holder, holder_site);
    }
}

int forksafe__policy_acquire(void *lock, int op, void *site)
{
    if (!LOAD(&fk.watch) || forksafe__in_resolve)
        return FORKSAFE_POLICY_PASS;
    if (!forksafe__audit_forking)
        forksafe__audit_ran_on();
    switch (op) {
    case FORKSAFE_OP_MUTEX_LOCK:
        return child_mutex_lock(lock, site);
    case FORKSAFE_OP_SEM_WAIT:
        return child_sem_wait(lock, site);
    case FORKSAFE_OP_RDLOCK:
        return child_rwlock(lock, 0, site);
    case FORKSAFE_OP_WRLOCK:
        return child_rwlock(lock, 1, site);
    default:
        return FORKSAFE_POLICY_PASS;
    }
}

/* A condition wait without a timeout in the child of a multi-threaded
   fork can only end when another thread of this process signals it, and
   the child has no other thread: when another thread of the parent used
   its mutex (the likely signaller), it is waited on for the grace period
   only. A process-shared mutex or a condition in shared memory (another
   process may signal) is left alone. */
int forksafe__policy_cond_wait(pthread_cond_t *c, pthread_mutex_t *m,
                               void *site)
{
    if (!LOAD(&fk.watch))
        return FORKSAFE_POLICY_PASS;
    if (!forksafe__audit_forking)
        forksafe__audit_ran_on();
    if (!guarded())
        return FORKSAFE_POLICY_PASS;
    /* Nor a condition /proc/self/maps says is in shared memory
       (MAP_SHARED, System V), which another process may signal whatever
       its mutex is; when maps cannot be read, the wait is guarded as
       before. */
    void *osite;
    int other = other_user(m, &osite);
    if (other <= 0 || forksafe__mutex_pshared(m) != 0 ||
        forksafe__maps_shared(c) == 1)
        return FORKSAFE_POLICY_PASS;
    struct timespec ts;
    grace_deadline(&ts, CLOCK_MONOTONIC);
    for (;;) {
        int r = REAL(pthread_cond_clockwait)(c, m, CLOCK_MONOTONIC, &ts);
        if (r != ETIMEDOUT)
            return r;
        int w = grace_over(&ts, CLOCK_MONOTONIC);
        if (w == GRACE_FOREVER)
            return REAL(pthread_cond_wait)(c, m);
        if (w == GRACE_END)
            deadlock_exit(c, "condition", site, other, osite);
    }
}

void forksafe__policy_thread_created(void)
{
    forksafe__audit_ran_on();
    if (LOAD(&fk.child_mt))
        own_add((int)forksafe__gettid());
    if (LOAD(&fk.child_mt) && !LOAD(&fk.child_has_threads))
        STORE(&fk.child_has_threads, 1);
}

/* ------------------------------------------------------------ stdio */

void forksafe__audit_stdio_check(FILE *f, int flushing, void *site)
{
    if (!LOAD(&fk.watch))
        return;
    for (int i = 0; i < 2; i++) {
        long was = LOAD(&fk.stdio_pending[i]);
        FILE *s = i ? stderr : stdout;
        if (was <= 0 || (f && f != s))
            continue;
        size_t now = forksafe__file_pending(s);
        /* Before a flush: what is pending now includes what was pending at
           the fork. After an output call: the buffer holds less than at the
           fork, so it was written out (with the parent's bytes). */
        if (flushing ? now == 0 : now >= (size_t)was)
            continue;
        if (!forksafe__audit_once_first(&fk.once_stdio, (uintptr_t)s))
            continue;
        int saved = errno;
        struct forksafe__rec *r = forksafe__rec_begin("finding");
        if (r) {
            forksafe__audit_rec_common(r, "stdio-unflushed-at-fork", "warning");
            forksafe__rec_str(r, "stream", i ? "stderr" : "stdout");
            forksafe__rec_int(r, "bytes", was);
            forksafe__rec_int(r, "fork_pid", LOAD(&fk.fork_pid));
            fork_frame(r);
            forksafe__rec_frame(r, "child-flush", forksafe__gettid(), NULL,
                                site);
            forksafe__rec_end_batched(r);
        }
        if (errno != saved)
            errno = saved;
    }
}

/* Output calls: in a watched child they count as running on, and one that
   wrote the buffer out wrote the parent's pending bytes a second time. */
#define WATCH_BEFORE()                                                         \
    void *site_ = __builtin_return_address(0);                                 \
    int watch_ = UNLIKELY(LOAD(&fk.watch));                                    \
    if (watch_)                                                                \
    forksafe__audit_ran_on()
#define WATCH_AFTER(f)                                                         \
    do {                                                                       \
        if (watch_)                                                            \
            forksafe__audit_stdio_check((f), 0, site_);                        \
    } while (0)

EXPORT int printf(const char *fmt, ...)
{
    WATCH_BEFORE();
    va_list ap;
    va_start(ap, fmt);
    int r = REAL(vprintf)(fmt, ap);
    va_end(ap);
    WATCH_AFTER(stdout);
    return r;
}

EXPORT int fprintf(FILE *f, const char *fmt, ...)
{
    WATCH_BEFORE();
    va_list ap;
    va_start(ap, fmt);
    int r = REAL(vfprintf)(f, fmt, ap);
    va_end(ap);
    WATCH_AFTER(f);
    return r;
}

EXPORT int puts(const char *s)
{
    WATCH_BEFORE();
    int r = REAL(puts)(s);
    WATCH_AFTER(stdout);
    return r;
}

EXPORT int fputs(const char *s, FILE *f)
{
    WATCH_BEFORE();
    int r = REAL(fputs)(s, f);
    WATCH_AFTER(f);
    return r;
}

EXPORT size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    WATCH_BEFORE();
    size_t r = REAL(fwrite)(p, size, n, f);
    WATCH_AFTER(f);
    return r;
}

EXPORT int fflush(FILE *f)
{
    if (UNLIKELY(LOAD(&fk.watch))) {
        forksafe__audit_ran_on();
        forksafe__audit_stdio_check(f, 1, __builtin_return_address(0));
    }
    return REAL(fflush)(f);
}

/* _exit() and _Exit(): what the child collected is written first (exit()
   does it through the exit report). */
EXPORT void _exit(int status)
{
    forksafe__rec_flush();
    void (*real)(int) = (void (*)(int))REAL(_exit);
    real(status);
    __builtin_unreachable();
}

EXPORT void _Exit(int status)
{
    forksafe__rec_flush();
    void (*real)(int) = (void (*)(int))REAL(_exit);
    real(status);
    __builtin_unreachable();
}
