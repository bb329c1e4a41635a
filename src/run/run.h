/* SPDX-License-Identifier: MIT */
/*
 * run.h: the parts of libforksafe-run.so, the LD_PRELOAD library behind
 * forksafe-run. It is built on the interposer core (src/preload/
 * interpose.h: real functions, the thread table and its held stacks, the
 * hooks on calls that release lock memory, fault-safe reads, the exec
 * family) and adds its own lock hooks (hooks.c), the gate that holds
 * threads back while a fork is made (gate.c), the wait for lock holders
 * (quiesce.c), fork() and the child (fork.c), and the constructor,
 * statistics and records (setup.c). Nothing declared here is exported.
 *
 * DESIGN. A fork in a multi-threaded process waits, bounded by a timeout,
 * until no other thread holds a pthread mutex or rwlock, while threads
 * that hold none and try to take one wait at a gate until the fork is
 * done. Holders pass the gate, so the wait always ends: each holder
 * releases what it holds, and then cannot take a lock again. The
 * protocol between a thread taking a lock and the forking thread is an
 * asymmetric Dekker handshake: the taker stores the lock it is about to
 * take in its record, then reads the gate, with only a compiler barrier
 * between them; the forker closes the gate and then makes every other
 * thread execute a full memory barrier with membarrier(2) before it reads
 * the records. Either the taker sees the gate closed, or the forker sees
 * the lock being taken. The lock path thus costs two stores, one load and
 * the held-stack push; where membarrier(2) is not allowed, a full fence
 * on the lock path replaces it.
 *
 * Why that is enough. The taker T, in program order: (1) stores
 * acquiring = L; (2) a compiler barrier; (3) loads run_fast.check (only
 * when it is set: fences in the fence mode, then loads closed). The
 * forker F: (a) stores closed = 1 and check = 1; (b) membarrier(2), which
 * returns after every CPU running a thread of the process executed a full
 * barrier (a thread not running passes one when it is switched in); (c)
 * reads each record's acquiring, then its held stack. Let P be where T's
 * instruction stream was when its barrier ran. If P is before (3), T's
 * loads come after a full barrier that comes after (a): T reads check = 1
 * and closed = 1, and goes to the gate. Otherwise P is after (1): T's
 * store was complete before (b) returned, and (c) reads acquiring = L, or
 * what T wrote after it (the push, then acquiring = NULL, which F reads in
 * the reverse order), and F waits for T. So no fence is needed on T's
 * side, and no atomic read-modify-write: the fast path is plain stores
 * and loads. In the fence mode check stays 1, T fences between (1) and
 * its load of closed and F between (a) and (c): Dekker with a fence on
 * each side. A release needs no ordering against the gate: it pops after
 * the real unlock, so a stale entry only makes F wait longer.
 */
#ifndef FORKSAFE_RUN_H
#define FORKSAFE_RUN_H

#include "../preload/interpose.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#pragma GCC visibility push(hidden)

#define LOAD_RELAXED(p)     __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

/* ------------------------------------------------------------ threads */

/* What forksafe-run keeps per thread, in the slot of the core's thread
   table with the same index. Only the owning thread writes it, except
   that a new claim of the slot resets it. One cache line each: every lock
   call writes `acquiring`, and threads must not share those lines. */
struct run_thread {
    unsigned ident;  /* the core record's ident this state belongs to */
    int overflow;    /* locks held that did not fit on the held stack */
    void *acquiring; /* the lock this thread is taking (set before the
                        gate check, cleared after the push), or NULL;
                        bit 0 set for an rwlock (RUN_ACQ_RWLOCK) */
    void *cond_lock; /* the mutex of the pthread_cond_*wait it is in */
    void *wait_site; /* where it called the lock or wait function */
    int forkwait;    /* waiting for another thread's fork to finish */
    int parked;      /* waiting at the gate */
} __attribute__((aligned(64)));

extern struct run_thread forksafe__run_threads[MAX_THREADS];

/* The run state of thread record r (claiming it for r if the slot was
   claimed anew since). */
static inline struct run_thread *forksafe__run_of(struct thread_rec *r)
{
    struct run_thread *rt = &forksafe__run_threads[r - forksafe__threads];
    if (UNLIKELY(rt->ident != r->ident)) {
        rt->overflow = 0;
        rt->forkwait = 0;
        rt->parked = 0;
        STORE(&rt->cond_lock, NULL);
        STORE(&rt->acquiring, NULL);
        rt->ident = r->ident;
    }
    return rt;
}

/* The calling thread's run state, as the lock path last found it: valid
   while the thread's record (forksafe__self_rec) is rec and still has
   this ident (a record given back at thread exit may be claimed again by
   the same thread, with a new ident). Saves the lock path the arithmetic
   from the record to its run state before its first store. */
struct run_me {
    struct run_thread *rt;
    struct thread_rec *rec; /* RUN_ME_NONE until the first lock call, so
                               that an untracked thread (NULL record)
                               never matches */
    unsigned ident;
};
#define RUN_ME_NONE ((struct thread_rec *)1)
extern TLS struct run_me forksafe__run_me;

/* The value of run_thread.acquiring for lock, and back. */
#define RUN_ACQ_RWLOCK ((uintptr_t)1)
#define RUN_ACQ(lock, rw)                                                      \
    ((void *)((uintptr_t)(lock) | ((rw) ? RUN_ACQ_RWLOCK : 0)))
#define RUN_ACQ_LOCK(a) ((void *)((uintptr_t)(a) & ~RUN_ACQ_RWLOCK))
#define RUN_ACQ_KIND(a)                                                        \
    (((uintptr_t)(a)&RUN_ACQ_RWLOCK) ? KIND_RWLOCK : KIND_MUTEX)

/* This thread's core record, or NULL (too many threads: untracked). */
static inline struct thread_rec *forksafe__run_self(void)
{
    struct thread_rec *r = forksafe__self_rec;
    return r ? r : forksafe__self();
}

/* Push lock on r's held stack (rt->overflow counts what does not fit),
   and pop it again. Only the owning thread calls these. */
static inline void forksafe__run_push(struct thread_rec *r,
                                      struct run_thread *rt, void *lock,
                                      int kind, void *site)
{
    int n = r->nheld;
    if (UNLIKELY(n == MAX_HELD)) {
        /* Entries whose memory went away were swapped for NULL by the
           core's liveness hooks: drop them first. */
        int k = 0;
        for (int i = 0; i < n; i++)
            if (r->held[i].lock)
                r->held[k++] = r->held[i];
        n = k;
        STORE(&r->nheld, n);
    }
    if (UNLIKELY(n == MAX_HELD)) {
        STORE(&rt->overflow, rt->overflow + 1);
        return;
    }
    r->held[n].lock = lock;
    r->held[n].site = site;
    r->held[n].kind = kind;
    STORE(&r->nheld, n + 1);
}

static inline void forksafe__run_pop(struct thread_rec *r,
                                     struct run_thread *rt, void *lock)
{
    int n = r->nheld;
    for (int i = n - 1; i >= 0; i--) {
        if (r->held[i].lock != lock)
            continue;
        for (int j = i; j + 1 < n; j++)
            r->held[j] = r->held[j + 1];
        STORE(&r->nheld, n - 1);
        return;
    }
    if (rt->overflow > 0)
        STORE(&rt->overflow, rt->overflow - 1);
}

/* ------------------------------------------------------------ gate */

/* Read on every lock call: one line, written only when a fork starts and
   ends. */
struct run_fast {
    int closed;   /* a fork is being made: threads holding no lock wait */
    int fence;    /* no membarrier(2): the lock path fences itself */
    unsigned gen; /* closings so far: a waiter tells one fork from the
                     next by it */
    int sealed;   /* the forker found nobody holding or taking a lock and
                     is about to fork: a try may no longer go through */
    int check;    /* closed || fence: the one word the lock path reads
                     when the gate is open (written with closed, before
                     the membarrier; with fence, before the first fork) */
} __attribute__((aligned(64)));
extern struct run_fast forksafe__run_fast;

/* Called by a lock hook after storing the lock in rt->acquiring: 0 to go
   on, or 1 when the gate is closed and forksafe__run_gate() must decide.
   The common case is one load of `check`; only in the fence mode, or
   while a fork is made, does it fence and read `closed`. */
static inline int forksafe__run_gate_check(void)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (__builtin_expect(LOAD_RELAXED(&forksafe__run_fast.check) == 0, 1))
        return 0;
    if (LOAD_RELAXED(&forksafe__run_fast.fence))
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return UNLIKELY(LOAD_RELAXED(&forksafe__run_fast.closed) != 0);
}

/* The gate is closed and thread r (state rt) is about to take a lock
   (lock: the value for rt->acquiring, RUN_ACQ()): returns 0 when it may go
   on (it holds a lock, or it is the forking thread, or the gate has opened
   again, or it waited twice the timeout), with rt->acquiring set again;
   ETIMEDOUT when abstime (on clock clk; NULL: none) passed while it
   waited, with rt->acquiring cleared. */
int forksafe__run_gate(struct thread_rec *r, struct run_thread *rt, void *lock,
                       clockid_t clk, const struct timespec *abstime);

/* A try (pthread_mutex_trylock and the like), or a timed lock whose
   deadline passed at the gate, never waits there: it goes through to the
   real call (0), and the forker then sees the thread taking, or holding,
   the lock and waits for it like for any holder. Only once the forker has
   sealed the gate (it found nobody to wait for and is about to fork)
   does it fail instead: EBUSY, with rt->acquiring cleared. The thread's
   fence here pairs with the forker's between sealing and its last scan
   (quiesce.c): either the thread sees the seal, or the forker sees the
   thread taking the lock. */
int forksafe__run_gate_try(struct run_thread *rt, void *lock);

/* 1 if thread r really holds one of the locks on its held stack (each is
   checked against the lock's recorded holder, read fault-safe), or more
   locks than the stack has room for. Called by the thread itself. */
int forksafe__run_holds(struct thread_rec *r, struct run_thread *rt);

/* Whether a lock of kind (KIND_MUTEX, KIND_RWLOCK) whose recorded holder
   is h (a TID, FS_HOLDER_* from platform/platform.h, or RUN_HOLDER_GONE:
   its memory could not be read) may be held by thread tid, which has it
   on its held stack. Only what cannot be a moment inside that thread's
   own lock or unlock call counts as not held. */
#define RUN_HOLDER_GONE (-100)
int forksafe__run_held_by(pid_t h, int kind, int tid);

/* Close the gate and make sure every thread sees it closed (membarrier,
   or the fence mode); open it again and wake the threads waiting at it. */
void forksafe__run_gate_close(void);
/* Returns 1 if threads were waiting (and were woken). */
int forksafe__run_gate_open(void);
/* Choose between membarrier(2) and the fence mode (constructor). */
void forksafe__run_gate_init(void);
/* In a child: the gate is open and nobody waits at it. */
void forksafe__run_gate_child(void);

/* ------------------------------------------------------------ fork state */

#define RUN_TAKEN_MAX    64 /* condition mutexes the forker holds */
#define RUN_BLOCKERS_MAX 8  /* threads named in a slow fork's report */

enum {
    RUN_OK = 0,      /* nobody held a lock: the fork is protected */
    RUN_TIMEOUT = 1, /* a holder did not release in time */
    RUN_STUCK = 2    /* every holder waits for the forking thread */
};

/* A thread that kept the fork waiting when it went ahead. */
struct run_blocker {
    int tid;
    int state;  /* RUN_B_* */
    void *lock; /* the lock it held, or was taking */
    int kind;   /* KIND_MUTEX, KIND_RWLOCK, 0 unknown */
    void *site; /* where it took (or was taking) it */
    void *start;
    int lock_holder; /* RUN_B_TAKING: who holds that lock (0 unknown) */
    char name[16];   /* its name, read before the fork (it may be gone
                        when the report is written), or "" */
};

enum {
    RUN_B_HOLDS = 1,    /* holds lock */
    RUN_B_TAKING = 2,   /* is taking lock (blocked on its holder) */
    RUN_B_FORKWAIT = 3, /* holds lock and waits to fork itself */
    RUN_B_MANY = 4,     /* holds more locks than its stack records */
    RUN_B_FORKER = 5    /* holds lock and waits for one the forker holds */
};

/* Everything the forking thread writes, in one page (fork copies every
   page either process writes). */
struct run_fork {
    int owner;                    /* TID of the thread forking (futex word) */
    int owner_waiters;            /* threads waiting to fork */
    struct thread_rec *forker;    /* its record */
    int depth;                    /* fork calls nested in the current fork */
    int managed;                  /* this fork was prepared by forksafe-run */
    int in_fork;                  /* inside the real fork (fork handlers) */
    int parent_tid;               /* the forker's TID before the fork */
    int nown;                     /* the locks it held when it was ready */
    struct held own[MAX_HELD];    /* (a copy: fork handlers push and pop) */
    unsigned char skip[MAX_HELD]; /* registered with libforksafe (theirs),
                                     or in memory shared with the child */
    int ntaken;
    pthread_mutex_t *taken[RUN_TAKEN_MAX]; /* condition mutexes it took */
    /* The outcome, for the statistics and the report. */
    int threaded;      /* other threads were alive: it waited */
    int outcome;       /* RUN_OK, RUN_TIMEOUT, RUN_STUCK */
    int waited;        /* some thread held a lock when it started */
    long long wait_ns; /* the wait; for a fork that went ahead with a lock
                          held, up to the real fork's return (fork handlers,
                          libforksafe's registry among them, may wait for
                          the same holders after forksafe-run did) */
    int nblockers;
    struct run_blocker blockers[RUN_BLOCKERS_MAX];
    void *site; /* where fork() was called */
    const char *call;
    int ffork_inner; /* forksafe_fork() is about to call fork() itself */
    long long wait_start_ns; /* when the wait began (threaded forks) */
};
extern struct run_fork forksafe__run_fk;

/* The name of thread tid of this process ("?" if it cannot be read). */
void forksafe__run_thread_name(long tid, char *name, size_t len);

/* The child handler (fork.c), registered by the constructor. */
void forksafe__run_atfork_child(void);

/* 1 if the forking thread holds lock (on its held stack, or taken for the
   fork), 0 if not. */
int forksafe__run_forker_holds(const void *lock);

/* Wait, until deadline (CLOCK_MONOTONIC), for no other thread to hold a
   lock, with the gate closed; take the mutexes of threads waiting in
   pthread_cond_*wait so that they cannot take them back before the fork.
   Returns RUN_OK, RUN_TIMEOUT or RUN_STUCK (the blockers are recorded in
   forksafe__run_fk). The gate stays closed. Called by the forker only. */
int forksafe__run_quiesce(const struct timespec *deadline);
/* Give back the mutexes quiesce took (parent after the fork, or before
   quiescing again). */
void forksafe__run_release_taken(void);
/* The forker itself locks a mutex that quiesce took for it (a fork
   handler locks a mutex a condition waiter uses): hand it over, so that
   the lock call returns at once with the mutex held as the handler asked,
   instead of deadlocking on itself. Returns 1 if lock was one of them
   (it is then no longer quiesce's to give back), 0 if not. */
int forksafe__run_take_back(const void *lock);

/* 1 if libforksafe's registry has an entry for lock (the core's
   forksafe_lookup, when libforksafe is loaded). Never called with the
   registry lock held by this thread. */
int forksafe__run_registered(const void *lock);

/* The forker blocks in a wait that other threads may have to end (a join
   or condition wait inside a fork handler): open the gate around it, and
   wait for quiescence again after it. */
void forksafe__run_forker_wait_begin(void);
void forksafe__run_forker_wait_end(void);

/* 1 if this thread is the one making a fork, inside the real fork(). */
static inline int forksafe__run_is_forker_in_fork(struct thread_rec *r)
{
    return LOAD_RELAXED(&forksafe__run_fast.closed) &&
           LOAD(&forksafe__run_fk.forker) == r &&
           LOAD(&forksafe__run_fk.in_fork);
}

/* ------------------------------------------------------------ settings */

/* The timeout of the wait at a fork, in milliseconds
   (FORKSAFE_RUN_TIMEOUT_MS; default 1000). */
extern unsigned forksafe__run_timeout_ms;

/* Milliseconds and nanoseconds on CLOCK_MONOTONIC. */
long long forksafe__run_now_ns(void);
void forksafe__run_deadline(struct timespec *ts, unsigned ms);
int forksafe__run_expired(const struct timespec *deadline);

/* ------------------------------------------------------------ statistics */

/* Count one fork and, for a fork with other threads, its wait and
   outcome, in the statistics page (when forksafe-run asked for a report;
   otherwise nothing). */
void forksafe__run_count(int threaded);
void forksafe__run_count_wait(const struct run_fork *fk);
/* A thread waited at the gate for twice the timeout and went on. */
void forksafe__run_count_overrun(void);
/* Write the report record of a fork that went ahead with a lock held
   (called in the parent after the fork). */
void forksafe__run_report_slow(const struct run_fork *fk);

/* The real functions forksafe-run needs beyond the core's list. */
extern int (*forksafe__run_real_clockrdlock)(pthread_rwlock_t *, clockid_t,
                                             const struct timespec *);
extern int (*forksafe__run_real_clockwrlock)(pthread_rwlock_t *, clockid_t,
                                             const struct timespec *);
extern int (*forksafe__run_real_join)(pthread_t, void **);
extern int (*forksafe__run_real_timedjoin)(pthread_t, void **,
                                           const struct timespec *);
extern int (*forksafe__run_real_clockjoin)(pthread_t, void **, clockid_t,
                                           const struct timespec *);

#pragma GCC visibility pop

#endif
