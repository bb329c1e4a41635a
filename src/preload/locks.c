/* SPDX-License-Identifier: MIT */
/*
 * locks.c: the lock hooks. pthread mutex, rwlock, condition and semaphore
 * calls fill each thread's stack of held locks and the lock table; every
 * call that makes lock memory go away (pthread_*_destroy, sem_destroy,
 * sem_close, munmap, mremap, dlclose) drops that memory from both first,
 * so that a later fork never reads a lock that no longer exists.
 *
 * DESIGN. The lock path must stay cheap (the goal is at most 1.3x on an
 * uncontended lock+unlock pair), so an acquire touches only this thread's
 * record (push on the held stack; a 4-entry cache of locks whose table
 * entry needs nothing more from this thread) and, on a cache miss, one
 * index slot and one entry of the lock table. A release pops. The lock on
 * top of the stack taken again (a recursive mutex, a read lock) adds a
 * level to its entry instead of a push. Nothing on that path allocates,
 * locks or makes a system call, but for one mmap the first time a thread
 * slot holds more than MAX_HELD locks (kept for the slot: interpose.h).
 * Everything the hooks call on that path is in this file or inline,
 * except the table itself.
 *
 * Built twice: whole, into libforksafe-audit.so, and with
 * FORKSAFE_INTERPOSE_LIVENESS_ONLY defined, into a preload library that
 * has acquire and release hooks of its own (libforksafe-run.so): then only
 * the hooks on calls that make lock memory go away (and pthread_*_init)
 * are compiled, which keep every thread's held stack free of dead locks.
 */
#include "interpose.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define NOINLINE  __attribute__((noinline, cold))

/* ------------------------------------------------------------ policy */

HOT int forksafe__policy_slow;

/* The optional policy hooks (interpose.h), for libraries that do not
   define them. */
__attribute__((weak)) void forksafe__policy_acquired(void *lock, int kind,
                                                     const char *fn,
                                                     void *site)
{
    (void)lock;
    (void)kind;
    (void)fn;
    (void)site;
}

__attribute__((weak)) void forksafe__policy_unloaded(uintptr_t lo,
                                                     uintptr_t hi)
{
    (void)lo;
    (void)hi;
}

__attribute__((weak)) int forksafe__policy_cond_wait(pthread_cond_t *c,
                                                     pthread_mutex_t *m,
                                                     void *site)
{
    (void)c;
    (void)m;
    (void)site;
    return FORKSAFE_POLICY_PASS;
}

/* ------------------------------------------------------------ held stack */

#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
/* Map the part of r's held stack past MAX_HELD (r->more), once for the
   slot: it stays with the slot for the threads that claim it later, and is
   never unmapped, since other threads may be reading it at a fork (a
   forked child inherits it as it does the record). mmap is a plain system
   call (the hooks must not allocate or lock). 0 if it failed. */
static int held_grow(struct thread_rec *r)
{
    int saved = errno;
    void *p = mmap(NULL, HELD_MORE * sizeof(struct held),
                   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    errno = saved;
    if (p == MAP_FAILED)
        return 0;
    STORE(&r->more, (struct held *)p);
    return 1;
}

/* Push lock on r's held stack, which holds n entries: into the record's
   first MAX_HELD, then into r->more (mapped the first time); past
   HELD_CAP (or without a mapping) the push is only counted. */
static void held_push(struct thread_rec *r, int n, void *lock, int kind,
                      int tried, void *site)
{
    struct held *more = r->more;
    if (n == HELD_CAP || (n == MAX_HELD && !more)) {
        /* Drop entries that other threads released (semaphores) or that
           went away. */
        int k = 0;
        for (int i = 0; i < n; i++) {
            struct held *e = held_entry(r, more, i);
            if (e->lock && k++ != i)
                *held_entry(r, more, k - 1) = *e;
        }
        n = k;
        STORE(&r->nheld, n);
    }
    if (n >= MAX_HELD && !more && !held_grow(r))
        n = HELD_CAP; /* no room: counted below */
    if (n >= HELD_CAP) {
        STORE(&r->dropped, r->dropped + 1);
        return;
    }
    struct held *e = held_entry(r, LOAD(&r->more), n);
    e->lock = lock;
    e->site = site;
    e->kind = (unsigned char)kind;
    e->tried = (unsigned char)tried;
    e->depth = 0;
    STORE(&r->nheld, n + 1);
}

/* The whole of an acquire's bookkeeping; note_acquire() below takes the
   common case without it. Out of line, so that the hooks' fast path saves
   no registers for it. */
static NOINLINE void note_acquire_slow(void *lock, int kind, const char *fn,
                                       void *site)
{
    struct thread_rec *r = forksafe__self();
    if (!r)
        return;
    int try = kind & KIND_TRY;
    kind &= KIND_MASK;
    int n = r->nheld;
    struct held *top = held_entry(r, r->more, n - 1);
    uintptr_t outer = OUTER_BARE, outer0 = OUTER_BARE;
    if (top && top->lock) {
        outer = (uintptr_t)top->lock;
        if (r->held[0].lock)
            outer0 = (uintptr_t)r->held[0].lock;
    }
    /* A blocking acquire: the pair with the innermost lock held, and,
       while that one was only tried, with the locks under it down to one
       taken blocking (a try notes no pair of its own, but must not hide
       the order of the locks around it). */
    for (int i = n - 1; i >= 0 && !try; i--) {
        struct held *h = held_entry(r, r->more, i);
        if (!h)
            break;
        if (h->lock && h->lock != lock)
            forksafe__edge_note(h, lock, site, r);
        if (!h->tried)
            break;
    }
    /* The lock on top taken again (a recursive mutex, a read lock): one
       level more of the same entry, so that recursion takes no room. A
       semaphore's units stay one entry each: another thread may post one
       (release_elsewhere()). */
    if (top && top->lock == lock && top->kind == kind &&
        kind != KIND_SEMAPHORE && top->depth < UINT_MAX)
        STORE(&top->depth, top->depth + 1);
    else
        held_push(r, n, lock, kind, try, site);
    uintptr_t a = (uintptr_t)lock;
    unsigned k = (a >> 4) & (SEEN_CACHE - 1);
    if (r->seen[k].lock != a || r->seen[k].outer != outer ||
        r->seen[k].outer0 != outer0) {
        forksafe__lock_note(lock, kind, site, r, outer, outer0);
        r->seen[k].lock = a;
        r->seen[k].outer = outer;
        r->seen[k].outer0 = outer0;
    }
    if (UNLIKELY(LOAD(&forksafe__policy_slow)))
        forksafe__policy_acquired(lock, kind, fn, site);
}

/* A successful acquire: push it on this thread's held stack and note it in
   the lock table. The common case, taken inline, is the one where
   note_acquire_slow() would write only the push: the thread holds no
   other lock (so there is no pair to note), its seen cache says the
   table needs nothing more for this lock taken bare, and no policy wants
   to hear of it. It makes the same stores in the same order (the entry,
   then nheld). */
static inline void note_acquire(void *lock, int kind, const char *fn,
                                void *site)
{
    struct thread_rec *r = forksafe__self_rec;
    uintptr_t a = (uintptr_t)lock;
    unsigned k = (a >> 4) & (SEEN_CACHE - 1);
    if (LIKELY(r != NULL) && LIKELY(r->nheld == 0) &&
        LIKELY(r->seen[k].lock == a) &&
        LIKELY(r->seen[k].outer == OUTER_BARE) &&
        LIKELY(r->seen[k].outer0 == OUTER_BARE) &&
        LIKELY(!LOAD(&forksafe__policy_slow))) {
        r->held[0].lock = lock;
        r->held[0].site = site;
        r->held[0].kind = kind & KIND_MASK;
        r->held[0].tried = (kind & KIND_TRY) != 0;
        r->held[0].depth = 0;
        STORE(&r->nheld, 1);
        return;
    }
    note_acquire_slow(lock, kind, fn, site);
}
#endif

/* The whole of note_release(), for a lock that is not on top of the stack
   or taken more than once there; with all, the entry goes whatever its
   depth (the lock's memory is going away). */
static NOINLINE int note_release_slow(struct thread_rec *r, void *lock,
                                      int all)
{
    int n = r->nheld;
    struct held *more = r->more;
    for (int i = n - 1; i >= 0; i--) {
        struct held *e = held_entry(r, more, i);
        if (!e || e->lock != lock)
            continue;
        if (e->depth && !all) {
            /* Still held: the entries above it stay covered by it. */
            STORE(&e->depth, e->depth - 1);
            return 1;
        }
#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
        /* Released out of order: the locks taken after it (under it) stay
           held, no longer covered by it. */
        for (int j = i + 1; j < n; j++) {
            void *l = held_entry(r, more, j)->lock;
            if (l && l != lock)
                forksafe__lock_unnest(l, r->tid);
        }
#endif
        for (int j = i; j + 1 < n; j++)
            *held_entry(r, more, j) = *held_entry(r, more, j + 1);
        STORE(&r->nheld, n - 1);
        return 1;
    }
    /* Perhaps one of the pushes past HELD_CAP: one fewer of them. */
    if (!all && r->dropped)
        STORE(&r->dropped, r->dropped - 1);
    return 0;
}

#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
/* Remove lock from this thread's held stack; 1 if it was there. The
   common case, the lock on top of the stack (released in order) and in
   the record's own entries, taken once, is a pop inline:
   note_release_slow() would make only that store for it. */
static inline int note_release(void *lock)
{
    struct thread_rec *r = forksafe__self_rec;
    if (UNLIKELY(!r))
        return 0;
    int n = r->nheld;
    if (LIKELY((unsigned)n - 1 < MAX_HELD) &&
        LIKELY(r->held[n - 1].lock == lock) &&
        LIKELY(r->held[n - 1].depth == 0)) {
        STORE(&r->nheld, n - 1);
        return 1;
    }
    return note_release_slow(r, lock, 0);
}
#endif

/* Remove every entry of lock from this thread's held stack, however many
   times each was taken: its memory is going away. 1 if there was one. */
static int note_release_all(void *lock)
{
    struct thread_rec *r = forksafe__self_rec;
    return r ? note_release_slow(r, lock, 1) : 0;
}

#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
/* A semaphore posted by a thread that did not take it (a Python Lock
   released by another thread, a Condition's waiter lock): clear it from
   the taker's stack. */
static void release_elsewhere(void *lock)
{
    int hwm = LOAD(&forksafe__threads_hwm);
    for (int i = 0; i < hwm; i++) {
        struct thread_rec *t = &forksafe__threads[i];
        if (t == forksafe__self_rec || LOAD(&t->tid) == 0)
            continue;
        int nh = LOAD(&t->nheld);
        struct held *more = LOAD(&t->more);
        struct held *e;
        for (int j = 0; j < nh && (e = held_entry(t, more, j)) != NULL; j++) {
            void *expect = lock;
            if (LOAD(&e->lock) == lock &&
                __atomic_compare_exchange_n(&e->lock, &expect, NULL, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                return;
        }
    }
}
#endif

/* The lock at p is going away: forget it everywhere. */
static void forget_one(void *p)
{
    if (forksafe__in_hook)
        return;
    while (note_release_all(p))
        ;
    forksafe__lock_forget((uintptr_t)p, (uintptr_t)p);
}

/* Memory [p, p + len) is going away, with any lock in it. */
static void forget_range(const void *p, size_t len)
{
    if (forksafe__in_hook || !len)
        return;
    uintptr_t lo = (uintptr_t)p, hi = lo + len;
    if (hi < lo)
        hi = UINTPTR_MAX;
    forksafe__lock_forget(lo, hi);
}

#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
/* A blocking acquire while the library's policy asks for it
   (forksafe__policy_slow): offered to forksafe__policy_acquire() first.
   Returns its result (noted as an acquire when 0), or FORKSAFE_POLICY_PASS
   for the hook to make the real call as usual. Out of line: the hooks'
   fast path keeps no registers for it. */
static NOINLINE int acquire_policy(void *lock, int op, int kind, const char *fn,
                                   void *site)
{
    int r;
    if (forksafe__in_hook ||
        (r = forksafe__policy_acquire(lock, op, site)) == FORKSAFE_POLICY_PASS)
        return FORKSAFE_POLICY_PASS;
    if (r == 0 || (kind == KIND_MUTEX && r == EOWNERDEAD))
        note_acquire(lock, kind, fn, site);
    return r;
}
#endif

/* ------------------------------------------------------------ mutexes */

/* A mutex call that returns with the caller holding the mutex: 0, or
   EOWNERDEAD from a robust mutex whose owner died (the caller holds it,
   and must make it consistent). */
#define TOOK_MUTEX(r) ((r) == 0 || (r) == EOWNERDEAD)

/* Every hook below keeps the contract of the glibc function it wraps
   (same result, same errno) and only adds bookkeeping: a successful
   acquire is pushed on the caller's held stack and noted in the lock
   table; a release is popped. While the library's policy asks for it
   (forksafe__policy_slow), a blocking acquire first goes through
   forksafe__policy_acquire(), and every successful acquire is offered to
   forksafe__policy_acquired(). */

#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    void *site = __builtin_return_address(0);
    int r;
    if (UNLIKELY(LOAD(&forksafe__policy_slow)) &&
        (r = acquire_policy(m, FORKSAFE_OP_MUTEX_LOCK, KIND_MUTEX,
                            "pthread_mutex_lock", site)) !=
            FORKSAFE_POLICY_PASS)
        return r;
    r = REAL(pthread_mutex_lock)(m);
    if (TOOK_MUTEX(r) && !forksafe__in_hook)
        note_acquire(m, KIND_MUTEX, "pthread_mutex_lock", site);
    return r;
}

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    int r = REAL(pthread_mutex_trylock)(m);
    if (TOOK_MUTEX(r) && !forksafe__in_hook)
        note_acquire(m, KIND_MUTEX | KIND_TRY, "pthread_mutex_trylock", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m,
                                   const struct timespec *ts)
{
    int r = REAL(pthread_mutex_timedlock)(m, ts);
    if (TOOK_MUTEX(r) && !forksafe__in_hook)
        note_acquire(m, KIND_MUTEX, "pthread_mutex_timedlock", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t c,
                                   const struct timespec *ts)
{
    int r = REAL(pthread_mutex_clocklock)(m, c, ts);
    if (TOOK_MUTEX(r) && !forksafe__in_hook)
        note_acquire(m, KIND_MUTEX, "pthread_mutex_clocklock", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (!forksafe__in_hook)
        note_release(m);
    return REAL(pthread_mutex_unlock)(m);
}

#endif /* FORKSAFE_INTERPOSE_LIVENESS_ONLY */

EXPORT int pthread_mutex_destroy(pthread_mutex_t *m)
{
    forget_one(m);
    return REAL(pthread_mutex_destroy)(m);
}

/* A lock initialized at an address is a new lock, whatever was there
   before (memory freed without destroying its lock, then reused): the
   tables must not take it for the old one. */
EXPORT int pthread_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
    forget_one(m);
    return REAL(pthread_mutex_init)(m, a);
}

/* ------------------------------------------------------------ rwlocks */

#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    void *site = __builtin_return_address(0);
    int r;
    if (UNLIKELY(LOAD(&forksafe__policy_slow)) &&
        (r = acquire_policy(l, FORKSAFE_OP_RDLOCK, KIND_RWLOCK,
                            "pthread_rwlock_rdlock", site)) !=
            FORKSAFE_POLICY_PASS)
        return r;
    r = REAL(pthread_rwlock_rdlock)(l);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(l, KIND_RWLOCK, "pthread_rwlock_rdlock", site);
    return r;
}

EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    void *site = __builtin_return_address(0);
    int r;
    if (UNLIKELY(LOAD(&forksafe__policy_slow)) &&
        (r = acquire_policy(l, FORKSAFE_OP_WRLOCK, KIND_RWLOCK,
                            "pthread_rwlock_wrlock", site)) !=
            FORKSAFE_POLICY_PASS)
        return r;
    r = REAL(pthread_rwlock_wrlock)(l);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(l, KIND_RWLOCK, "pthread_rwlock_wrlock", site);
    return r;
}

EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_tryrdlock)(l);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(l, KIND_RWLOCK | KIND_TRY, "pthread_rwlock_tryrdlock", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_trywrlock)(l);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(l, KIND_RWLOCK | KIND_TRY, "pthread_rwlock_trywrlock", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_timedrdlock(pthread_rwlock_t *l,
                                      const struct timespec *ts)
{
    int r = REAL(pthread_rwlock_timedrdlock)(l, ts);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(l, KIND_RWLOCK, "pthread_rwlock_timedrdlock", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_timedwrlock(pthread_rwlock_t *l,
                                      const struct timespec *ts)
{
    int r = REAL(pthread_rwlock_timedwrlock)(l, ts);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(l, KIND_RWLOCK, "pthread_rwlock_timedwrlock", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    if (!forksafe__in_hook)
        note_release(l);
    return REAL(pthread_rwlock_unlock)(l);
}

#endif /* FORKSAFE_INTERPOSE_LIVENESS_ONLY */

EXPORT int pthread_rwlock_destroy(pthread_rwlock_t *l)
{
    forget_one(l);
    return REAL(pthread_rwlock_destroy)(l);
}

EXPORT int pthread_rwlock_init(pthread_rwlock_t *l,
                               const pthread_rwlockattr_t *a)
{
    forget_one(l);
    return REAL(pthread_rwlock_init)(l, a);
}

#ifndef FORKSAFE_INTERPOSE_LIVENESS_ONLY
/* ------------------------------------------------------------ conditions */

/* A condition wait releases the mutex while it sleeps: a thread parked in
   pthread_cond_wait does not hold it, and must not be reported as if it
   did. */
EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    void *site = __builtin_return_address(0);
    int tracked = !forksafe__in_hook && note_release(m);
    int r = FORKSAFE_POLICY_PASS;
    if (UNLIKELY(LOAD(&forksafe__policy_slow)) && !forksafe__in_hook)
        r = forksafe__policy_cond_wait(c, m, site);
    if (r == FORKSAFE_POLICY_PASS)
        r = REAL(pthread_cond_wait)(c, m);
    if (tracked)
        note_acquire(m, KIND_MUTEX, "pthread_cond_wait", site);
    return r;
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  const struct timespec *ts)
{
    int tracked = !forksafe__in_hook && note_release(m);
    int r = REAL(pthread_cond_timedwait)(c, m, ts);
    if (tracked)
        note_acquire(m, KIND_MUTEX, "pthread_cond_timedwait", __builtin_return_address(0));
    return r;
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  clockid_t clk, const struct timespec *ts)
{
    int tracked = !forksafe__in_hook && note_release(m);
    int r = REAL(pthread_cond_clockwait)(c, m, clk, ts);
    if (tracked)
        note_acquire(m, KIND_MUTEX, "pthread_cond_clockwait", __builtin_return_address(0));
    return r;
}

/* ------------------------------------------------------------ semaphores */

/* Semaphores used as locks (CPython's threading.Lock is one): a successful
   wait takes it, a post releases it, possibly from another thread. */
EXPORT int sem_wait(sem_t *s)
{
    void *site = __builtin_return_address(0);
    int r;
    if (UNLIKELY(LOAD(&forksafe__policy_slow)) &&
        (r = acquire_policy(s, FORKSAFE_OP_SEM_WAIT, KIND_SEMAPHORE, "sem_wait",
                            site)) != FORKSAFE_POLICY_PASS)
        return r;
    r = REAL(sem_wait)(s);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(s, KIND_SEMAPHORE, "sem_wait", site);
    return r;
}

EXPORT int sem_trywait(sem_t *s)
{
    int r = REAL(sem_trywait)(s);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(s, KIND_SEMAPHORE | KIND_TRY, "sem_trywait", __builtin_return_address(0));
    return r;
}

EXPORT int sem_timedwait(sem_t *s, const struct timespec *ts)
{
    int r = REAL(sem_timedwait)(s, ts);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(s, KIND_SEMAPHORE, "sem_timedwait", __builtin_return_address(0));
    return r;
}

EXPORT int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *ts)
{
    int r = REAL(sem_clockwait)(s, clk, ts);
    if (r == 0 && !forksafe__in_hook)
        note_acquire(s, KIND_SEMAPHORE, "sem_clockwait", __builtin_return_address(0));
    return r;
}

EXPORT int sem_post(sem_t *s)
{
    /* sem_post is async-signal-safe: only our own bookkeeping here. */
    if (!forksafe__in_hook && !note_release(s))
        release_elsewhere(s);
    return REAL(sem_post)(s);
}

#endif /* FORKSAFE_INTERPOSE_LIVENESS_ONLY */

EXPORT int sem_destroy(sem_t *s)
{
    forget_one(s);
    return REAL(sem_destroy)(s);
}

EXPORT int sem_init(sem_t *s, int pshared, unsigned value)
{
    forget_one(s);
    return REAL(sem_init)(s, pshared, value);
}

/* A named semaphore is a mapping of its own: sem_close unmaps it (when it
   is the last reference), from inside libc, where munmap is not seen. */
EXPORT int sem_close(sem_t *s)
{
    if (!forksafe__in_hook) {
        while (note_release_all(s))
            ;
        forget_range(s, sizeof *s);
    }
    return REAL(sem_close)(s);
}

/* ------------------------------------------------------------ memory */

EXPORT int munmap(void *p, size_t len)
{
    forget_range(p, len);
    forksafe__maps_forget((uintptr_t)p, (uintptr_t)p + len);
    return REAL(munmap)(p, len);
}

/* shmdt() detaches a System V segment (process-shared locks live in such
   memory): its extent is the mapping that contains addr. */
EXPORT int shmdt(const void *addr)
{
    uintptr_t lo, hi;
    if (!forksafe__in_hook && forksafe__maps_extent(addr, &lo, &hi) == 0) {
        forget_range((const void *)lo, hi - lo);
        forksafe__maps_forget(lo, hi);
    }
    return REAL(shmdt)(addr);
}

/* mremap() moves or shrinks a mapping: what was at the old place (or past
   the new end) is gone. The fifth argument exists only with
   MREMAP_FIXED. */
EXPORT void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
    void *fixed = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        fixed = va_arg(ap, void *);
        va_end(ap);
    }
    void *r = REAL(mremap)(old, oldlen, newlen, flags, fixed);
    if (r != MAP_FAILED) {
        int saved = errno;
        if (r != old) {
            forget_range(old, oldlen);
            forksafe__maps_forget((uintptr_t)old, (uintptr_t)old + oldlen);
        } else if (newlen < oldlen) {
            forget_range((char *)old + newlen, oldlen - newlen);
        }
        errno = saved;
    }
    return r;
}

/* dlclose(): the loader unmaps an object's segments itself (not through
   munmap) when its last reference goes, and with it every dependency that
   no other object needs. So the objects loaded before the call are noted
   (their PT_LOAD segments), and those missing after it are forgotten:
   their locks leave the tables, and their segments are handed to
   forksafe__maps_note_unloaded, so that code addresses recorded while they
   were loaded still name them. The snapshot is static (taken by one
   dlclose at a time); a dlclose that finds it busy, or an object beyond
   its capacity, falls back to the handle's own object. */
#define DL_RANGES    8
#define DL_SNAP_OBJS 256
#define DL_SNAP_SEGS 6
#define DL_NAME_POOL 32768

struct dl_obj {
    uintptr_t base;
    unsigned name; /* offset in names */
    int nseg, present;
    uintptr_t lo[DL_SNAP_SEGS], hi[DL_SNAP_SEGS], off[DL_SNAP_SEGS];
};

static struct {
    struct dl_obj obj[DL_SNAP_OBJS];
    int n;
    size_t used;
    char names[DL_NAME_POOL];
} dl_snap;
static int dl_snap_busy;

static int dl_snap_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (!info->dlpi_name || !info->dlpi_name[0] || dl_snap.n >= DL_SNAP_OBJS)
        return 0;
    size_t nl = strlen(info->dlpi_name) + 1;
    if (dl_snap.used + nl > sizeof dl_snap.names)
        return 0;
    struct dl_obj *o = &dl_snap.obj[dl_snap.n];
    o->base = info->dlpi_addr;
    o->name = (unsigned)dl_snap.used;
    o->nseg = 0;
    o->present = 0;
    memcpy(dl_snap.names + dl_snap.used, info->dlpi_name, nl);
    dl_snap.used += nl;
    for (int i = 0; i < info->dlpi_phnum && o->nseg < DL_SNAP_SEGS; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        o->lo[o->nseg] = info->dlpi_addr + ph->p_vaddr;
        o->hi[o->nseg] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
        o->off[o->nseg] = ph->p_offset;
        o->nseg++;
    }
    dl_snap.n++;
    return 0;
}

static int dl_mark_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (!info->dlpi_name || !info->dlpi_name[0])
        return 0;
    for (int i = 0; i < dl_snap.n; i++) {
        struct dl_obj *o = &dl_snap.obj[i];
        if (!o->present && o->base == info->dlpi_addr &&
            strcmp(dl_snap.names + o->name, info->dlpi_name) == 0) {
            o->present = 1;
            break;
        }
    }
    return 0;
}

/* The handle's own object, for when the snapshot cannot be used. */
struct dl_find {
    uintptr_t base;
    const char *name;
    int found;
    int n;
    uintptr_t lo[DL_RANGES], hi[DL_RANGES], off[DL_RANGES];
};

static int dl_find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct dl_find *f = arg;
    if (info->dlpi_addr != f->base || !info->dlpi_name ||
        strcmp(info->dlpi_name, f->name) != 0)
        return 0;
    f->found = 1;
    for (int i = 0; i < info->dlpi_phnum && f->n < DL_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        f->lo[f->n] = f->base + ph->p_vaddr;
        f->hi[f->n] = f->base + ph->p_vaddr + ph->p_memsz;
        f->off[f->n] = ph->p_offset;
        f->n++;
    }
    return 1;
}

static void dl_gone(uintptr_t lo, uintptr_t hi, uintptr_t off,
                    const char *path)
{
    forget_range((void *)lo, hi - lo);
    forksafe__maps_forget(lo, hi);
    forksafe__maps_note_unloaded(lo, hi, off, path);
    forksafe__policy_unloaded(lo, hi);
}

EXPORT int dlclose(void *h)
{
    if (forksafe__in_hook)
        return REAL(dlclose)(h);
    struct dl_find f = {0};
    struct link_map *lm = NULL;
    char name[512] = "";
    if (dlinfo(h, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name &&
        lm->l_name[0]) {
        forksafe__str_copy(name, sizeof name, lm->l_name);
        f.base = lm->l_addr;
        f.name = name;
        dl_iterate_phdr(dl_find_cb, &f);
    }
    int expect = 0;
    int snap = __atomic_compare_exchange_n(&dl_snap_busy, &expect, 1, 0,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    if (snap) {
        dl_snap.n = 0;
        dl_snap.used = 0;
        dl_iterate_phdr(dl_snap_cb, NULL);
    }
    int r = REAL(dlclose)(h);
    int saved = errno;
    if (r == 0 && snap) {
        dl_iterate_phdr(dl_mark_cb, NULL);
        int handle_seen = 0;
        for (int i = 0; i < dl_snap.n; i++) {
            const struct dl_obj *o = &dl_snap.obj[i];
            handle_seen |= o->base == f.base &&
                           strcmp(dl_snap.names + o->name, name) == 0;
        }
        if (!handle_seen) /* beyond the snapshot's capacity */
            snap = 2;
        for (int i = 0; i < dl_snap.n; i++) {
            const struct dl_obj *o = &dl_snap.obj[i];
            if (o->present)
                continue;
            for (int k = 0; k < o->nseg; k++)
                dl_gone(o->lo[k], o->hi[k], o->off[k], dl_snap.names + o->name);
        }
    }
    if (r == 0 && f.n && snap != 1) {
        struct dl_find again = {.base = f.base, .name = name};
        dl_iterate_phdr(dl_find_cb, &again);
        if (!again.found)
            for (int i = 0; i < f.n; i++)
                dl_gone(f.lo[i], f.hi[i], f.off[i], name);
    }
    if (snap)
        __atomic_store_n(&dl_snap_busy, 0, __ATOMIC_RELEASE);
    errno = saved;
    return r;
}
