/* SPDX-License-Identifier: MIT */
/*
 * gate.c: the gate that holds threads back while a fork is made. While it
 * is closed, a thread that holds no pthread lock and tries to take one
 * waits on a futex until the fork is done; a thread that holds one goes
 * on, so that it can reach its unlock. Closing makes every other thread
 * execute a full memory barrier (membarrier(2), private expedited), which
 * pairs with the compiler barrier of the lock path (run.h, DESIGN).
 *
 * Nothing here allocates or takes a lock: the gate runs inside lock calls,
 * in fork handlers and in forked children.
 */
#include "run.h"

#include "platform/platform.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

struct run_fast forksafe__run_fast;
struct run_thread forksafe__run_threads[MAX_THREADS];
TLS struct run_me forksafe__run_me = {NULL, RUN_ME_NONE, 0};

/* Threads waiting at the gate (the forker wakes them only if any). */
HOT static int waiters;

static long futex(int *uaddr, int op, int val, const struct timespec *ts)
{
    return syscall(SYS_futex, uaddr, op | FUTEX_PRIVATE_FLAG, val, ts, NULL, 0);
}

void forksafe__run_gate_init(void)
{
    /* Registration is kept across fork (the child's memory map inherits
       it) and dropped by exec, so every program image registers. */
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    int ok = q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
             syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                     0, 0) == 0;
    STORE(&forksafe__run_fast.fence, !ok);
    if (!ok)
        __atomic_store_n(&forksafe__run_fast.check, 1, __ATOMIC_SEQ_CST);
}

void forksafe__run_gate_close(void)
{
    __atomic_add_fetch(&forksafe__run_fast.gen, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&forksafe__run_fast.sealed, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&forksafe__run_fast.closed, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&forksafe__run_fast.check, 1, __ATOMIC_SEQ_CST);
    if (LOAD(&forksafe__run_fast.fence)) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        return;
    }
    int saved = errno;
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
        /* Not registered after all (a seccomp filter that changed its
           mind, a kernel without it): from now on every lock call fences,
           which makes the handshake good from the next fork on. For this
           one, wait long enough for every lock call in flight to have
           seen either the fence flag or the gate. */
        STORE(&forksafe__run_fast.fence, 1);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        struct timespec d = {0, 2 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    errno = saved;
}

int forksafe__run_gate_open(void)
{
    __atomic_store_n(&forksafe__run_fast.closed, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&forksafe__run_fast.check, LOAD(&forksafe__run_fast.fence),
                     __ATOMIC_SEQ_CST);
    __atomic_store_n(&forksafe__run_fast.sealed, 0, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&waiters, __ATOMIC_SEQ_CST) > 0) {
        int saved = errno;
        futex(&forksafe__run_fast.closed, FUTEX_WAKE, INT_MAX, NULL);
        errno = saved;
        return 1;
    }
    return 0;
}

void forksafe__run_gate_child(void)
{
    if (LOAD(&forksafe__run_fast.closed))
        STORE(&forksafe__run_fast.closed, 0);
    if (LOAD(&forksafe__run_fast.check) != LOAD(&forksafe__run_fast.fence))
        STORE(&forksafe__run_fast.check, LOAD(&forksafe__run_fast.fence));
    if (LOAD(&forksafe__run_fast.sealed))
        STORE(&forksafe__run_fast.sealed, 0);
    if (LOAD(&waiters))
        STORE(&waiters, 0);
}

int forksafe__run_held_by(pid_t h, int kind, int tid)
{
    if (h == RUN_HOLDER_GONE)
        return 0; /* its memory is gone: nothing to inherit */
    if (h == FS_HOLDER_FREE)
        /* A mutex's unlock ends with the store that frees it, so free is
           final. An rwlock's writer clears its TID first, and the lock is
           still write-locked for a moment after: not final. */
        return kind == KIND_RWLOCK;
    /* Held by another thread (which is then a holder itself): this entry
       is stale. Held by this thread, by readers, or by a holder not (or
       not yet, or no longer) recorded, as in the middle of a lock or
       unlock call: held. */
    return h == tid || h <= 0;
}

/* Whether thread r holds a lock on its stack: each entry is checked
   against the lock's own record of its holder, read fault-safe, since the
   memory of a lock may have been freed (with the lock still held) or
   reused since it was pushed. */
int forksafe__run_holds(struct thread_rec *r, struct run_thread *rt)
{
    if (LOAD(&rt->overflow) > 0)
        return 1;
    const struct forksafe_platform *P = forksafe__platform();
    int n = LOAD(&r->nheld), tid = LOAD(&r->tid);
    for (int i = 0; i < n && i < MAX_HELD; i++) {
        void *l = LOAD(&r->held[i].lock);
        if (!l)
            continue;
        pid_t h;
        if (r->held[i].kind == KIND_RWLOCK) {
            pthread_rwlock_t copy;
            h = forksafe__mem_read(&copy, l, sizeof copy) != 0
                    ? RUN_HOLDER_GONE
                    : P->rwlock_holder(&copy);
        } else {
            pthread_mutex_t copy;
            h = forksafe__mem_read(&copy, l, sizeof copy) != 0
                    ? RUN_HOLDER_GONE
                    : P->mutex_holder(&copy);
        }
        if (forksafe__run_held_by(h, r->held[i].kind, tid))
            return 1;
    }
    return 0;
}

/* 1 if abstime (clock clk) has passed. */
static int passed(clockid_t clk, const struct timespec *abstime)
{
    struct timespec now;
    clock_gettime(clk, &now);
    return now.tv_sec > abstime->tv_sec ||
           (now.tv_sec == abstime->tv_sec && now.tv_nsec >= abstime->tv_nsec);
}

/* The forker may have died without opening the gate (or this is a child
   made by a raw clone() while another thread was forking): then nobody
   else will open it. (Between two forks the owner is 0 for a moment while
   the gate may still look closed: that is not a dead forker.) */
static int forker_gone(void)
{
    int owner = LOAD(&forksafe__run_fk.owner);
    if (owner <= 0)
        return 0;
    int saved = errno;
    int gone = syscall(SYS_tgkill, (int)forksafe__getpid(), owner, 0) != 0 &&
               errno == ESRCH;
    errno = saved;
    return gone;
}

int forksafe__run_gate(struct thread_rec *r, struct run_thread *rt, void *lock,
                       clockid_t clk, const struct timespec *abstime)
{
    if (LOAD(&forksafe__run_fk.forker) == r || forksafe__in_hook)
        return 0;
    if ((LOAD(&r->nheld) > 0 || LOAD(&rt->overflow) > 0) &&
        forksafe__run_holds(r, rt))
        return 0; /* holders are never held back */
    int saved = errno;
    /* However long a fork takes (a fork handler may wait for this very
       thread, by means no hook sees), no thread waits here for more than
       twice the timeout for one fork: then it goes on, and the report
       counts it. Back-to-back forks each start the count again. */
    const long long bound = 2 * (long long)forksafe__run_timeout_ms * 1000000;
    for (;;) {
        STORE(&rt->acquiring, NULL);
        STORE_RELAXED(&rt->parked, 1);
        __atomic_add_fetch(&waiters, 1, __ATOMIC_SEQ_CST);
        int overrun = 0;
        unsigned gen = LOAD(&forksafe__run_fast.gen);
        long long limit = forksafe__run_now_ns() + bound;
        for (int rounds = 0; LOAD(&forksafe__run_fast.closed); rounds++) {
            if (abstime && passed(clk, abstime)) {
                __atomic_sub_fetch(&waiters, 1, __ATOMIC_SEQ_CST);
                STORE_RELAXED(&rt->parked, 0);
                errno = saved;
                return ETIMEDOUT;
            }
            unsigned now_gen = LOAD(&forksafe__run_fast.gen);
            if (now_gen != gen) {
                gen = now_gen;
                limit = forksafe__run_now_ns() + bound;
                rounds = 0;
            } else if (forksafe__run_now_ns() >= limit) {
                overrun = 1;
                break;
            }
            /* Wait in slices, to check the deadlines and that the forker
               still exists. */
            struct timespec slice = {0, 20 * 1000 * 1000};
            futex(&forksafe__run_fast.closed, FUTEX_WAIT, 1, &slice);
            if (rounds % 8 == 7 && forker_gone() &&
                LOAD(&forksafe__run_fast.gen) == gen)
                forksafe__run_gate_open();
        }
        __atomic_sub_fetch(&waiters, 1, __ATOMIC_SEQ_CST);
        STORE_RELAXED(&rt->parked, 0);
        STORE_RELAXED(&rt->acquiring, lock);
        if (overrun) {
            forksafe__run_count_overrun();
            break;
        }
        if (!forksafe__run_gate_check())
            break;
        /* Closed again by the next fork before this thread got through. */
    }
    errno = saved;
    return 0;
}

int forksafe__run_gate_try(struct run_thread *rt, void *lock)
{
    STORE_RELAXED(&rt->acquiring, lock);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&forksafe__run_fast.sealed, __ATOMIC_SEQ_CST) &&
        __atomic_load_n(&forksafe__run_fast.closed, __ATOMIC_SEQ_CST)) {
        STORE(&rt->acquiring, NULL);
        return EBUSY;
    }
    return 0;
}
