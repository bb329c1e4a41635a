/* SPDX-License-Identifier: MIT */
/*
 * hooks.c: forksafe-run's pthread lock hooks. Every mutex and rwlock
 * acquire announces the lock in the thread's run record, passes the gate
 * (run.h, DESIGN), calls the real function and pushes what it got on the
 * thread's held stack; every release calls the real function first and
 * pops after, so that a thread is never seen holding nothing while it
 * still holds the lock. Condition waits say which mutex libc will take
 * back inside them, and, when that happens while a fork is being made by
 * a thread holding nothing else, give it back and wait at the gate before
 * returning with it. The forking thread's own waits inside fork handlers
 * (condition waits, joins, semaphore waits) open the gate while they last.
 *
 * Each hook has the contract of the libc function it wraps: same result,
 * same errno, same blocking, except that a lock call may first wait at the
 * gate while a fork is made. A try never waits there (it fails with EBUSY
 * only in the moment between the forker's last look and the fork itself),
 * and a timed lock waits there at most until its deadline, then tries: a
 * free lock is taken, as without a fork going on. The fast path, with the
 * gate open, is two stores, one load and the push.
 */
#include "run.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <semaphore.h>

int (*forksafe__run_real_clockrdlock)(pthread_rwlock_t *, clockid_t,
                                      const struct timespec *);
int (*forksafe__run_real_clockwrlock)(pthread_rwlock_t *, clockid_t,
                                      const struct timespec *);
int (*forksafe__run_real_join)(pthread_t, void **);
int (*forksafe__run_real_timedjoin)(pthread_t, void **,
                                    const struct timespec *);
int (*forksafe__run_real_clockjoin)(pthread_t, void **, clockid_t,
                                    const struct timespec *);

#define RUN_REAL(ptr, name)                                                    \
    (LOAD(&(ptr))                                                              \
         ? (ptr)                                                               \
         : (STORE(&(ptr), (__typeof__(ptr))forksafe__resolve(name)), (ptr)))

#define HANDED 1 /* the forker was handed a mutex it had taken (slow) */

/* ------------------------------------------------------------ acquire */

/* How an acquire waits: a plain lock, a try, or a timed lock. */
enum { WAIT_LOCK, WAIT_TRY, WAIT_TIMED };

/* With the gate closed: 0 to call the real function, HANDED when the
   forker locks a mutex it took for the fork (nothing to call), or EBUSY
   (a try, with the gate sealed: run.h). A try never waits at the gate; a
   timed lock waits there until its deadline at most, and then goes on as
   a try does (the real call then takes a free lock, or says ETIMEDOUT as
   it would without a fork going on); sealed, it waits for the fork to end
   (that is the fork itself: short), and the real call decides. */
static int slow(struct thread_rec *r, struct run_thread *rt, void *acq,
                clockid_t clk, const struct timespec *abstime, int how)
{
    if (LOAD(&forksafe__run_fk.forker) == r)
        return RUN_ACQ_KIND(acq) == KIND_MUTEX &&
                       forksafe__run_take_back(RUN_ACQ_LOCK(acq))
                   ? HANDED
                   : 0;
    if (how == WAIT_TRY) {
        if (forksafe__in_hook ||
            ((LOAD(&r->nheld) > 0 || LOAD(&rt->overflow) > 0) &&
             forksafe__run_holds(r, rt)))
            return 0; /* holders are never held back */
        return forksafe__run_gate_try(rt, acq);
    }
    if (how == WAIT_LOCK || !abstime)
        return forksafe__run_gate(r, rt, acq, clk, NULL);
    if (forksafe__run_gate(r, rt, acq, clk, abstime) != ETIMEDOUT)
        return 0;
    if (forksafe__run_gate_try(rt, acq) == 0)
        return 0;
    return forksafe__run_gate(r, rt, acq, clk, NULL);
}

/* This thread's record and run state, in *rp and *rtp (loaded from
   forksafe__self_rec and forksafe__run_me by the caller): 1 if the lock
   path goes on, 0 if it only forwards (inside the library, or the thread
   is not tracked). */
static inline __attribute__((always_inline)) int here(struct thread_rec **rp,
                                                      struct run_thread **rtp)
{
    struct thread_rec *r = *rp;
    if (__builtin_expect(!forksafe__in_hook && r == forksafe__run_me.rec &&
                             r->ident == forksafe__run_me.ident,
                         1))
        return 1;
    if (forksafe__in_hook || !(r = forksafe__run_self()))
        return 0;
    struct run_thread *rt = forksafe__run_of(r);
    forksafe__run_me.rt = rt;
    forksafe__run_me.rec = r;
    forksafe__run_me.ident = r->ident;
    *rp = r;
    *rtp = rt;
    return 1;
}

/* Every acquire hook: announce the lock, pass the gate, call the real
   function, push what it got, then say the thread is no longer taking
   anything (in that order: see run.h). With the gate closed, slow() says
   whether to call the real function (0), or not (HANDED: the forker got
   back a mutex it took for the fork; EBUSY: a try with the gate sealed).
   After the call the record, run state and site are loaded again rather
   than kept in registers across it (they are this thread's own, and in
   cache): the hook then saves three registers instead of six. */
#define ACQUIRE(lock, rw, kind, clk, abstime, how, got_cond, call)             \
    do {                                                                       \
        struct thread_rec *r_ = forksafe__self_rec;                            \
        struct run_thread *rt_ = forksafe__run_me.rt;                          \
        if (UNLIKELY(!here(&r_, &rt_)))                                        \
            return call;                                                       \
        void *site_ = __builtin_return_address(0);                             \
        STORE_RELAXED(&rt_->wait_site, site_);                                 \
        STORE_RELAXED(&rt_->acquiring, RUN_ACQ(lock, rw));                     \
        int pre_ = 0, ret_ = 0;                                                \
        if (UNLIKELY(forksafe__run_gate_check())) {                            \
            pre_ = slow(r_, rt_, RUN_ACQ(lock, rw), clk, abstime, how);        \
            if (pre_ == EBUSY)                                                 \
                return EBUSY;                                                  \
        }                                                                      \
        if (pre_ != HANDED)                                                    \
            ret_ = call;                                                       \
        r_ = forksafe__self_rec;                                               \
        rt_ = forksafe__run_me.rt;                                             \
        if (got_cond)                                                          \
            forksafe__run_push(r_, rt_, lock, kind,                            \
                               LOAD_RELAXED(&rt_->wait_site));                 \
        STORE(&rt_->acquiring, NULL);                                          \
        return ret_;                                                           \
    } while (0)

#define MUTEX_GOT (ret_ == 0 || ret_ == EOWNERDEAD)
#define RW_GOT    (ret_ == 0)

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    ACQUIRE(m, 0, KIND_MUTEX, CLOCK_REALTIME, NULL, WAIT_LOCK, MUTEX_GOT,
            REAL(pthread_mutex_lock)(m));
}

/* A try never waits at the gate (see slow()). */
EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    ACQUIRE(m, 0, KIND_MUTEX, CLOCK_REALTIME, NULL, WAIT_TRY, MUTEX_GOT,
            REAL(pthread_mutex_trylock)(m));
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m,
                                   const struct timespec *ts)
{
    ACQUIRE(m, 0, KIND_MUTEX, CLOCK_REALTIME, ts, WAIT_TIMED, MUTEX_GOT,
            REAL(pthread_mutex_timedlock)(m, ts));
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t c,
                                   const struct timespec *ts)
{
    ACQUIRE(m, 0, KIND_MUTEX, c, ts, WAIT_TIMED, MUTEX_GOT,
            REAL(pthread_mutex_clocklock)(m, c, ts));
}

EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    ACQUIRE(l, 1, KIND_RWLOCK, CLOCK_REALTIME, NULL, WAIT_LOCK, RW_GOT,
            REAL(pthread_rwlock_rdlock)(l));
}

EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    ACQUIRE(l, 1, KIND_RWLOCK, CLOCK_REALTIME, NULL, WAIT_LOCK, RW_GOT,
            REAL(pthread_rwlock_wrlock)(l));
}

EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    ACQUIRE(l, 1, KIND_RWLOCK, CLOCK_REALTIME, NULL, WAIT_TRY, RW_GOT,
            REAL(pthread_rwlock_tryrdlock)(l));
}

EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    ACQUIRE(l, 1, KIND_RWLOCK, CLOCK_REALTIME, NULL, WAIT_TRY, RW_GOT,
            REAL(pthread_rwlock_trywrlock)(l));
}

EXPORT int pthread_rwlock_timedrdlock(pthread_rwlock_t *l,
                                      const struct timespec *ts)
{
    ACQUIRE(l, 1, KIND_RWLOCK, CLOCK_REALTIME, ts, WAIT_TIMED, RW_GOT,
            REAL(pthread_rwlock_timedrdlock)(l, ts));
}

EXPORT int pthread_rwlock_timedwrlock(pthread_rwlock_t *l,
                                      const struct timespec *ts)
{
    ACQUIRE(l, 1, KIND_RWLOCK, CLOCK_REALTIME, ts, WAIT_TIMED, RW_GOT,
            REAL(pthread_rwlock_timedwrlock)(l, ts));
}

EXPORT int pthread_rwlock_clockrdlock(pthread_rwlock_t *l, clockid_t c,
                                      const struct timespec *ts)
{
    ACQUIRE(l, 1, KIND_RWLOCK, c, ts, WAIT_TIMED, RW_GOT,
            RUN_REAL(forksafe__run_real_clockrdlock,
                     "pthread_rwlock_clockrdlock")(l, c, ts));
}

EXPORT int pthread_rwlock_clockwrlock(pthread_rwlock_t *l, clockid_t c,
                                      const struct timespec *ts)
{
    ACQUIRE(l, 1, KIND_RWLOCK, c, ts, WAIT_TIMED, RW_GOT,
            RUN_REAL(forksafe__run_real_clockwrlock,
                     "pthread_rwlock_clockwrlock")(l, c, ts));
}

/* ------------------------------------------------------------ release */

static inline void released(void *lock)
{
    if (UNLIKELY(forksafe__in_hook))
        return;
    struct thread_rec *r = forksafe__self_rec;
    if (!r)
        return;
    /* Locks are mostly released in the reverse order of taking: the top
       entry, which needs nothing of the run state. */
    int n = r->nheld;
    if (__builtin_expect(n > 0 && r->held[n - 1].lock == lock, 1)) {
        STORE(&r->nheld, n - 1);
        return;
    }
    forksafe__run_pop(r, forksafe__run_of(r), lock);
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    int ret = REAL(pthread_mutex_unlock)(m);
    if (ret == 0)
        released(m);
    return ret;
}

EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    int ret = REAL(pthread_rwlock_unlock)(l);
    if (ret == 0)
        released(l);
    return ret;
}

/* ------------------------------------------------------------ conditions */

enum { COND_WAIT, COND_TIMED, COND_CLOCK };

static int cond_real(int how, pthread_cond_t *c, pthread_mutex_t *m,
                     clockid_t clk, const struct timespec *ts)
{
    switch (how) {
    case COND_TIMED:
        return REAL(pthread_cond_timedwait)(c, m, ts);
    case COND_CLOCK:
        return REAL(pthread_cond_clockwait)(c, m, clk, ts);
    default:
        return REAL(pthread_cond_wait)(c, m);
    }
}

/* A condition wait releases m while it sleeps and takes it back inside
   libc, where no hook sees it. So the thread says which mutex it waits
   with before it pops it, and the forker takes that mutex before a fork
   (quiesce.c). Back with m while a fork is being made, a thread that
   holds nothing else gives m back and waits at the gate, then takes it
   again: to the program that is a wait that lasted a little longer. */
static int cond_wait(int how, pthread_cond_t *c, pthread_mutex_t *m,
                     clockid_t clk, const struct timespec *ts, void *site)
{
    if (UNLIKELY(forksafe__in_hook))
        return cond_real(how, c, m, clk, ts);
    struct thread_rec *r = forksafe__run_self();
    if (UNLIKELY(!r))
        return cond_real(how, c, m, clk, ts);
    struct run_thread *rt = forksafe__run_of(r);
    if (UNLIKELY(forksafe__run_is_forker_in_fork(r))) {
        /* A fork handler waits, perhaps for another thread. */
        forksafe__run_pop(r, rt, m);
        forksafe__run_forker_wait_begin();
        int ret = cond_real(how, c, m, clk, ts);
        forksafe__run_push(r, rt, m, KIND_MUTEX, site);
        forksafe__run_forker_wait_end();
        return ret;
    }
    STORE(&rt->cond_lock, m);
    forksafe__run_pop(r, rt, m);
    int ret = cond_real(how, c, m, clk, ts);
    if (UNLIKELY(LOAD(&forksafe__run_fast.closed)) &&
        LOAD(&forksafe__run_fk.forker) != r && !forksafe__run_holds(r, rt)) {
        REAL(pthread_mutex_unlock)(m);
        STORE(&rt->cond_lock, NULL);
        STORE_RELAXED(&rt->wait_site, site);
        STORE_RELAXED(&rt->acquiring, (void *)m);
        if (forksafe__run_gate_check())
            forksafe__run_gate(r, rt, m, CLOCK_REALTIME, NULL);
        int again = REAL(pthread_mutex_lock)(m);
        if (again == 0 || again == EOWNERDEAD)
            forksafe__run_push(r, rt, m, KIND_MUTEX, site);
        STORE(&rt->acquiring, NULL);
        return again ? again : ret;
    }
    forksafe__run_push(r, rt, m, KIND_MUTEX, site);
    STORE(&rt->cond_lock, NULL);
    return ret;
}

EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    return cond_wait(COND_WAIT, c, m, CLOCK_REALTIME, NULL,
                     __builtin_return_address(0));
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  const struct timespec *ts)
{
    return cond_wait(COND_TIMED, c, m, CLOCK_REALTIME, ts,
                     __builtin_return_address(0));
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  clockid_t clk, const struct timespec *ts)
{
    return cond_wait(COND_CLOCK, c, m, clk, ts, __builtin_return_address(0));
}

/* ------------------------------------------------------------ forker waits */

/* A fork handler that joins a thread or waits on a semaphore may wait for
   a thread that needs a lock to get there (OpenBLAS stops its workers in
   its prepare handler): the gate is open while the forker waits. */
#define FORKER_WAIT(call)                                                      \
    do {                                                                       \
        struct thread_rec *r_ = forksafe__self_rec;                            \
        if (UNLIKELY(r_ && forksafe__run_is_forker_in_fork(r_))) {             \
            forksafe__run_forker_wait_begin();                                 \
            int ret_ = call;                                                   \
            forksafe__run_forker_wait_end();                                   \
            return ret_;                                                       \
        }                                                                      \
        return call;                                                           \
    } while (0)

EXPORT int pthread_join(pthread_t t, void **ret)
{
    FORKER_WAIT(RUN_REAL(forksafe__run_real_join, "pthread_join")(t, ret));
}

EXPORT int pthread_timedjoin_np(pthread_t t, void **ret,
                                const struct timespec *ts)
{
    FORKER_WAIT(RUN_REAL(forksafe__run_real_timedjoin,
                         "pthread_timedjoin_np")(t, ret, ts));
}

EXPORT int pthread_clockjoin_np(pthread_t t, void **ret, clockid_t c,
                                const struct timespec *ts)
{
    FORKER_WAIT(RUN_REAL(forksafe__run_real_clockjoin,
                         "pthread_clockjoin_np")(t, ret, c, ts));
}

EXPORT int sem_wait(sem_t *s)
{
    FORKER_WAIT(REAL(sem_wait)(s));
}

EXPORT int sem_timedwait(sem_t *s, const struct timespec *ts)
{
    FORKER_WAIT(REAL(sem_timedwait)(s, ts));
}

EXPORT int sem_clockwait(sem_t *s, clockid_t c, const struct timespec *ts)
{
    FORKER_WAIT(REAL(sem_clockwait)(s, c, ts));
}

/* ------------------------------------------------------------ memory */

/* glibc exports these; they are not declared in any public header. */
void __libc_free(void *p);
void *__libc_realloc(void *p, size_t n);

/* Memory that goes back to malloc may hold locks this thread still has on
   its held stack (an object freed with its lock held): drop them, or the
   thread would look like a holder until the memory is reused. Only the
   freeing thread's own stack is looked at, and only when it holds
   something: the common free() pays one load. */
static void drop_range(struct thread_rec *r, void *p, size_t n)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + n;
    int k = 0, len = r->nheld;
    for (int i = 0; i < len && i < MAX_HELD; i++) {
        uintptr_t a = (uintptr_t)r->held[i].lock;
        if (a < lo || a >= hi)
            r->held[k++] = r->held[i];
    }
    if (k != len)
        STORE(&r->nheld, k);
}

EXPORT void free(void *p)
{
    if (UNLIKELY(forksafe__in_resolve)) {
        __libc_free(p);
        return;
    }
    struct thread_rec *r = forksafe__self_rec;
    if (UNLIKELY(p && r && LOAD_RELAXED(&r->nheld) > 0))
        drop_range(r, p, malloc_usable_size(p));
    REAL(free)(p);
}

EXPORT void *realloc(void *p, size_t n)
{
    if (UNLIKELY(forksafe__in_resolve))
        return __libc_realloc(p, n);
    struct thread_rec *r = forksafe__self_rec;
    size_t old = 0;
    if (UNLIKELY(p && r && LOAD_RELAXED(&r->nheld) > 0))
        old = malloc_usable_size(p);
    void *q = REAL(realloc)(p, n);
    if (UNLIKELY(old) && q != p && (q || n == 0))
        drop_range(r, p, old);
    return q;
}
