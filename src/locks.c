/* SPDX-License-Identifier: MIT */
/*
 * locks.c: how each kind of entry is acquired before fork, released in the
 * parent and restored in the child, one ops table row per kind.
 *
 * DESIGN. The contract is that every registered lock is, after fork and in
 * both processes, in the state the forking thread saw just before it: free,
 * or held by the forking thread with the same recursion depth, with its
 * type intact. The textbook handler (lock in prepare, unlock in child) is
 * wrong on glibc for errorcheck and recursive mutexes (unlock in the child
 * fails with EPERM: the owner TID is the parent thread's), for robust and PI
 * mutexes (the futex word itself holds the old TID), and for rwlocks
 * (unlock takes the reader path and leaves the lock busy; docs/design.md). So
 * the child handler rewrites the owner of plain mutexes to the child's TID
 * before unlocking, and rebuilds robust/PI/PP mutexes and rwlocks from
 * their own attributes, re-acquiring them when the forking thread held
 * them. This reads glibc's pthread structures (bits/struct_mutex.h,
 * bits/struct_rwlock.h); it is the platform layer, and glibc-specific.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#ifndef __GLIBC__
#error "forksafe's lock layer reads glibc's pthread structures"
#endif

/* glibc's mutex __kind bits (nptl/pthreadP.h). */
#define MK_TYPE_MASK        0x3  /* PTHREAD_MUTEX_KIND_MASK_NP */
#define MK_ROBUST           0x10 /* PTHREAD_MUTEX_ROBUST_NORMAL_NP */
#define MK_PI               0x20 /* PTHREAD_MUTEX_PRIO_INHERIT_NP */
#define MK_PP               0x40 /* PTHREAD_MUTEX_PRIO_PROTECT_NP */
#define MK_PSHARED          0x80 /* PTHREAD_MUTEX_PSHARED_BIT */
#define MK_REBUILD          (MK_ROBUST | MK_PI | MK_PP)
#define MUTEX_CEILING_SHIFT 19 /* PTHREAD_MUTEX_PRIO_CEILING_SHIFT */
#define RW_READER_SHIFT     3  /* PTHREAD_RWLOCK_READER_SHIFT */

#define UNUSED  __attribute__((unused))
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* When prepare finds a lock busy and other threads may exist, this says
   whether they really do: once all other threads have exited, the only
   possible holder is the caller (or a thread that died holding it). It
   reads /proc, so it is asked only on that slow path, and at most once per
   fork (forksafe__kinds_reset clears the answer). */
static int alone_answer = -1;

void forksafe__kinds_reset(void)
{
    alone_answer = -1;
}

static int alone(void)
{
    if (alone_answer < 0)
        alone_answer = forksafe_thread_count() == 1;
    return alone_answer;
}

/* ------------------------------------------------------------ mutex */

static int mutex_prepare(const void *key, const struct forksafe_entry *e UNUSED,
                         unsigned char *st, const struct timespec *deadline,
                         int mt, pid_t self)
{
    pthread_mutex_t *m = (pthread_mutex_t *)key;
    if (LOAD(m->__data.__owner) == self) {
        *st = FS_ST_SELF;
        return 0;
    }
    if (!mt) {
        /* Nobody else can be inside it; nothing to take. */
        *st = FS_ST_IDLE;
        return 0;
    }
    int r = pthread_mutex_trylock(m);
    if (r == EBUSY && alone()) {
        *st = FS_ST_IDLE; /* a dead thread's lock: keep it as it is */
        return 0;
    }
    if (r == EBUSY) {
        r = deadline ? pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline)
                     : pthread_mutex_lock(m);
        if (r == EINVAL && (LOAD(m->__data.__kind) & MK_PI)) {
            /* Older kernels only time PI futexes on CLOCK_REALTIME. */
            struct timespec now, rt;
            clock_gettime(CLOCK_MONOTONIC, &now);
            clock_gettime(CLOCK_REALTIME, &rt);
            long long ns = (deadline->tv_sec - now.tv_sec) * 1000000000ll +
                           (deadline->tv_nsec - now.tv_nsec);
            if (ns < 0)
                ns = 0;
            ns += rt.tv_nsec;
            rt.tv_sec += ns / 1000000000ll;
            rt.tv_nsec = ns % 1000000000ll;
            r = pthread_mutex_timedlock(m, &rt);
        }
    }
    if (r == EOWNERDEAD) {
        /* The holder died. We now own it; marking it consistent is the only
           way to release it without making it unusable for everyone
           (ENOTRECOVERABLE). Documented in docs/semantics.md. */
        pthread_mutex_consistent(m);
        r = 0;
    }
    if (r)
        return r;
    *st = FS_ST_TAKEN;
    return 0;
}

static void mutex_parent(const void *key, const struct forksafe_entry *e UNUSED,
                         int st)
{
    if (st == FS_ST_TAKEN)
        pthread_mutex_unlock((pthread_mutex_t *)key);
}

/* Re-initialise a robust, PI or PP mutex with its own attributes; if the
   forking thread held it, take it again to the same recursion depth. */
static void mutex_rebuild(pthread_mutex_t *m, int held)
{
    int kind = m->__data.__kind;
    unsigned depth = held ? m->__data.__count : 0;
    int ceiling = (m->__data.__lock >> MUTEX_CEILING_SHIFT) & 0xfff;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, kind & MK_TYPE_MASK);
    if (kind & MK_ROBUST)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (kind & MK_PI)
        pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    if (kind & MK_PP) {
        pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_PROTECT);
        pthread_mutexattr_setprioceiling(&a, ceiling);
    }
    if (kind & MK_PSHARED)
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    if (!held)
        return;
    if (depth == 0)
        depth = 1;
    for (unsigned i = 0; i < depth; i++)
        pthread_mutex_lock(m);
}

static void mutex_child(const void *key, const struct forksafe_entry *e UNUSED,
                        int st, pid_t self)
{
    pthread_mutex_t *m = (pthread_mutex_t *)key;
    if (st != FS_ST_TAKEN && st != FS_ST_SELF)
        return;
    if (m->__data.__kind & MK_REBUILD) {
        mutex_rebuild(m, st == FS_ST_SELF);
        return;
    }
    /* glibc checks __owner against the caller's TID for errorcheck and
       recursive mutexes; the child's TID is new (CLONE_CHILD_SETTID). */
    m->__data.__owner = self;
    if (st == FS_ST_TAKEN)
        pthread_mutex_unlock(m);
}

static pid_t mutex_holder(const void *key)
{
    const pthread_mutex_t *m = (const pthread_mutex_t *)key;
    if (LOAD(m->__data.__lock) == 0)
        return 0;
    pid_t owner = LOAD(m->__data.__owner);
    return owner > 0 && owner < 0x3fffffff ? owner : -1;
}

static const char *mutex_detail(const void *key)
{
    static const char *const names[4][4] = {
        {"normal", "normal,robust", "normal,pi", "normal,robust,pi"},
        {"recursive", "recursive,robust", "recursive,pi",
         "recursive,robust,pi"},
        {"errorcheck", "errorcheck,robust", "errorcheck,pi",
         "errorcheck,robust,pi"},
        {"adaptive", "adaptive,robust", "adaptive,pi", "adaptive,robust,pi"},
    };
    int kind = LOAD(((const pthread_mutex_t *)key)->__data.__kind);
    int flags = (kind & MK_ROBUST ? 1 : 0) | (kind & MK_PI ? 2 : 0);
    return names[kind & MK_TYPE_MASK][flags];
}

/* A normal or adaptive mutex needs nothing when single-threaded: if this
   thread holds it, the child inherits it held, and glibc unlocks those
   types without checking the owner. Every other type checks the owner or
   keeps it in the futex word, so the child must fix it. */
static int mutex_single(const void *key)
{
    int kind = LOAD(((const pthread_mutex_t *)key)->__data.__kind);
    int type = kind & MK_TYPE_MASK;
    return (kind & MK_REBUILD) || type == PTHREAD_MUTEX_RECURSIVE_NP ||
           type == PTHREAD_MUTEX_ERRORCHECK_NP;
}

/* ------------------------------------------------------------ rwlock */

static int rwlock_prepare(const void *key,
                          const struct forksafe_entry *e UNUSED,
                          unsigned char *st, const struct timespec *deadline,
                          int mt, pid_t self)
{
    pthread_rwlock_t *l = (pthread_rwlock_t *)key;
    if (LOAD(l->__data.__cur_writer) == self) {
        *st = FS_ST_SELF;
        return 0;
    }
    if (!mt) {
        /* Any readers are this thread's own: the child inherits exactly
           this thread's read count, which is the right state there. */
        *st = FS_ST_IDLE;
        return 0;
    }
    int r = pthread_rwlock_trywrlock(l);
    if (r == EBUSY && alone()) {
        *st = FS_ST_IDLE;
        return 0;
    }
    if (r == EBUSY)
        r = deadline ? pthread_rwlock_clockwrlock(l, CLOCK_MONOTONIC, deadline)
                     : pthread_rwlock_wrlock(l);
    if (r)
        return r;
    *st = FS_ST_TAKEN;
    return 0;
}

static void rwlock_parent(const void *key,
                          const struct forksafe_entry *e UNUSED, int st)
{
    if (st == FS_ST_TAKEN)
        pthread_rwlock_unlock((pthread_rwlock_t *)key);
}

static void rwlock_child(const void *key, const struct forksafe_entry *e UNUSED,
                         int st, pid_t self)
{
    (void)self;
    if (st != FS_ST_TAKEN && st != FS_ST_SELF)
        return;
    pthread_rwlock_t *l = (pthread_rwlock_t *)key;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, (int)l->__data.__flags);
    if (l->__data.__shared)
        pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(l, &a);
    pthread_rwlockattr_destroy(&a);
    if (st == FS_ST_SELF)
        pthread_rwlock_wrlock(l);
}

static pid_t rwlock_holder(const void *key)
{
    const pthread_rwlock_t *l = (const pthread_rwlock_t *)key;
    pid_t w = LOAD(l->__data.__cur_writer);
    if (w > 0)
        return w;
    return LOAD(l->__data.__readers) >> RW_READER_SHIFT ? -1 : 0;
}

static const char *rwlock_detail(const void *key)
{
    const pthread_rwlock_t *l = (const pthread_rwlock_t *)key;
    switch (LOAD(l->__data.__flags)) {
    case PTHREAD_RWLOCK_PREFER_WRITER_NP:
        return "prefer-writer";
    case PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP:
        return "prefer-writer-nonrecursive";
    default:
        return "prefer-reader";
    }
}

/* A write lock held by this thread must be rebuilt in the child. */
static int always(const void *key)
{
    (void)key;
    return 1;
}

/* ------------------------------------------------------------ spinlock */

static int spin_prepare(const void *key, const struct forksafe_entry *e UNUSED,
                        unsigned char *st, const struct timespec *deadline,
                        int mt, pid_t self)
{
    (void)self;
    pthread_spinlock_t *l = (pthread_spinlock_t *)key;
    if (!mt) {
        *st = FS_ST_IDLE;
        return 0;
    }
    for (unsigned i = 0;; i++) {
        if (pthread_spin_trylock(l) == 0) {
            *st = FS_ST_TAKEN;
            return 0;
        }
        if (i == 64 && alone()) {
            *st = FS_ST_IDLE;
            return 0;
        }
        if (i >= 64) {
            if (deadline && forksafe__expired(deadline))
                return ETIMEDOUT;
            /* Spinlock holders are expected to be brief; back off so the
               holder can run on this 2-core-class machine. */
            if (i < 1000) {
                sched_yield();
            } else {
                struct timespec d = {0, 50 * 1000};
                nanosleep(&d, NULL);
            }
        }
    }
}

static void spin_parent(const void *key, const struct forksafe_entry *e UNUSED,
                        int st)
{
    if (st == FS_ST_TAKEN)
        pthread_spin_unlock((pthread_spinlock_t *)key);
}

static void spin_child(const void *key, const struct forksafe_entry *e UNUSED,
                       int st, pid_t self)
{
    (void)self;
    /* glibc's spinlock records no owner: unlocking in the child is valid. */
    if (st == FS_ST_TAKEN)
        pthread_spin_unlock((pthread_spinlock_t *)key);
}

static pid_t spin_holder(const void *key)
{
    return LOAD(*(const pthread_spinlock_t *)key) ? -1 : 0;
}

static int never(const void *key)
{
    (void)key;
    return 0;
}

static const char *spin_detail(const void *key)
{
    (void)key;
    return "spin";
}

/* ------------------------------------------------------------ callbacks */

static int ops_prepare(const void *key, const struct forksafe_entry *e,
                       unsigned char *st, const struct timespec *deadline,
                       int mt, pid_t self)
{
    (void)mt;
    (void)self;
    const struct forksafe_ops *ops = forksafe__entry_ops(e);
    if (ops->prepare) {
        int r = ops->prepare((void *)key, deadline);
        if (r)
            return r;
    }
    *st = FS_ST_TAKEN;
    return 0;
}

static void ops_parent(const void *key, const struct forksafe_entry *e, int st)
{
    const struct forksafe_ops *ops = forksafe__entry_ops(e);
    if (st == FS_ST_TAKEN && ops->parent)
        ops->parent((void *)key);
}

static void ops_child(const void *key, const struct forksafe_entry *e, int st,
                      pid_t self)
{
    (void)self;
    const struct forksafe_ops *ops = forksafe__entry_ops(e);
    if (st == FS_ST_TAKEN && ops->child)
        ops->child((void *)key);
}

static pid_t ops_holder(const void *key)
{
    (void)key;
    return 0;
}

static const char *ops_detail(const void *key)
{
    (void)key;
    return "callbacks";
}

const struct forksafe_kind_ops forksafe__kinds[FS_KIND_COUNT] = {
    [FS_KIND_MUTEX] = {"mutex", mutex_prepare, mutex_parent, mutex_child,
                       mutex_holder, mutex_detail, mutex_single},
    [FS_KIND_RWLOCK] = {"rwlock", rwlock_prepare, rwlock_parent, rwlock_child,
                        rwlock_holder, rwlock_detail, always},
    [FS_KIND_SPINLOCK] = {"spinlock", spin_prepare, spin_parent, spin_child,
                          spin_holder, spin_detail, never},
    [FS_KIND_OPS] = {"ops", ops_prepare, ops_parent, ops_child, ops_holder,
                     ops_detail, always},
};
