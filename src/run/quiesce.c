/* SPDX-License-Identifier: MIT */
/*
 * quiesce.c: the forking thread's wait for lock holders. With the gate
 * closed it scans the thread table until no other thread holds a pthread
 * mutex or rwlock or is taking one; then it takes the mutexes that threads
 * in pthread_cond_*wait would take back inside libc (where no hook sees
 * them), so that none is re-taken before the fork. It gives up at the
 * deadline, or at once when every thread still holding a lock waits for
 * the forking thread itself, and then records who held what.
 *
 * DESIGN. A scan reads each record's `acquiring` before its held stack
 * (the lock path writes them in the other order), so a thread is never
 * seen between the two. A held stack that is not empty is trusted at
 * first, since holders release in microseconds; only when the wait goes
 * on is each entry checked against the lock's own record of its holder
 * (read fault-safe), which finds the stale ones: a lock whose memory was
 * freed or reused while it was on the stack, a normal mutex unlocked by
 * another thread. A thread whose only entries are stale is treated as
 * holding nothing, and so waits at the gate like any other, since the
 * gate makes the same check (gate.c). Nothing here blocks: locks are only
 * tried.
 */
#include "run.h"

#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

struct run_fork forksafe__run_fk __attribute__((aligned(4096)));
_Static_assert(sizeof forksafe__run_fk <= 4096,
               "fork state must fit in one page");

/* ------------------------------------------------------------ locks */

/* The holder of lock (kind KIND_MUTEX or KIND_RWLOCK) as the lock itself
   records it, read fault-safe: a TID, FS_HOLDER_*, or RUN_HOLDER_GONE when
   the memory cannot be read (it is gone, so nobody holds it). */
static pid_t holder_of(const void *lock, int kind, unsigned *kind_bits)
{
    const struct forksafe_platform *P = forksafe__platform();
    if (kind == KIND_RWLOCK) {
        pthread_rwlock_t copy;
        if (forksafe__mem_read(&copy, lock, sizeof copy) != 0)
            return RUN_HOLDER_GONE;
        if (kind_bits)
            *kind_bits = P->rwlock_kind(&copy);
        return P->rwlock_holder(&copy);
    }
    pthread_mutex_t copy;
    if (forksafe__mem_read(&copy, lock, sizeof copy) != 0)
        return RUN_HOLDER_GONE;
    if (kind_bits)
        *kind_bits = P->mutex_kind(&copy);
    return P->mutex_holder(&copy);
}

int forksafe__run_forker_holds(const void *lock)
{
    struct run_fork *fk = &forksafe__run_fk;
    for (int i = 0; i < fk->ntaken; i++)
        if (fk->taken[i] == lock)
            return 1;
    struct thread_rec *r = fk->forker;
    if (!r)
        return 0;
    int n = r->nheld;
    for (int i = 0; i < n && i < MAX_HELD; i++) {
        if (r->held[i].lock != lock)
            continue;
        /* A thread taking it cannot get it before the fork only if the
           forker really holds it exclusively (not a stale entry, not a
           read lock another reader may share). */
        return holder_of(lock, r->held[i].kind, NULL) == r->tid;
    }
    return 0;
}

/* ------------------------------------------------------------ registry */

typedef int (*lookup_fn)(const void *, void *);
HOT static lookup_fn lookup;
HOT static unsigned long long lookup_adds = (unsigned long long)-1;

static int count_adds(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    *(unsigned long long *)arg = info->dlpi_adds;
    return 1;
}

int forksafe__run_registered(const void *lock)
{
    if (!lookup) {
        /* libforksafe may be loaded later (dlopen): look again whenever
           an object was loaded since the last look. */
        unsigned long long adds = 0;
        dl_iterate_phdr(count_adds, &adds);
        if (adds == lookup_adds)
            return 0;
        lookup_adds = adds;
        lookup = (lookup_fn)forksafe__resolve("forksafe_lookup");
        if (!lookup)
            return 0;
    }
    return lookup(lock, NULL) == 0;
}

/* ------------------------------------------------------------ scan */

struct scan {
    int busy; /* threads that hold a lock or are taking one */
    int ntk;  /* ... of which take (validated scans; up to RUN_TAKEN_MAX) */
    int tk[RUN_TAKEN_MAX];      /* their slots */
    void *tkacq[RUN_TAKEN_MAX]; /* and what each was taking */
    int stuck;                  /* ... of which wait for the forker */
    int ncand;                  /* condition mutexes to take */
    void *cand[RUN_TAKEN_MAX];
    int record; /* fill forksafe__run_fk.blockers */
};

static void add_blocker(int tid, int state, void *lock, int kind, void *site,
                        void *start, int lock_holder)
{
    struct run_fork *fk = &forksafe__run_fk;
    if (fk->nblockers >= RUN_BLOCKERS_MAX)
        return;
    fk->blockers[fk->nblockers++] = (struct run_blocker){
        tid, state, lock, kind, site, start, lock_holder, ""};
}

static void add_candidate(struct scan *s, void *m)
{
    for (int i = 0; i < s->ncand; i++)
        if (s->cand[i] == m)
            return;
    if (s->ncand < RUN_TAKEN_MAX)
        s->cand[s->ncand++] = m;
}

static int thread_gone(int tid)
{
    int saved = errno;
    int gone = syscall(SYS_tgkill, (int)forksafe__getpid(), tid, 0) != 0 &&
               errno == ESRCH;
    errno = saved;
    return gone;
}

/* 1 if lock is recorded as held by a thread that is not one of this
   process's (another process's, through shared memory, or gone). */
static int other_holder(const void *lock, int kind)
{
    pid_t h = holder_of(lock, kind, NULL);
    return h > 0 && thread_gone((int)h);
}

/* Record the locks t really holds as blockers in state. */
static void record_held(struct thread_rec *t, struct run_thread *rt, int state)
{
    int n = LOAD(&t->nheld), named = 0;
    for (int j = 0; j < n && j < MAX_HELD; j++) {
        struct held h = t->held[j];
        if (!h.lock)
            continue;
        if (!forksafe__run_held_by(holder_of(h.lock, h.kind, NULL), h.kind,
                                   t->tid))
            continue;
        add_blocker(t->tid, state, h.lock, h.kind, h.site, t->start, 0);
        named++;
    }
    if (!named && LOAD(&rt->overflow) > 0)
        add_blocker(t->tid, RUN_B_MANY, NULL, 0, NULL, t->start, 0);
}

/* One pass over the thread table. validate: check held stacks against
   the locks (slower); s->record: name the blockers. */
static void scan(struct scan *s, int validate)
{
    struct run_fork *fk = &forksafe__run_fk;
    struct thread_rec *me = fk->forker;
    s->busy = s->stuck = s->ncand = s->ntk = 0;
    int hwm = LOAD(&forksafe__threads_hwm);
    for (int i = 0; i < hwm; i++) {
        struct thread_rec *t = &forksafe__threads[i];
        int tid = LOAD(&t->tid);
        if (!tid || t == me)
            continue;
        struct run_thread *rt = &forksafe__run_threads[i];
        /* A record whose thread has not called a hook of ours since it
           claimed the slot holds nothing we track. */
        if (LOAD(&rt->ident) != LOAD(&t->ident))
            continue;
        void *acq = LOAD(&rt->acquiring);
        int holds = LOAD(&t->nheld) > 0 || LOAD(&rt->overflow) > 0;
        if (holds && validate) {
            if (thread_gone(tid)) {
                /* Died without its key destructor (a raw exit), or this
                   is a child made without fork handlers. */
                forksafe__thread_release(t);
                continue;
            }
            holds = forksafe__run_holds(t, rt);
        }
        void *lock = RUN_ACQ_LOCK(acq);
        if (!holds) {
            if (!acq) {
                void *c = LOAD(&rt->cond_lock);
                if (c)
                    add_candidate(s, c);
                continue;
            }
            /* Taking a lock the forker holds: it cannot get it before the
               fork, and holds nothing the child could miss. */
            if (forksafe__run_forker_holds(lock))
                continue;
            /* Taking a lock whose holder is no thread of this process (a
               process-shared lock another process holds, or one whose
               holder died): no wait here can end that, and the taker is
               not in the child. Asking costs system calls: while another
               thread holds a lock, the wait goes on anyway, so it is asked
               after the scan, only when nobody else is in the way. */
            if (s->record && other_holder(lock, RUN_ACQ_KIND(acq)))
                continue;
            if (validate && s->ntk < RUN_TAKEN_MAX) {
                s->tk[s->ntk] = i;
                s->tkacq[s->ntk++] = acq;
            }
            s->busy++;
            if (s->record)
                add_blocker(tid, RUN_B_TAKING, lock, RUN_ACQ_KIND(acq),
                            LOAD(&rt->wait_site), t->start,
                            (int)holder_of(lock, RUN_ACQ_KIND(acq), NULL));
            continue;
        }
        s->busy++;
        int state = RUN_B_HOLDS;
        if (LOAD(&rt->forkwait))
            state = RUN_B_FORKWAIT;
        else if (acq && forksafe__run_forker_holds(lock))
            state = RUN_B_FORKER;
        if (state != RUN_B_HOLDS)
            s->stuck++;
        if (s->record)
            record_held(t, rt, state);
    }
    /* Only takers are in the way: those waiting for another process (or
       for a thread that is gone) are not. */
    if (validate && s->ntk > 0 && s->ntk == s->busy && !s->record) {
        for (int k = 0; k < s->ntk; k++) {
            struct run_thread *rt = &forksafe__run_threads[s->tk[k]];
            void *acq = s->tkacq[k];
            if (other_holder(RUN_ACQ_LOCK(acq), RUN_ACQ_KIND(acq)) &&
                LOAD(&rt->acquiring) == acq)
                s->busy--;
        }
    }
}

/* ------------------------------------------------------------ cond */

void forksafe__run_release_taken(void)
{
    struct run_fork *fk = &forksafe__run_fk;
    for (int i = fk->ntaken; i-- > 0;)
        REAL(pthread_mutex_unlock)(fk->taken[i]);
    fk->ntaken = 0;
}

/* Take the mutexes threads in condition waits would take back. Returns 0,
   or EBUSY when one of them is held (its waiter has woken and holds it for
   a moment): everything taken is given back, and the caller scans again.
   Those the forker will not take are only waited for while they are held:
   process-shared mutexes (another process may release them, and the child
   must not rewrite them), robust ones (they could come back EOWNERDEAD,
   which only the program may answer), and those libforksafe's registry
   takes itself before the fork. Every question to the registry is asked
   before the first mutex is taken. */
static int take_candidates(const struct scan *s)
{
    struct run_fork *fk = &forksafe__run_fk;
    unsigned char take[RUN_TAKEN_MAX];
    for (int i = 0; i < s->ncand; i++) {
        pthread_mutex_t *m = s->cand[i];
        take[i] = 0;
        if (forksafe__run_forker_holds(m))
            continue;
        unsigned kind = FS_MX_UNKNOWN;
        pid_t h = holder_of(m, KIND_MUTEX, &kind);
        if ((kind & (FS_MX_UNKNOWN | FS_MX_PSHARED | FS_MX_ROBUST)) ||
            forksafe__run_registered(m)) {
            if (h != FS_HOLDER_FREE && h != RUN_HOLDER_GONE)
                return EBUSY;
            continue;
        }
        take[i] = 1;
    }
    for (int i = 0; i < s->ncand; i++) {
        if (!take[i] || fk->ntaken >= RUN_TAKEN_MAX)
            continue;
        pthread_mutex_t *m = s->cand[i];
        int r = REAL(pthread_mutex_trylock)(m);
        if (r == EBUSY) {
            forksafe__run_release_taken();
            return EBUSY;
        }
        if (r == 0)
            fk->taken[fk->ntaken++] = m;
    }
    return 0;
}

int forksafe__run_take_back(const void *lock)
{
    struct run_fork *fk = &forksafe__run_fk;
    for (int i = 0; i < fk->ntaken; i++) {
        if (fk->taken[i] != lock)
            continue;
        fk->taken[i] = fk->taken[--fk->ntaken];
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ wait */

static void backoff(int iter)
{
    if (iter < 16) {
        sched_yield();
        return;
    }
    long us = iter < 32 ? 20 : iter < 64 ? 100 : 1000;
    struct timespec d = {0, us * 1000};
    nanosleep(&d, NULL);
}

/* Nobody holds or takes a lock: seal the gate (a try no longer goes
   through, run.h), then look once more, for a try that went through just
   before. Returns 1 if sealed with nobody in the way, 0 (unsealed) if a
   try got there first: wait for it like for any holder. */
static int seal(struct scan *s, int validate)
{
    __atomic_store_n(&forksafe__run_fast.sealed, 1, __ATOMIC_SEQ_CST);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int record = s->record;
    s->record = 0;
    struct scan again = *s;
    scan(&again, validate);
    s->record = record;
    if (!again.busy)
        return 1;
    __atomic_store_n(&forksafe__run_fast.sealed, 0, __ATOMIC_SEQ_CST);
    return 0;
}

/* The fork goes ahead with holders in the way: no more tries through. */
static void seal_anyway(void)
{
    __atomic_store_n(&forksafe__run_fast.sealed, 1, __ATOMIC_SEQ_CST);
}

int forksafe__run_quiesce(const struct timespec *deadline)
{
    struct run_fork *fk = &forksafe__run_fk;
    struct scan s;
    s.record = 0;
    fk->nblockers = 0;
    forksafe__run_gate_close();
    for (int iter = 0;; iter++) {
        int validate = iter >= 8 && iter % 4 == 0;
        scan(&s, validate);
        if (!s.busy) {
            if (take_candidates(&s) == 0) {
                if (seal(&s, validate))
                    return RUN_OK;
                forksafe__run_release_taken();
            }
            fk->waited = 1;
        } else {
            fk->waited = 1;
            if (validate && s.stuck == s.busy) {
                s.record = 1;
                scan(&s, 1);
                if (s.busy && s.stuck == s.busy) {
                    seal_anyway();
                    return RUN_STUCK;
                }
                s.record = 0;
                fk->nblockers = 0;
            }
        }
        if (forksafe__run_expired(deadline)) {
            s.record = 1;
            scan(&s, 1);
            if (!s.busy && take_candidates(&s) == 0) {
                fk->nblockers = 0;
                if (seal(&s, 1))
                    return RUN_OK;
                forksafe__run_release_taken();
                scan(&s, 1);
            }
            seal_anyway();
            return RUN_TIMEOUT;
        }
        backoff(iter);
    }
}
