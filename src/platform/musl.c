/* SPDX-License-Identifier: MIT */
/*
 * platform/musl.c: the lock layer for musl (1.2.3 and later; the mutex,
 * rwlock and spinlock code is unchanged from 1.2.3 to 1.2.5). musl's lock
 * types are opaque unions of ints; the names below are the ones musl's
 * own src/internal/pthread_impl.h gives the same slots.
 *
 * DESIGN. A musl mutex of any type but plain normal keeps its owner's TID
 * in the lock word and refuses pthread_mutex_unlock from another TID
 * (EPERM). After fork the child's only thread has a new TID, so the child
 * handler writes that TID into the lock word (keeping the owner-died bit),
 * clears the waiter counts (the waiters were other threads, which the
 * child does not have), and, for a lock that prepare took, unlocks it with
 * pthread_mutex_unlock, which also unlinks it from the thread's list of
 * held mutexes. A lock the forking thread held keeps its recursion count.
 * Plain normal mutexes, rwlocks and spinlocks record no owner: they are
 * freed by unlocking (rwlocks are re-initialised, to drop the departed
 * threads' waiter counts). Because no owner is recorded there, a plain
 * normal mutex or an rwlock held by the forking thread cannot be told from
 * one another thread holds: prepare waits for it and the fork is refused
 * at its deadline (docs/platforms.md). musl has no adaptive type and no
 * priority-protect protocol (pthread_mutexattr_setprotocol: ENOTSUP).
 */
#include "platform.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* musl's slots (src/internal/pthread_impl.h). */
#define M_TYPE(m)     ((m)->__u.__i[0])
#define M_LOCK(m)     ((m)->__u.__vi[1])
#define M_WAITERS(m)  ((m)->__u.__vi[2])
#define M_COUNT(m)    ((m)->__u.__i[5])
#define RW_LOCK(l)    ((l)->__u.__vi[0])
#define RW_WAITERS(l) ((l)->__u.__vi[1])
#define RW_SHARED(l)  ((l)->__u.__i[2])

/* _m_type bits: the low two are the POSIX type; then these. */
#define MT_ROBUST  4
#define MT_PI      8
#define MT_PSHARED 128
/* _m_lock: the owner's TID in the low 30 bits, and these. */
#define ML_TID_MASK     0x3fffffff
#define ML_OWNER_DIED   0x40000000
#define ML_WAITERS      0x80000000u
#define RW_WRITE_LOCKED 0x7fffffff

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

_Static_assert(sizeof(pthread_mutex_t) == 6 * sizeof(int) ||
                   sizeof(pthread_mutex_t) == 10 * sizeof(int),
               "musl's pthread_mutex_t is 6 ints (ILP32) or 10 (LP64)");

static int multithreaded(void)
{
    /* musl does not say whether the process has ever had a thread. */
    return 1;
}

/* ------------------------------------------------------------ mutex */

/* Plain normal mutexes store EBUSY, not a TID (pthread_mutex_trylock.c). */
static int records_owner(int type)
{
    return (type & 15) != PTHREAD_MUTEX_NORMAL;
}

static unsigned mutex_kind(const pthread_mutex_t *m)
{
    int type = LOAD(M_TYPE(m));
    unsigned k = (unsigned)type & 3;
    if (type & MT_ROBUST)
        k |= FS_MX_ROBUST;
    if (type & MT_PI)
        k |= FS_MX_PI;
    if (type & MT_PSHARED)
        k |= FS_MX_PSHARED;
    return k;
}

static pid_t mutex_holder(const pthread_mutex_t *m)
{
    int lock = LOAD(M_LOCK(m));
    if (!records_owner(LOAD(M_TYPE(m))))
        return lock ? FS_HOLDER_UNNAMED : FS_HOLDER_FREE;
    int own = lock & ML_TID_MASK;
    if (own == 0)
        return FS_HOLDER_FREE; /* free, perhaps with the owner-died bit */
    return own == ML_TID_MASK ? FS_HOLDER_UNNAMED : own;
}

static int mutex_lock_until(pthread_mutex_t *m, const struct timespec *deadline)
{
    if (!deadline)
        return pthread_mutex_lock(m);
    struct timespec rt;
    forksafe__posix_realtime(deadline, &rt);
    return pthread_mutex_timedlock(m, &rt);
}

FS_CHILD_PATH static void child_mutex(pthread_mutex_t *m, int held, pid_t self)
{
    int type = M_TYPE(m);
    M_WAITERS(m) = 0;
    if (!records_owner(type)) {
        if (held)
            M_LOCK(m) &= ~(int)ML_WAITERS;
        else
            pthread_mutex_unlock(m);
        return;
    }
    if (held) {
        M_LOCK(m) = self | (M_LOCK(m) & ML_OWNER_DIED);
        return;
    }
    /* Taken by prepare, which made a dead owner's lock consistent. */
    M_LOCK(m) = self;
    M_COUNT(m) = 0;
    pthread_mutex_unlock(m);
}

/* ------------------------------------------------------------ rwlock */

static unsigned rwlock_kind(const pthread_rwlock_t *l)
{
    /* New readers are admitted while a writer waits: reader preference. */
    return FS_RW_PREFER_READER | (LOAD(RW_SHARED(l)) ? FS_RW_PSHARED : 0);
}

static pid_t rwlock_holder(const pthread_rwlock_t *l)
{
    return LOAD(RW_LOCK(l)) & RW_WRITE_LOCKED ? FS_HOLDER_UNNAMED
                                              : FS_HOLDER_FREE;
}

static int rwlock_wrlock_until(pthread_rwlock_t *l,
                               const struct timespec *deadline)
{
    if (!deadline)
        return pthread_rwlock_wrlock(l);
    struct timespec rt;
    forksafe__posix_realtime(deadline, &rt);
    return pthread_rwlock_timedwrlock(l, &rt);
}

FS_CHILD_PATH static void child_rwlock(pthread_rwlock_t *l, int held,
                                       pid_t self)
{
    (void)self;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    if (RW_SHARED(l))
        pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(l, &a);
    pthread_rwlockattr_destroy(&a);
    if (held)
        pthread_rwlock_wrlock(l);
}

/* ------------------------------------------------------------ spinlock */

static pid_t spin_holder(const pthread_spinlock_t *l)
{
    return LOAD(*l) ? FS_HOLDER_UNNAMED : FS_HOLDER_FREE;
}

/* A spinlock is an int holding EBUSY or 0; unlock is a plain store. */
FS_CHILD_PATH static void child_spin(pthread_spinlock_t *l)
{
    pthread_spin_unlock(l);
}

/* ------------------------------------------------------------ processes */

/* musl's struct pthread (what pthread_self() points to) begins self, dtv,
   prev, next, sysinfo, canary on x86 and i386 (TLS below the thread
   pointer, no canary pad), then tid. (The address set_tid_address() was
   given is musl's thread-list lock, not this.) Confirmed on every call
   against gettid(). */
static pid_t *tid_slot(void)
{
#if defined(__x86_64__) || defined(__i386__)
    pid_t *p =
        (pid_t *)(void *)((char *)(void *)pthread_self() + 6 * sizeof(void *));
    return *p == gettid() ? p : NULL;
#else
    return NULL;
#endif
}

/* ------------------------------------------------------------ semaphore */

/* sem_init stores 128 in __val[2] for a private semaphore, 0 for a
   process-shared one (src/thread/sem_init.c). */
static int sem_pshared(const sem_t *s)
{
    return (s->__val[2] & 128) == 0;
}

/* ------------------------------------------------------------ self-check */

/* Each claim is one thing this file relies on, tried on a scratch lock
   (struct forksafe_check in platform.h). musl has no version macro and no
   version call, so this is the only way to notice a musl whose slots mean
   something else. */
static void init_mutex(pthread_mutex_t *m, int type, int robust, int pi,
                       int pshared)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type);
    if (robust)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (pi && pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT) != 0)
        pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_NONE);
    if (pshared)
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
}

static void check_mutexes(struct forksafe_check *c)
{
    static const struct {
        int type;
        unsigned kind;
        const char *name;
    } types[] = {
        {PTHREAD_MUTEX_NORMAL, FS_MX_NORMAL, "a normal mutex"},
        {PTHREAD_MUTEX_RECURSIVE, FS_MX_RECURSIVE, "a recursive mutex"},
        {PTHREAD_MUTEX_ERRORCHECK, FS_MX_ERRORCHECK, "an errorcheck mutex"},
    };
    pthread_mutex_t m, copy;
    const pthread_mutex_t *v;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        init_mutex(&m, types[i].type, 0, 0, 0);
        v = LOOK(c, "kind bits of a new mutex", &m, &copy);
        CLAIM(c, mutex_kind(v) == types[i].kind && mutex_holder(v) == 0,
              "%s reads as kind 0x%x, holder %d", types[i].name, mutex_kind(v),
              (int)mutex_holder(v));
        pthread_mutex_lock(&m);
        /* A plain normal mutex records no owner, only that it is held. */
        pid_t want = i == 0 ? FS_HOLDER_UNNAMED : c->tid;
        v = LOOK(c, "owner TID after lock", &m, &copy);
        CLAIM(c, mutex_holder(v) == want,
              "%s locked by %d reads as held by %d (want %d)", types[i].name,
              (int)c->tid, (int)mutex_holder(v), (int)want);
        pthread_mutex_unlock(&m);
        v = LOOK(c, "owner TID after unlock", &m, &copy);
        CLAIM(c, mutex_holder(v) == FS_HOLDER_FREE,
              "%s unlocked reads as held by %d", types[i].name,
              (int)mutex_holder(v));
        pthread_mutex_destroy(&m);
    }

    /* The count a lock the forker holds keeps in the child. */
    init_mutex(&m, PTHREAD_MUTEX_RECURSIVE, 0, 0, 0);
    pthread_mutex_lock(&m);
    pthread_mutex_lock(&m);
    v = LOOK(c, "count after recursive lock", &m, &copy);
    CLAIM(c, M_COUNT(v) == 1, "locked twice, _m_count reads %d", M_COUNT(v));
    pthread_mutex_unlock(&m);
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);

    /* The take-over the child handler does: unlock is refused while the
       lock word names another TID, and allowed once it names ours. */
    for (int type = PTHREAD_MUTEX_RECURSIVE; type <= PTHREAD_MUTEX_ERRORCHECK;
         type++) {
        init_mutex(&m, type, 0, 0, 0);
        pthread_mutex_lock(&m);
        c->step = "owner rewrite";
        M_LOCK(&m) = c->tid + 1;
        int r = pthread_mutex_unlock(&m);
        M_LOCK(&m) = c->tid;
        int r2 = r == 0 ? 0 : pthread_mutex_unlock(&m);
        CLAIM(c, r == EPERM && r2 == 0 && M_LOCK(&m) == 0,
              "unlock under another owner returned %d (not EPERM), then %d", r,
              r2);
        pthread_mutex_destroy(&m);
    }

    init_mutex(&m, PTHREAD_MUTEX_ERRORCHECK, 1, 0, 1);
    v = LOOK(c, "robust and process-shared bits", &m, &copy);
    CLAIM(c, mutex_kind(v) == (FS_MX_ERRORCHECK | FS_MX_ROBUST | FS_MX_PSHARED),
          "a robust process-shared errorcheck mutex reads as kind 0x%x",
          mutex_kind(v));
    pthread_mutex_lock(&m);
    v = LOOK(c, "owner TID of a robust mutex", &m, &copy);
    CLAIM(c, mutex_holder(v) == c->tid, "locked by %d, reads as held by %d",
          (int)c->tid, (int)mutex_holder(v));
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);

    init_mutex(&m, PTHREAD_MUTEX_RECURSIVE, 0, 1, 0);
    if (mutex_kind(&m) & FS_MX_PI) { /* the kernel may lack PI futexes */
        pthread_mutex_lock(&m);
        v = LOOK(c, "owner TID of a PI mutex", &m, &copy);
        CLAIM(c, mutex_holder(v) == c->tid, "locked by %d, reads as held by %d",
              (int)c->tid, (int)mutex_holder(v));
        pthread_mutex_unlock(&m);
    }
    pthread_mutex_destroy(&m);
}

static void check_others(struct forksafe_check *c)
{
    pthread_rwlock_t l, lcopy;
    const pthread_rwlock_t *v;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(&l, &a);
    pthread_rwlockattr_destroy(&a);
    v = LOOK(c, "rwlock kind and process-shared flag", &l, &lcopy);
    CLAIM(c, rwlock_kind(v) == (FS_RW_PREFER_READER | FS_RW_PSHARED),
          "a process-shared rwlock reads as 0x%x", rwlock_kind(v));
    pthread_rwlock_wrlock(&l);
    v = LOOK(c, "rwlock write-locked", &l, &lcopy);
    CLAIM(c, rwlock_holder(v) == FS_HOLDER_UNNAMED && RW_LOCK(v) == 0x7fffffff,
          "write-locked, the lock word reads 0x%x", (unsigned)RW_LOCK(v));
    pthread_rwlock_unlock(&l);
    pthread_rwlock_rdlock(&l);
    v = LOOK(c, "rwlock readers", &l, &lcopy);
    CLAIM(c, rwlock_holder(v) == FS_HOLDER_UNNAMED && RW_LOCK(v) == 1,
          "read-locked once, the lock word reads 0x%x", (unsigned)RW_LOCK(v));
    pthread_rwlock_unlock(&l);
    v = LOOK(c, "rwlock free", &l, &lcopy);
    CLAIM(c, rwlock_holder(v) == FS_HOLDER_FREE,
          "unlocked, reads as held by %d", (int)rwlock_holder(v));
    pthread_rwlock_destroy(&l);

    pthread_spinlock_t sp, spcopy;
    const pthread_spinlock_t *vs;
    pthread_spin_init(&sp, PTHREAD_PROCESS_PRIVATE);
    vs = LOOK(c, "spinlock word when free", &sp, &spcopy);
    CLAIM(c, spin_holder(vs) == FS_HOLDER_FREE, "unlocked, reads as %d",
          (int)spin_holder(vs));
    pthread_spin_lock(&sp);
    vs = LOOK(c, "spinlock word when held", &sp, &spcopy);
    CLAIM(c, spin_holder(vs) == FS_HOLDER_UNNAMED, "locked, reads as %d",
          (int)spin_holder(vs));
    pthread_spin_unlock(&sp);
    pthread_spin_destroy(&sp);

    sem_t s, scopy;
    const sem_t *vsem;
    sem_init(&s, 1, 3);
    vsem = LOOK(c, "semaphore process-shared flag", &s, &scopy);
    int shared = sem_pshared(vsem);
    sem_destroy(&s);
    sem_init(&s, 0, 3);
    vsem = LOOK(c, "semaphore process-shared flag", &s, &scopy);
    int private = sem_pshared(vsem);
    sem_destroy(&s);
    CLAIM(c, shared == 1 && private == 0,
          "a shared semaphore reads %d, a private one %d", shared, private);
}

static int check(char *why, size_t len)
{
    struct forksafe_check c = {why, len, "", 0, gettid()};
    check_mutexes(&c);
    check_others(&c);
    return c.bad ? ENOTSUP : 0;
}

const struct forksafe_platform forksafe__platform_musl = {
    .name = "musl",
    .check = check,
    .multithreaded = multithreaded,
    .atfork_serialized = 1,
    .mutex_kind = mutex_kind,
    .mutex_holder = mutex_holder,
    .mutex_lock_until = mutex_lock_until,
    .mutex_vet = NULL,
    .child_mutex = child_mutex,
    .rwlock_kind = rwlock_kind,
    .rwlock_holder = rwlock_holder,
    .rwlock_wrlock_until = rwlock_wrlock_until,
    .child_rwlock = child_rwlock,
    .spin_holder = spin_holder,
    .child_spin = child_spin,
    .tid_slot = tid_slot,
    .object_base = forksafe__posix_object_base,
    .sem_pshared = sem_pshared,
};
