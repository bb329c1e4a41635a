/* SPDX-License-Identifier: MIT */
/*
 * locks.c: how each kind of entry is acquired before fork, released in the
 * parent and restored in the child, one ops table row per kind.
 *
 * DESIGN. The contract is that every registered lock is, after fork and in
 * both processes, in the state the forking thread saw just before it: free,
 * or held by the forking thread with the same recursion depth, with its
 * type intact. The textbook handler (lock in prepare, unlock in child) is
 * wrong on glibc and musl for errorcheck and recursive mutexes (unlock in
 * the child fails with EPERM: the owner TID is the parent thread's), for
 * robust and PI mutexes (the futex word itself holds the old TID), and on
 * glibc for rwlocks (unlock takes the reader path and leaves the lock
 * busy). So this file takes and releases locks with portable calls, and
 * leaves everything that depends on a libc's private structures (who holds
 * a lock, what kind it is, how the child's thread is made its owner) to the
 * platform layer (platform/platform.h).
 */
#include "internal.h"
#include "platform/platform.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>

#define UNUSED __attribute__((unused))

/* When prepare finds a lock busy and other threads may exist, this says
   whether they really do: once all other threads have exited, the only
   possible holder is the caller (or a thread that died holding it). It
   reads /proc, so it is asked only on that slow path, and at most once per
   fork (forksafe__kinds_reset clears the answer). */
static int alone_answer = -1;

void forksafe__kinds_reset(void)
{
    /* Written only when it changed: a store to this page on every fork
       would cost the parent a write-protect fault per fork. */
    if (alone_answer != -1)
        alone_answer = -1;
}

static int alone(void)
{
    /* Threads that have begun to exit do not count: they run no more user
       code, so they release nothing; one that the caller has just joined
       may still be listed for a moment. Counting stops at the second. */
    if (alone_answer < 0)
        alone_answer = forksafe__threads_alive(2) == 1;
    return alone_answer;
}

/* ------------------------------------------------------------ mutex */

/* Why the last prepare refused its lock, for forksafe_last_error(); NULL
   if it did not. Forks are serialised, so one is enough. */
static const char *refusal;

const char *forksafe__kinds_refusal(void)
{
    return refusal;
}

static int vet(const struct forksafe_platform *P, pthread_mutex_t *m,
               enum forksafe_vet how, const struct timespec *deadline,
               int *still_held)
{
    if (!P->mutex_vet)
        return 0;
    int r = P->mutex_vet(m, how, deadline, still_held);
    if (r)
        refusal = P->vet_refusal ? P->vet_refusal() : NULL;
    return r;
}

static int vet_rwlock(const struct forksafe_platform *P, pthread_rwlock_t *l,
                      enum forksafe_vet how)
{
    if (!P->rwlock_vet)
        return 0;
    int r = P->rwlock_vet(l, how);
    if (r)
        refusal = P->vet_refusal ? P->vet_refusal() : NULL;
    return r;
}

/* The end of an attempt to take m that returned r (try or wait): a dead
   holder's robust mutex is recovered, a refusal is named, and the
   platform layer vets what was taken. 0 with *st TAKEN, or r (EBUSY:
   busy; m is not held on any error). */
static int mutex_taken(const struct forksafe_platform *P, pthread_mutex_t *m,
                       int r, const struct timespec *deadline,
                       unsigned char *st)
{
    enum forksafe_vet how = FS_VET_TAKEN;
    if (r == EOWNERDEAD) {
        /* The holder died. We now own it; marking it consistent is the only
           way to release it without making it unusable for everyone
           (ENOTRECOVERABLE). Documented in docs/semantics.md. */
        pthread_mutex_consistent(m);
        r = 0;
        how = FS_VET_RECOVERED;
    }
    if (r == EDEADLK)
        refusal = "the forking thread holds it (an errorcheck mutex), and "
                  "this platform layer cannot hand it to the child";
    if (r)
        return r;
    int still_held = 1;
    r = vet(P, m, how, deadline, &still_held);
    if (r) {
        if (still_held)
            pthread_mutex_unlock(m);
        return r;
    }
    *st = FS_ST_TAKEN;
    return 0;
}

static int mutex_try(const void *key, const struct forksafe_entry *e UNUSED,
                     unsigned char *st, const struct timespec *deadline, int mt,
                     pid_t self)
{
    const struct forksafe_platform *P = forksafe__platform();
    pthread_mutex_t *m = (pthread_mutex_t *)key;
    refusal = NULL;
    if (P->mutex_holder(m) == self) {
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
        /* A dead thread's lock, or this thread's: keep it as it is. */
        int unused = 1;
        r = vet(P, m, FS_VET_STRAY, deadline, &unused);
        if (r)
            return r;
        *st = FS_ST_IDLE;
        return 0;
    }
    return mutex_taken(P, m, r, deadline, st);
}

static int mutex_wait(const void *key, unsigned char *st,
                      const struct timespec *until)
{
    const struct forksafe_platform *P = forksafe__platform();
    pthread_mutex_t *m = (pthread_mutex_t *)key;
    refusal = NULL;
    return mutex_taken(P, m, P->mutex_lock_until(m, until), until, st);
}

static void mutex_parent(const void *key, const struct forksafe_entry *e UNUSED,
                         int st)
{
    if (st == FS_ST_TAKEN)
        pthread_mutex_unlock((pthread_mutex_t *)key);
}

FS_CHILD_PATH static void mutex_child(const void *key,
                                      const struct forksafe_entry *e UNUSED,
                                      int st, pid_t self)
{
    if (st != FS_ST_TAKEN && st != FS_ST_SELF)
        return;
    forksafe__platform()->child_mutex((pthread_mutex_t *)key, st == FS_ST_SELF,
                                      self);
}

static pid_t mutex_holder(const void *key)
{
    return forksafe__platform()->mutex_holder((const pthread_mutex_t *)key);
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
    unsigned kind =
        forksafe__platform()->mutex_kind((const pthread_mutex_t *)key);
    if (kind & FS_MX_UNKNOWN)
        return "unknown";
    unsigned flags = (kind & FS_MX_ROBUST ? 1 : 0) | (kind & FS_MX_PI ? 2 : 0);
    return names[kind & 3][flags];
}

/* A normal or adaptive mutex needs nothing when single-threaded: if this
   thread holds it, the child inherits it held, and the libc unlocks those
   types without checking the owner. Every other type checks the owner or
   keeps it in the futex word, so the child must fix it. */
static int mutex_single(const void *key)
{
    /* Asked once per registration: the layer forgets what it knew of an
       earlier mutex at this address. */
    const struct forksafe_platform *P = forksafe__platform();
    if (P->mutex_registered)
        P->mutex_registered((const pthread_mutex_t *)key);
    unsigned kind = P->mutex_kind((const pthread_mutex_t *)key);
    unsigned type = kind & FS_MX_TYPE_MASK;
    return (kind & (FS_MX_UNKNOWN | FS_MX_ROBUST | FS_MX_PI | FS_MX_PP)) ||
           type == FS_MX_RECURSIVE || type == FS_MX_ERRORCHECK;
}

/* ------------------------------------------------------------ rwlock */

/* The end of an attempt to take l for writing that returned r (try or
   wait), as mutex_taken: 0 with *st TAKEN, or r (l not held on error). */
static int rwlock_taken(const struct forksafe_platform *P, pthread_rwlock_t *l,
                        int r, unsigned char *st)
{
    if (r == EDEADLK)
        refusal = "the forking thread holds it for writing, and this "
                  "platform layer cannot hand it to the child";
    if (r)
        return r;
    r = vet_rwlock(P, l, FS_VET_TAKEN);
    if (r) {
        pthread_rwlock_unlock(l);
        return r;
    }
    *st = FS_ST_TAKEN;
    return 0;
}

static int rwlock_try(const void *key, const struct forksafe_entry *e UNUSED,
                      unsigned char *st, const struct timespec *deadline UNUSED,
                      int mt, pid_t self)
{
    const struct forksafe_platform *P = forksafe__platform();
    pthread_rwlock_t *l = (pthread_rwlock_t *)key;
    refusal = NULL;
    if (P->rwlock_holder(l) == self) {
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
        r = vet_rwlock(P, l, FS_VET_STRAY);
        if (r)
            return r;
        *st = FS_ST_IDLE;
        return 0;
    }
    return rwlock_taken(P, l, r, st);
}

static int rwlock_wait(const void *key, unsigned char *st,
                       const struct timespec *until)
{
    const struct forksafe_platform *P = forksafe__platform();
    pthread_rwlock_t *l = (pthread_rwlock_t *)key;
    refusal = NULL;
    return rwlock_taken(P, l, P->rwlock_wrlock_until(l, until), st);
}

static void rwlock_parent(const void *key,
                          const struct forksafe_entry *e UNUSED, int st)
{
    if (st == FS_ST_TAKEN)
        pthread_rwlock_unlock((pthread_rwlock_t *)key);
}

FS_CHILD_PATH static void rwlock_child(const void *key,
                                       const struct forksafe_entry *e UNUSED,
                                       int st, pid_t self)
{
    if (st != FS_ST_TAKEN && st != FS_ST_SELF)
        return;
    forksafe__platform()->child_rwlock((pthread_rwlock_t *)key,
                                       st == FS_ST_SELF, self);
}

static pid_t rwlock_holder(const void *key)
{
    return forksafe__platform()->rwlock_holder((const pthread_rwlock_t *)key);
}

static const char *rwlock_detail(const void *key)
{
    unsigned kind =
        forksafe__platform()->rwlock_kind((const pthread_rwlock_t *)key);
    if (kind & FS_RW_UNKNOWN)
        return "unknown";
    switch (kind & FS_RW_PREFER_MASK) {
    case FS_RW_PREFER_WRITER:
        return "prefer-writer";
    case FS_RW_PREFER_WRITER_NONRECURSIVE:
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

static int spin_try(const void *key, const struct forksafe_entry *e UNUSED,
                    unsigned char *st, const struct timespec *deadline UNUSED,
                    int mt, pid_t self)
{
    (void)self;
    pthread_spinlock_t *l = (pthread_spinlock_t *)key;
    if (!mt) {
        *st = FS_ST_IDLE;
        return 0;
    }
    /* Spinlock holders are expected to be brief: spin a little first. */
    for (unsigned i = 0; i < 64; i++) {
        if (pthread_spin_trylock(l) == 0) {
            *st = FS_ST_TAKEN;
            return 0;
        }
    }
    if (alone()) {
        *st = FS_ST_IDLE;
        return 0;
    }
    return EBUSY;
}

static int spin_wait(const void *key, unsigned char *st,
                     const struct timespec *until)
{
    pthread_spinlock_t *l = (pthread_spinlock_t *)key;
    for (unsigned i = 0;; i++) {
        if (pthread_spin_trylock(l) == 0) {
            *st = FS_ST_TAKEN;
            return 0;
        }
        if (forksafe__expired(until))
            return ETIMEDOUT;
        /* Back off so the holder can run on this 2-core-class machine. */
        if (i < 1000) {
            sched_yield();
        } else {
            struct timespec d = {0, 50 * 1000};
            nanosleep(&d, NULL);
        }
    }
}

static void spin_parent(const void *key, const struct forksafe_entry *e UNUSED,
                        int st)
{
    if (st == FS_ST_TAKEN)
        pthread_spin_unlock((pthread_spinlock_t *)key);
}

FS_CHILD_PATH static void spin_child(const void *key,
                                     const struct forksafe_entry *e UNUSED,
                                     int st, pid_t self)
{
    (void)self;
    if (st == FS_ST_TAKEN)
        forksafe__platform()->child_spin((pthread_spinlock_t *)key);
}

static pid_t spin_holder(const void *key)
{
    return forksafe__platform()->spin_holder((const pthread_spinlock_t *)key);
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

static int ops_try(const void *key, const struct forksafe_entry *e,
                   unsigned char *st, const struct timespec *deadline, int mt,
                   pid_t self)
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

FS_CHILD_PATH static void
ops_child(const void *key, const struct forksafe_entry *e, int st, pid_t self)
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

unsigned char forksafe__lock_slot_kind(enum forksafe_kind kind, const void *key)
{
    if (kind != FS_KIND_MUTEX)
        return (unsigned char)kind;
    unsigned k = forksafe__platform()->mutex_kind((const pthread_mutex_t *)key);
    unsigned type = k & FS_MX_TYPE_MASK;
    if (k & (FS_MX_UNKNOWN | FS_MX_ROBUST | FS_MX_PI | FS_MX_PP))
        return FS_KIND_MUTEX;
    /* A layer that vets what prepare took (POSIX) goes the full way. */
    if (forksafe__platform()->mutex_vet)
        return FS_KIND_MUTEX;
    /* A recursive mutex's trylock succeeds for its holder: the full way. */
    return type == FS_MX_RECURSIVE ? FS_KIND_MUTEX : FS_SLOT_MUTEX_FAST;
}

/* ------------------------------------------------------------ pshared */

int forksafe__lock_pshared(enum forksafe_kind kind, const void *key)
{
    const struct forksafe_platform *P = forksafe__platform();
    switch (kind) {
    case FS_KIND_MUTEX: {
        unsigned k = P->mutex_kind((const pthread_mutex_t *)key);
        return (k & FS_MX_UNKNOWN) || (k & FS_MX_PSHARED);
    }
    case FS_KIND_RWLOCK: {
        unsigned k = P->rwlock_kind((const pthread_rwlock_t *)key);
        return (k & FS_RW_UNKNOWN) || (k & FS_RW_PSHARED);
    }
    case FS_KIND_SPINLOCK:
        return 1; /* a spinlock does not record pshared (glibc, musl) */
    default:
        return 0;
    }
}

const struct forksafe_kind_ops forksafe__kinds[FS_KIND_COUNT] = {
    [FS_KIND_MUTEX] = {"mutex", mutex_try, mutex_wait, mutex_parent,
                       mutex_child, mutex_holder, mutex_detail, mutex_single},
    [FS_KIND_RWLOCK] = {"rwlock", rwlock_try, rwlock_wait, rwlock_parent,
                        rwlock_child, rwlock_holder, rwlock_detail, always},
    [FS_KIND_SPINLOCK] = {"spinlock", spin_try, spin_wait, spin_parent,
                          spin_child, spin_holder, spin_detail, never},
    [FS_KIND_OPS] = {"ops", ops_try, NULL, ops_parent, ops_child, ops_holder,
                     ops_detail, always},
};
