/* SPDX-License-Identifier: MIT */
/*
 * fork.c: fork(), forksafe_fork() and _Fork() under forksafe-run, and the
 * child. A fork made while other threads are alive waits for lock holders
 * (quiesce.c) before the real fork; in the child, the locks the forking
 * thread held are handed to the child's only thread with the same type
 * and depth, by the platform layer's child_mutex and child_rwlock (the
 * owner fix-up libforksafe's core does for registered locks), and the
 * mutexes taken for the fork are freed the same way.
 *
 * DESIGN. Who does what, when libforksafe is in the process too: its
 * registry takes the registered locks in its own prepare handler, after
 * forksafe-run's wait (which runs in the fork() hook, before any fork
 * handler), finds them free, and restores them in the child. So locks the
 * registry knows are left to it: forksafe-run does not take them for
 * condition waiters and does not touch them in the child. forksafe_fork()
 * is interposed too, so that both paths wait first and let the registry
 * prepare second (its prepare runs before it calls fork()). What fork
 * handlers take is theirs: only the locks the forking thread held when it
 * called fork() are restored here. Forks from several threads are
 * serialised; a thread that waits to fork while it holds a lock makes the
 * fork in progress go ahead at once (it cannot release before its own
 * fork), as does a holder waiting for a lock the forking thread holds.
 */
#include "run.h"

#include "platform/platform.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "forksafe.h"

static long futex(int *uaddr, int op, int val, const struct timespec *ts)
{
    return syscall(SYS_futex, uaddr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

/* ------------------------------------------------------------ fork lock */

static void fork_lock(struct run_thread *rt, int me)
{
    struct run_fork *fk = &forksafe__run_fk;
    for (int rounds = 0;; rounds++) {
        int expect = 0;
        if (__atomic_compare_exchange_n(&fk->owner, &expect, me, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return;
        STORE(&rt->forkwait, 1);
        __atomic_add_fetch(&fk->owner_waiters, 1, __ATOMIC_SEQ_CST);
        struct timespec slice = {0, 20 * 1000 * 1000};
        futex(&fk->owner, FUTEX_WAIT, expect, &slice);
        __atomic_sub_fetch(&fk->owner_waiters, 1, __ATOMIC_SEQ_CST);
        STORE(&rt->forkwait, 0);
        /* An owner that no longer exists (it exited inside a fork handler,
           or this is a child made without fork handlers) never unlocks. */
        if (rounds % 16 == 15 &&
            syscall(SYS_tgkill, (int)forksafe__getpid(), expect, 0) != 0 &&
            errno == ESRCH)
            __atomic_compare_exchange_n(&fk->owner, &expect, 0, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
}

static void fork_unlock(void)
{
    struct run_fork *fk = &forksafe__run_fk;
    STORE(&fk->owner, 0);
    if (__atomic_load_n(&fk->owner_waiters, __ATOMIC_SEQ_CST))
        futex(&fk->owner, FUTEX_WAKE, 1, NULL);
}

/* ------------------------------------------------------------ prepare */

/* The fork goes ahead with threads in the way: read their names now, while
   they still exist (a holder waiting to fork itself may have forked and
   exited by the time the parent writes the report). */
static void name_blockers(struct run_fork *fk)
{
    if (fk->outcome == RUN_OK)
        return;
    for (int i = 0; i < fk->nblockers && i < RUN_BLOCKERS_MAX; i++)
        forksafe__run_thread_name(fk->blockers[i].tid, fk->blockers[i].name,
                                  sizeof fk->blockers[i].name);
}

/* 1 if other threads may exist: libc says the process is multi-threaded
   (it never says single-threaded again once a thread was started), or a
   thread other than r has a record. A thread that has not made its first
   lock call yet has no record, and must still find the gate closed. */
static int others_alive(const struct thread_rec *r)
{
    if (forksafe__platform()->multithreaded())
        return 1;
    int hwm = LOAD(&forksafe__threads_hwm);
    for (int i = 0; i < hwm; i++)
        if (&forksafe__threads[i] != r && LOAD(&forksafe__threads[i].tid))
            return 1;
    return 0;
}

/* A lock the platform calls process-shared may live in memory shared
   with the child (then leave it alone there) or in private memory (then
   the child has a copy, to be restored like any other). glibc marks every
   robust mutex process-shared, so the mapping decides. */
static int in_shared_memory(const struct held *h)
{
    const struct forksafe_platform *P = forksafe__platform();
    unsigned k;
    if (h->kind == KIND_RWLOCK) {
        pthread_rwlock_t copy;
        if (forksafe__mem_read(&copy, h->lock, sizeof copy) != 0)
            return 1;
        k = P->rwlock_kind(&copy) & FS_RW_PSHARED;
    } else {
        pthread_mutex_t copy;
        if (forksafe__mem_read(&copy, h->lock, sizeof copy) != 0)
            return 1;
        k = P->mutex_kind(&copy) & FS_MX_PSHARED;
    }
    /* Shared with other processes (MAP_SHARED, System V shared memory:
       one lock in the parent and the child), or /proc/self/maps cannot
       tell. */
    return k && forksafe__maps_shared(h->lock) != 0;
}

/* Everything before the real fork: serialise, wait for lock holders when
   other threads exist, and note which of the forker's own locks the
   child must be given. timeout_ms bounds the wait. */
static void prepare(struct thread_rec *r, void *site, const char *call,
                    unsigned timeout_ms)
{
    struct run_fork *fk = &forksafe__run_fk;
    struct run_thread *rt = forksafe__run_of(r);
    int me = (int)forksafe__gettid();
    fork_lock(rt, me);
    /* A single-threaded child keeps its parent's TID in its record until
       it forks or starts a thread (the core's threads.c). */
    if (r->tid != me)
        STORE(&r->tid, me);
    fk->forker = r;
    fk->depth = 0;
    fk->managed = 0;
    fk->in_fork = 0;
    fk->parent_tid = me;
    fk->ntaken = 0;
    fk->outcome = RUN_OK;
    fk->waited = 0;
    fk->wait_ns = 0;
    fk->nblockers = 0;
    fk->site = site;
    fk->call = call;
    int threaded = others_alive(r);
    fk->threaded = threaded;
    forksafe__run_count(threaded);
    if (threaded) {
        long long t0 = forksafe__run_now_ns();
        fk->wait_start_ns = t0;
        struct timespec deadline;
        forksafe__run_deadline(&deadline, timeout_ms);
        fk->outcome = forksafe__run_quiesce(&deadline);
        fk->wait_ns = forksafe__run_now_ns() - t0;
        name_blockers(fk);
    }
    /* The forker's own locks: those the registry knows are its to
       restore, and those in memory the child shares with the parent are
       one lock in both, which the child must leave alone. */
    int n = r->nheld < MAX_HELD ? r->nheld : MAX_HELD, k = 0;
    for (int j = 0; j < n; j++) {
        struct held h = r->held[j];
        int dup = 0;
        for (int i = 0; i < k; i++)
            dup |= fk->own[i].lock == h.lock;
        if (h.lock && !dup)
            fk->own[k++] = h;
    }
    /* Asking the registry takes its lock, which pushes on this thread's
       stack: hence the copy first. */
    for (int i = 0; i < k; i++)
        fk->skip[i] = forksafe__run_registered(fk->own[i].lock) ||
                      in_shared_memory(&fk->own[i]);
    fk->nown = k;
    fk->managed = 1;
    fk->in_fork = 1;
}

void forksafe__run_forker_wait_begin(void)
{
    forksafe__run_release_taken();
    forksafe__run_gate_open();
}

void forksafe__run_forker_wait_end(void)
{
    struct run_fork *fk = &forksafe__run_fk;
    long long t0 = forksafe__run_now_ns();
    struct timespec deadline;
    forksafe__run_deadline(&deadline, forksafe__run_timeout_ms);
    fk->in_fork = 0; /* its own lock calls during the wait are its own */
    int o = forksafe__run_quiesce(&deadline);
    fk->in_fork = 1;
    fk->wait_ns += forksafe__run_now_ns() - t0;
    if (fk->outcome == RUN_OK)
        fk->outcome = o;
    if (o != RUN_OK)
        name_blockers(fk);
}

/* ------------------------------------------------------------ after */

static void finish_parent(pid_t pid)
{
    struct run_fork *fk = &forksafe__run_fk;
    fk->in_fork = 0;
    int woke = LOAD(&forksafe__run_fast.closed) && forksafe__run_gate_open();
    forksafe__run_release_taken();
    int slow = fk->outcome != RUN_OK && pid > 0;
    /* It went ahead with a lock held: what fork handlers then waited for
       the same holders (libforksafe's registry waits for its own locks,
       up to its own deadline) is part of this fork's wait. */
    if (fk->outcome != RUN_OK && fk->threaded)
        fk->wait_ns = forksafe__run_now_ns() - fk->wait_start_ns;
    struct run_fork copy;
    if (slow)
        memcpy(&copy, fk, sizeof copy);
    forksafe__run_count_wait(fk);
    fk->managed = 0;
    STORE(&fk->forker, NULL);
    fork_unlock();
    if (slow)
        forksafe__run_report_slow(&copy);
    /* Let the threads that waited at the gate run before this one can
       fork again: a program forking in a loop would starve them. */
    if (woke)
        sched_yield();
}

/* In the child, before any other fork handler of the program: give the
   child's only thread the locks the forker held when it was ready to
   fork (prepare's copy of its stack: what fork handlers took is theirs),
   and free those taken for the fork. Every lock is checked first, read
   fault-safe: still there and still recorded as the forker's (a handler
   that ran first may have handed it over already); prepare() marked those
   to leave alone. */
static void restore_forker_locks(struct thread_rec *r)
{
    struct run_fork *fk = &forksafe__run_fk;
    const struct forksafe_platform *P = forksafe__platform();
    pid_t self = (pid_t)forksafe__gettid();
    (void)r;
    for (int j = 0; j < fk->nown && j < MAX_HELD; j++) {
        struct held h = fk->own[j];
        if (fk->skip[j])
            continue;
        if (h.kind == KIND_RWLOCK) {
            pthread_rwlock_t copy;
            if (forksafe__mem_read(&copy, h.lock, sizeof copy) != 0 ||
                (P->rwlock_kind(&copy) & FS_RW_UNKNOWN))
                continue;
            /* Held for reading: the child's unlock takes the reader path,
               which is right. Held for writing: rebuilt and taken. */
            if (P->rwlock_holder(&copy) == fk->parent_tid)
                P->child_rwlock(h.lock, 1, self);
            continue;
        }
        pthread_mutex_t copy;
        if (forksafe__mem_read(&copy, h.lock, sizeof copy) != 0 ||
            (P->mutex_kind(&copy) & FS_MX_UNKNOWN) ||
            P->mutex_holder(&copy) != fk->parent_tid)
            continue;
        P->child_mutex(h.lock, 1, self);
    }
    for (int i = 0; i < fk->ntaken; i++)
        P->child_mutex(fk->taken[i], 0, self);
    fk->ntaken = 0;
}

static void reset_child_state(void)
{
    struct run_fork *fk = &forksafe__run_fk;
    fk->in_fork = 0;
    fk->managed = 0;
    fk->ntaken = 0;
    STORE(&fk->forker, NULL);
    STORE(&fk->owner, 0);
    STORE(&fk->owner_waiters, 0);
}

/* The child handler, registered by the constructor (setup.c): the other
   threads are gone, the gate is open, and the forker's locks are the
   child's. Runs in every child of fork(), also of forks made inside libc
   (daemon()), which then only forget the other threads. */
void forksafe__run_atfork_child(void)
{
    int saved = errno;
    forksafe__in_hook++;
    forksafe__threads_after_fork_child();
    forksafe__run_gate_child();
    struct thread_rec *r = forksafe__self_rec;
    struct run_fork *fk = &forksafe__run_fk;
    if (fk->managed && r && fk->forker == r)
        restore_forker_locks(r);
    else
        reset_child_state();
    forksafe__in_hook--;
    errno = saved;
}

/* ------------------------------------------------------------ hooks */

/* A fork inside the one being made: forksafe_fork()'s own call of fork()
   is that same fork; any other (a pthread_atfork prepare handler's) is a
   fork of its own, made with the gate closed after the wait: counted as
   one with the outer fork's outcome and no wait of its own. */
static pid_t nested_fork(struct run_fork *fk, void *site, const char *call,
                         pid_t (*real)(void *), void *arg)
{
    if (fk->ffork_inner || !fk->managed) {
        fk->ffork_inner = 0;
        return real(arg);
    }
    pid_t pid = real(arg);
    if (pid > 0) {
        int saved = errno;
        forksafe__run_count(fk->threaded);
        /* Forks are serialised: this thread owns the fork lock. */
        static struct run_fork n;
        memcpy(&n, fk, sizeof n);
        n.wait_ns = 0;
        n.waited = 0;
        n.site = site;
        n.call = call;
        forksafe__run_count_wait(&n);
        if (n.outcome != RUN_OK)
            forksafe__run_report_slow(&n);
        errno = saved;
    }
    return pid;
}

static pid_t do_fork(void *site, const char *call, pid_t (*real)(void *),
                     void *arg, unsigned timeout_ms)
{
    struct thread_rec *r = forksafe__run_self();
    struct run_fork *fk = &forksafe__run_fk;
    if (!r)
        return real(arg);
    /* Nested: fork() from a fork handler, or from our forksafe_fork(). */
    if (LOAD(&fk->forker) == r)
        return nested_fork(fk, site, call, real, arg);
    int saved = errno;
    prepare(r, site, call, timeout_ms);
    errno = saved;
    pid_t pid = real(arg);
    saved = errno;
    if (pid == 0)
        reset_child_state();
    else
        finish_parent(pid);
    errno = saved;
    return pid;
}

static pid_t real_fork(void *arg)
{
    (void)arg;
    return REAL(fork)();
}

/* fork(): same result and errno; the wait for lock holders comes first. */
EXPORT pid_t fork(void)
{
    return do_fork(__builtin_return_address(0), "fork", real_fork, NULL,
                   forksafe__run_timeout_ms);
}

/* _Fork() runs no fork handlers and its child may only call
   async-signal-safe functions, which take no pthread lock: it is not
   waited for. Its child forgets the other threads and opens the gate. */
EXPORT pid_t _Fork(void)
{
    pid_t pid = REAL(_Fork)();
    if (pid == 0) {
        int saved = errno;
        struct thread_rec *r = forksafe__self_rec;
        if (!r || LOAD(&forksafe__run_fk.forker) != r) {
            forksafe__threads_after_fork_child();
            forksafe__run_gate_child();
            reset_child_state();
        }
        errno = saved;
    }
    return pid;
}

/* forksafe_fork() from libforksafe: wait for lock holders first, then let
   it prepare its registry (and fork, through the fork() hook, nested).
   Its timeout covers both: the wait gets at most the smaller of it and
   forksafe-run's, and the registry what is left. */
typedef pid_t (*ffork_fn)(const struct forksafe_fork_opts *);
HOT static ffork_fn real_ffork;

struct ffork_arg {
    ffork_fn fn;
    struct forksafe_fork_opts opts;
    const struct forksafe_fork_opts *given;
    long long start_ns;
    unsigned timeout_ms;
};

static pid_t call_ffork_fn(struct ffork_arg *a)
{
    if (!a->given)
        return a->fn(NULL);
    long long used = (forksafe__run_now_ns() - a->start_ns) / 1000000;
    a->opts.timeout_ms =
        used >= (long long)a->timeout_ms ? 1 : a->timeout_ms - (unsigned)used;
    return a->fn(&a->opts);
}

static pid_t call_ffork(void *p)
{
    struct ffork_arg *a = p;
    struct run_fork *fk = &forksafe__run_fk;
    fk->ffork_inner = 1;
    pid_t pid = call_ffork_fn(a);
    if (pid != 0)
        fk->ffork_inner = 0;
    return pid;
}

static unsigned core_default_timeout(void)
{
    /* The core's own default (fork.c there): FORKSAFE_TIMEOUT_MS. */
    const char *s = getenv("FORKSAFE_TIMEOUT_MS");
    if (s && *s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (*end == '\0' && v > 0 && v <= 24ul * 3600 * 1000)
            return (unsigned)v;
    }
    return 5000;
}

EXPORT pid_t forksafe_fork(const struct forksafe_fork_opts *opts)
{
    if (!LOAD(&real_ffork))
        STORE(&real_ffork, (ffork_fn)forksafe__resolve("forksafe_fork"));
    ffork_fn fn = LOAD(&real_ffork);
    if (!fn) {
        errno = ENOSYS;
        return -1;
    }
    /* What the core refuses at once is not waited for. */
    if (opts) {
        int bad = opts->flags != 0;
        for (size_t i = 0; i < sizeof opts->reserved / sizeof opts->reserved[0];
             i++)
            bad |= opts->reserved[i] != 0;
        if (bad)
            return fn(opts);
    }
    struct ffork_arg a = {fn, {0}, opts, forksafe__run_now_ns(), 0};
    a.timeout_ms =
        opts && opts->timeout_ms ? opts->timeout_ms : core_default_timeout();
    if (opts)
        a.opts = *opts;
    unsigned wait = a.timeout_ms < forksafe__run_timeout_ms
                        ? a.timeout_ms
                        : forksafe__run_timeout_ms;
    return do_fork(__builtin_return_address(0), "forksafe_fork", call_ffork, &a,
                   wait);
}
