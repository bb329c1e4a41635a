/* SPDX-License-Identifier: MIT */
/*
 * locks.c: the lock path of libforksafe-audit.so. It holds the thread
 * table, the lock table, the lock-order edges and each thread's stack of
 * held locks, and the pthread mutex, rwlock, condition and semaphore hooks
 * that fill them; fork.c and report.c read these tables.
 *
 * DESIGN. The lock path must stay cheap (the target is at most 3x on a
 * lock+unlock loop), so it touches only this thread's record (a stack of
 * held locks, claimed once per thread from a static array) and one slot of
 * a static open-addressed table keyed by lock address, which is written only
 * the first time a lock is seen and the first time a second thread uses it.
 * Nothing on that path allocates, takes a lock or makes a system call. Work
 * that needs the forksafe registry (is this lock registered, at what rank?)
 * or a slow scan is done once, when the process exits normally, from an
 * atexit handler; fork() itself only reads our tables and /proc with raw
 * system calls, so it stays usable from a signal handler. Everything the
 * lock hooks call on that path is in this file, so that it is inlined.
 */
#include "audit.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>

/* ------------------------------------------------------------ threads */

struct thread_rec forksafe__audit_threads[MAX_THREADS];
int forksafe__audit_threads_hwm; /* slots [0, hwm) have been used */
static unsigned next_ident;
static pthread_key_t rec_key;
static int rec_key_ok;
TLS struct thread_rec *forksafe__audit_self_rec;

void forksafe__audit_thread_release(void *p)
{
    struct thread_rec *r = p;
    if (forksafe__audit_self_rec == r)
        forksafe__audit_self_rec = NULL;
    STORE(&r->nheld, 0);
    r->start = NULL;
    STORE(&r->tid, 0);
}

struct thread_rec *forksafe__audit_self(void)
{
    struct thread_rec *r = forksafe__audit_self_rec;
    if (r)
        return r;
    int tid = (int)forksafe__gettid();
    for (int i = 0; i < MAX_THREADS; i++) {
        int expect = 0;
        if (LOAD(&forksafe__audit_threads[i].tid) == 0 &&
            __atomic_compare_exchange_n(&forksafe__audit_threads[i].tid,
                                        &expect, tid, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            r = &forksafe__audit_threads[i];
            int hwm = LOAD(&forksafe__audit_threads_hwm);
            while (hwm < i + 1 && !__atomic_compare_exchange_n(
                                      &forksafe__audit_threads_hwm, &hwm, i + 1,
                                      0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                ;
            r->ident = __atomic_add_fetch(&next_ident, 1, __ATOMIC_RELAXED);
            r->start = NULL;
            STORE(&r->nheld, 0);
            forksafe__audit_self_rec = r;
            /* Slots are given back by the key destructor at thread exit;
               keys below 32 never allocate in pthread_setspecific. */
            if (rec_key_ok)
                pthread_setspecific(rec_key, r);
            return r;
        }
    }
    return NULL; /* more than MAX_THREADS live threads: not tracked */
}

void forksafe__audit_thread_key_init(void)
{
    rec_key_ok =
        pthread_key_create(&rec_key, forksafe__audit_thread_release) == 0;
}

/* ------------------------------------------------------------ lock table */

#define PROBES 32

struct lock_ent forksafe__audit_locks[LOCK_SLOTS];

/* Shared locks destroyed during the run (their slot is reused by the next
   lock at that address), still to be reported at exit. */
struct lock_ent forksafe__audit_retired[RETIRED_MAX];
int forksafe__audit_nretired;

static inline size_t hash_ptr(uintptr_t a)
{
    return (size_t)(((uint64_t)(a >> 3) * 0x9e3779b97f4a7c15ull) >>
                    (64 - LOCK_BITS));
}

static struct lock_ent *lock_find(uintptr_t a, int insert)
{
    size_t h = hash_ptr(a);
    for (unsigned i = 0; i < PROBES; i++) {
        struct lock_ent *e = &forksafe__audit_locks[(h + i) & (LOCK_SLOTS - 1)];
        uintptr_t v = LOAD(&e->addr);
        if (v == a)
            return e;
        if (v == 0) {
            if (!insert)
                return NULL;
            if (__atomic_compare_exchange_n(
                    &e->addr, &v, a, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
                v == a)
                return e;
        }
    }
    return NULL; /* table region full: this lock is not tracked */
}

static void lock_note(void *lock, int kind, void *site, struct thread_rec *r)
{
    struct lock_ent *e = lock_find((uintptr_t)lock, 1);
    if (!e)
        return;
    unsigned o = LOAD(&e->owner);
    if (o == r->ident || LOAD(&e->shared))
        return;
    if (o == 0) {
        if (__atomic_compare_exchange_n(&e->owner, &o, r->ident, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            e->kind = kind;
            e->site1 = site;
            e->tid1 = r->tid;
            return;
        }
        if (o == r->ident)
            return;
    }
    e->site2 = site;
    e->tid2 = r->tid;
    STORE(&e->shared, 1);
}

/* ------------------------------------------------------------ order edges */

struct edge forksafe__audit_edges[EDGE_SLOTS];

static void edge_note(const struct held *outer, void *b, void *site,
                      struct thread_rec *r)
{
    uint64_t key = ((uint64_t)(uintptr_t)outer->lock * 0x9e3779b97f4a7c15ull) ^
                   ((uint64_t)(uintptr_t)b * 0xc2b2ae3d27d4eb4full);
    key |= 1;
    size_t h = (size_t)(key >> (64 - EDGE_BITS));
    for (unsigned i = 0; i < PROBES; i++) {
        struct edge *e = &forksafe__audit_edges[(h + i) & (EDGE_SLOTS - 1)];
        uint64_t v = LOAD(&e->key);
        if (v == key)
            return;
        if (v == 0) {
            if (!__atomic_compare_exchange_n(
                    &e->key, &v, key, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return; /* lost a race; the winner may be another edge */
            e->a = outer->lock;
            e->b = b;
            e->site_a = outer->site;
            e->site_b = site;
            e->tid = r->tid;
            STORE(&e->ready, 1);
            return;
        }
    }
}

/* ------------------------------------------------------------ held stack */

static inline void note_acquire(void *lock, int kind, void *site)
{
    struct thread_rec *r = forksafe__audit_self();
    if (!r)
        return;
    int n = r->nheld;
    if (n > 0 && r->held[n - 1].lock != lock)
        edge_note(&r->held[n - 1], lock, site, r);
    if (n == MAX_HELD) {
        /* Drop entries that other threads released (semaphores). */
        int k = 0;
        for (int i = 0; i < n; i++)
            if (r->held[i].lock)
                r->held[k++] = r->held[i];
        n = k;
    }
    if (n < MAX_HELD) {
        r->held[n].lock = lock;
        r->held[n].site = site;
        r->held[n].kind = kind;
        STORE(&r->nheld, n + 1);
    }
    lock_note(lock, kind, site, r);
}

/* Remove lock from this thread's held stack; 1 if it was there. */
static inline int note_release(void *lock)
{
    struct thread_rec *r = forksafe__audit_self_rec;
    if (!r)
        return 0;
    int n = r->nheld;
    for (int i = n - 1; i >= 0; i--) {
        if (r->held[i].lock != lock)
            continue;
        for (int j = i; j + 1 < n; j++)
            r->held[j] = r->held[j + 1];
        STORE(&r->nheld, n - 1);
        return 1;
    }
    return 0;
}

/* A semaphore posted by a thread that did not take it (a Python Lock
   released by another thread, a Condition's waiter lock): clear it from
   the taker's stack. Only the taker moves its own entries, so another
   thread just swaps the pointer for NULL, which readers skip. */
static void release_elsewhere(void *lock)
{
    int hwm = LOAD(&forksafe__audit_threads_hwm);
    for (int i = 0; i < hwm; i++) {
        struct thread_rec *t = &forksafe__audit_threads[i];
        if (t == forksafe__audit_self_rec || LOAD(&t->tid) == 0)
            continue;
        int nh = LOAD(&t->nheld);
        for (int j = 0; j < nh && j < MAX_HELD; j++) {
            void *expect = lock;
            if (LOAD(&t->held[j].lock) == lock &&
                __atomic_compare_exchange_n(&t->held[j].lock, &expect, NULL, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                return;
        }
    }
}

/* ------------------------------------------------------------ lock hooks */

/* Every hook below keeps the contract of the glibc function it wraps
   (same result, same errno) and only adds bookkeeping: a successful
   acquire is pushed on the caller's held stack and noted in the lock
   table; a release is popped. In a child of a multi-threaded fork,
   pthread_mutex_lock and sem_wait on a lock another thread held at the
   fork wait only for the grace period, then report child-deadlock and end
   the child with FORKSAFE_AUDIT_DEADLOCK_STATUS instead of hanging. */

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    void *site = __builtin_return_address(0);
    int r;
    if (UNLIKELY(LOAD(&forksafe__audit_fk.child_mt)) &&
        !forksafe__audit_in_hook &&
        (r = forksafe__audit_child_lock(m, site)) != -1) {
        if (r == 0)
            note_acquire(m, KIND_MUTEX, site);
        return r;
    }
    r = REAL(pthread_mutex_lock)(m);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(m, KIND_MUTEX, site);
    return r;
}

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    int r = REAL(pthread_mutex_trylock)(m);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m,
                                   const struct timespec *ts)
{
    int r = REAL(pthread_mutex_timedlock)(m, ts);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t c,
                                   const struct timespec *ts)
{
    int r = REAL(pthread_mutex_clocklock)(m, c, ts);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (!forksafe__audit_in_hook)
        note_release(m);
    return REAL(pthread_mutex_unlock)(m);
}

/* The lock is going away and its address may be reused for an unrelated
   one: forget its users, and drop it from any held stack, so that nothing
   later reads a destroyed lock. */
static void forget_lock(void *lock)
{
    if (forksafe__audit_in_hook)
        return;
    struct lock_ent *e = lock_find((uintptr_t)lock, 0);
    if (e) {
        if (LOAD(&e->shared)) {
            /* It was shared while it lived: keep it for the exit report. */
            int i = __atomic_fetch_add(&forksafe__audit_nretired, 1,
                                       __ATOMIC_ACQ_REL);
            if (i < RETIRED_MAX)
                forksafe__audit_retired[i] = *e;
        }
        STORE(&e->shared, 0);
        STORE(&e->owner, 0);
    }
    while (note_release(lock))
        ;
    release_elsewhere(lock);
}

EXPORT int pthread_mutex_destroy(pthread_mutex_t *m)
{
    forget_lock(m);
    return REAL(pthread_mutex_destroy)(m);
}

EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_rdlock)(l);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_wrlock)(l);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_tryrdlock)(l);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_trywrlock)(l);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    if (!forksafe__audit_in_hook)
        note_release(l);
    return REAL(pthread_rwlock_unlock)(l);
}

/* A condition wait releases the mutex while it sleeps: a thread parked in
   pthread_cond_wait does not hold it, and must not be reported as if it
   did. */
EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    int tracked = !forksafe__audit_in_hook && note_release(m);
    int r = REAL(pthread_cond_wait)(c, m);
    if (tracked)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  const struct timespec *ts)
{
    int tracked = !forksafe__audit_in_hook && note_release(m);
    int r = REAL(pthread_cond_timedwait)(c, m, ts);
    if (tracked)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  clockid_t clk, const struct timespec *ts)
{
    int tracked = !forksafe__audit_in_hook && note_release(m);
    int r = REAL(pthread_cond_clockwait)(c, m, clk, ts);
    if (tracked)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

/* Semaphores used as locks (CPython's threading.Lock is one): a successful
   wait takes it, a post releases it, possibly from another thread. */
EXPORT int sem_wait(sem_t *s)
{
    void *site = __builtin_return_address(0);
    if (UNLIKELY(LOAD(&forksafe__audit_fk.child_mt)) &&
        !forksafe__audit_in_hook) {
        forksafe__audit_note_unsafe("sem_wait", site);
        int holder = 0;
        void *holder_site = NULL;
        for (int i = 0; i < forksafe__audit_fk.nsnap; i++)
            if (forksafe__audit_fk.snap[i].lock == (void *)s) {
                holder = forksafe__audit_fk.snap[i].holder;
                holder_site = forksafe__audit_fk.snap[i].site;
            }
        int v;
        if (holder && !LOAD(&forksafe__audit_fk.child_has_threads) &&
            forksafe__out_enabled() && !forksafe__audit_sem_pshared(s) &&
            sem_getvalue(s, &v) == 0 && v == 0) {
            struct timespec ts;
            forksafe__audit_grace_deadline(&ts);
            int r = REAL(sem_clockwait)(s, CLOCK_MONOTONIC, &ts);
            if (r != 0 && errno == ETIMEDOUT)
                forksafe__audit_deadlock_exit(s, KIND_SEMAPHORE, site, holder,
                                              holder_site);
            if (r == 0)
                note_acquire(s, KIND_SEMAPHORE, site);
            return r;
        }
    }
    int r = REAL(sem_wait)(s);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(s, KIND_SEMAPHORE, site);
    return r;
}

EXPORT int sem_trywait(sem_t *s)
{
    int r = REAL(sem_trywait)(s);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(s, KIND_SEMAPHORE, __builtin_return_address(0));
    return r;
}

EXPORT int sem_timedwait(sem_t *s, const struct timespec *ts)
{
    int r = REAL(sem_timedwait)(s, ts);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(s, KIND_SEMAPHORE, __builtin_return_address(0));
    return r;
}

EXPORT int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *ts)
{
    int r = REAL(sem_clockwait)(s, clk, ts);
    if (r == 0 && !forksafe__audit_in_hook)
        note_acquire(s, KIND_SEMAPHORE, __builtin_return_address(0));
    return r;
}

EXPORT int sem_destroy(sem_t *s)
{
    forget_lock(s);
    return REAL(sem_destroy)(s);
}

EXPORT int sem_post(sem_t *s)
{
    /* sem_post is async-signal-safe: only our own bookkeeping here. */
    if (!forksafe__audit_in_hook && !note_release(s))
        release_elsewhere(s);
    return REAL(sem_post)(s);
}
