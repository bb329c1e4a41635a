/* SPDX-License-Identifier: MIT */
/*
 * platform/glibc.c: the lock layer for glibc (NPTL), which reads glibc's
 * pthread structures (bits/struct_mutex.h, bits/struct_rwlock.h) by their
 * field names, so the same code serves every architecture's layout.
 *
 * DESIGN. glibc records the owner's TID in every mutex (__owner) and the
 * writer's in every rwlock (__cur_writer), and checks them: in the child
 * of fork the only thread has a new TID (CLONE_CHILD_SETTID), so unlocking
 * an errorcheck or recursive mutex there fails with EPERM, and an rwlock
 * unlock takes the reader path and leaves the lock busy. The child handler
 * therefore rewrites the owner of plain mutexes to the child's TID before
 * unlocking them, and rebuilds robust, PI and PP mutexes (whose futex word
 * itself holds the old TID) and rwlocks from their own attributes,
 * re-acquiring them when the forking thread held them. The field meanings
 * are checked at first use on scratch locks (check below).
 */
#include "platform.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#ifndef __GLIBC__
#error "PLATFORM=glibc needs glibc; use PLATFORM=auto or posix"
#endif

/* glibc's mutex __kind bits (nptl/pthreadP.h). */
#define MK_TYPE_MASK        0x3  /* PTHREAD_MUTEX_KIND_MASK_NP */
#define MK_ROBUST           0x10 /* PTHREAD_MUTEX_ROBUST_NORMAL_NP */
#define MK_PI               0x20 /* PTHREAD_MUTEX_PRIO_INHERIT_NP */
#define MK_PP               0x40 /* PTHREAD_MUTEX_PRIO_PROTECT_NP */
#define MK_PSHARED          0x80 /* PTHREAD_MUTEX_PSHARED_BIT */
#define MK_ELISION          256  /* PTHREAD_MUTEX_ELISION_NP */
#define MK_REBUILD          (MK_ROBUST | MK_PI | MK_PP)
#define MUTEX_CEILING_SHIFT 19 /* PTHREAD_MUTEX_PRIO_CEILING_SHIFT */
#define RW_READER_SHIFT     3  /* PTHREAD_RWLOCK_READER_SHIFT */

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* ------------------------------------------------------------ process */

static int multithreaded(void)
{
    return !__libc_single_threaded;
}

/* ------------------------------------------------------------ mutex */

static unsigned mutex_kind(const pthread_mutex_t *m)
{
    int kind = LOAD(m->__data.__kind);
    unsigned k = (unsigned)kind & MK_TYPE_MASK;
    if (kind & MK_ROBUST)
        k |= FS_MX_ROBUST;
    if (kind & MK_PI)
        k |= FS_MX_PI;
    if (kind & MK_PP)
        k |= FS_MX_PP;
    if (kind & MK_PSHARED)
        k |= FS_MX_PSHARED;
    return k;
}

static pid_t mutex_holder(const pthread_mutex_t *m)
{
    if (LOAD(m->__data.__lock) == 0)
        return FS_HOLDER_FREE;
    pid_t owner = LOAD(m->__data.__owner);
    return owner > 0 && owner < 0x3fffffff ? owner : FS_HOLDER_UNNAMED;
}

static int mutex_lock_until(pthread_mutex_t *m, const struct timespec *deadline)
{
    if (!deadline)
        return pthread_mutex_lock(m);
    int r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, deadline);
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
    return r;
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

FS_CHILD_PATH static void child_mutex(pthread_mutex_t *m, int held, pid_t self)
{
    int kind = m->__data.__kind;
    if (kind & MK_REBUILD) {
        mutex_rebuild(m, held);
        return;
    }
    /* glibc checks __owner against the caller's TID for errorcheck and
       recursive mutexes; the child's TID is new (CLONE_CHILD_SETTID). */
    if (held || (kind & MK_ELISION)) {
        m->__data.__owner = self;
        if (!held)
            pthread_mutex_unlock(m);
        return;
    }
    /* Prepare took it, once, and the child's thread is the only one: leave
       what pthread_mutex_unlock() leaves (no owner, one user less, count
       0, lock word 0) with plain stores. Unlock would do one atomic
       exchange per mutex, and a futex wake for each that had waiters in
       the parent, which has none here: at 16,384 mutexes that was most of
       the child's side of a fork (bench/bench-adopt.c). */
    m->__data.__owner = 0;
    m->__data.__count = 0;
    m->__data.__nusers--;
    m->__data.__lock = 0;
}

/* ------------------------------------------------------------ rwlock */

static unsigned rwlock_kind(const pthread_rwlock_t *l)
{
    unsigned k = LOAD(l->__data.__flags) & FS_RW_PREFER_MASK;
    if (LOAD(l->__data.__shared))
        k |= FS_RW_PSHARED;
    return k;
}

static pid_t rwlock_holder(const pthread_rwlock_t *l)
{
    pid_t w = LOAD(l->__data.__cur_writer);
    if (w > 0)
        return w;
    return LOAD(l->__data.__readers) >> RW_READER_SHIFT ? FS_HOLDER_UNNAMED
                                                        : FS_HOLDER_FREE;
}

static int rwlock_wrlock_until(pthread_rwlock_t *l,
                               const struct timespec *deadline)
{
    return deadline ? pthread_rwlock_clockwrlock(l, CLOCK_MONOTONIC, deadline)
                    : pthread_rwlock_wrlock(l);
}

/* An rwlock's unlock in the child compares __cur_writer with the new TID
   and takes the reader path: rebuild it instead, with its own kind. */
FS_CHILD_PATH static void child_rwlock(pthread_rwlock_t *l, int held,
                                       pid_t self)
{
    (void)self;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, (int)l->__data.__flags);
    if (l->__data.__shared)
        pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(l, &a);
    pthread_rwlockattr_destroy(&a);
    if (held)
        pthread_rwlock_wrlock(l);
}

/* ------------------------------------------------------------ spinlock */

/* glibc's x86 spinlocks count down from 1 (free) with "lock decl"
   (sysdeps/x86_64/nptl/pthread_spin_lock.S, and i386's): held is 0 or
   below. Elsewhere glibc's generic spinlock exchanges 0 (free) for 1. */
static pid_t spin_holder(const pthread_spinlock_t *l)
{
#if defined(__x86_64__) || defined(__i386__)
    return LOAD(*l) <= 0 ? FS_HOLDER_UNNAMED : FS_HOLDER_FREE;
#else
    return LOAD(*l) ? FS_HOLDER_UNNAMED : FS_HOLDER_FREE;
#endif
}

/* glibc's spinlock records no owner: unlocking in the child is valid. */
FS_CHILD_PATH static void child_spin(pthread_spinlock_t *l)
{
    pthread_spin_unlock(l);
}

/* ------------------------------------------------------------ processes */

/* glibc registers its descriptor's tid field with set_tid_address(), and
   the kernel reports that address back (CONFIG_CHECKPOINT_RESTORE). */
#ifndef PR_GET_TID_ADDRESS
#define PR_GET_TID_ADDRESS 40
#endif
static pid_t *tid_slot(void)
{
    pid_t *p = NULL;
    if (prctl(PR_GET_TID_ADDRESS, &p, 0, 0, 0) != 0)
        return NULL;
    return p;
}

/* ------------------------------------------------------------ objects */

static uintptr_t object_base(const void *addr)
{
    Dl_info info;
    struct link_map *lm = NULL;
    if (addr && dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP) && lm)
        return (uintptr_t)lm->l_addr;
    return 0;
}

/* ------------------------------------------------------------ semaphore */

/* glibc marks a process-shared semaphore with bit 128 in the int after
   its value (nptl's struct new_sem): the value is a 64-bit word where
   glibc has 64-bit atomics (x86_64), a 32-bit one elsewhere (i386).
   Checked on glibc 2.36, x86_64 and i386, with sem_init(s, 1, v). */
#if defined(__x86_64__) || defined(__aarch64__) || __SIZEOF_POINTER__ == 8
#define SEM_PRIVATE_INT 2
#else
#define SEM_PRIVATE_INT 1
#endif

static int sem_pshared(const sem_t *s)
{
    return (((const int *)(const void *)s)[SEM_PRIVATE_INT] & 128) != 0;
}

/* ------------------------------------------------------------ self-check */

/* Each claim is one thing this file relies on, tried on a scratch lock
   (struct forksafe_check in platform.h). */
static void init_mutex(pthread_mutex_t *m, int type, int robust, int proto,
                       int pshared)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, type);
    if (robust)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (proto == PTHREAD_PRIO_PROTECT) {
        pthread_mutexattr_setprotocol(&a, proto);
        pthread_mutexattr_setprioceiling(&a, 7);
    } else if (proto == PTHREAD_PRIO_INHERIT &&
               pthread_mutexattr_setprotocol(&a, proto) != 0) {
        pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_NONE);
    }
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
        {PTHREAD_MUTEX_ADAPTIVE_NP, FS_MX_ADAPTIVE, "an adaptive mutex"},
    };
    pthread_mutex_t m, copy;
    const pthread_mutex_t *v;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        init_mutex(&m, types[i].type, 0, PTHREAD_PRIO_NONE, 0);
        v = LOOK(c, "kind bits of a new mutex", &m, &copy);
        CLAIM(c, mutex_kind(v) == types[i].kind && mutex_holder(v) == 0,
              "%s reads as kind 0x%x, holder %d", types[i].name, mutex_kind(v),
              (int)mutex_holder(v));
        pthread_mutex_lock(&m);
        v = LOOK(c, "owner TID after lock", &m, &copy);
        CLAIM(c, mutex_holder(v) == c->tid,
              "%s locked by %d reads as held by %d", types[i].name, (int)c->tid,
              (int)mutex_holder(v));
        pthread_mutex_unlock(&m);
        v = LOOK(c, "owner TID after unlock", &m, &copy);
        CLAIM(c, mutex_holder(v) == FS_HOLDER_FREE,
              "%s unlocked reads as held by %d", types[i].name,
              (int)mutex_holder(v));
        pthread_mutex_destroy(&m);
    }

    /* The recursion depth that a rebuild restores. */
    init_mutex(&m, PTHREAD_MUTEX_RECURSIVE, 0, PTHREAD_PRIO_NONE, 0);
    pthread_mutex_lock(&m);
    pthread_mutex_lock(&m);
    v = LOOK(c, "count after recursive lock", &m, &copy);
    CLAIM(c, v->__data.__count == 2, "locked twice, __count reads %u",
          v->__data.__count);
    pthread_mutex_unlock(&m);
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);

    /* The take-over the child handler does: unlock is refused while the
       recorded owner is another TID, and allowed once it is ours. */
    for (int type = PTHREAD_MUTEX_RECURSIVE; type <= PTHREAD_MUTEX_ERRORCHECK;
         type++) {
        init_mutex(&m, type, 0, PTHREAD_PRIO_NONE, 0);
        pthread_mutex_lock(&m);
        c->step = "owner rewrite";
        m.__data.__owner = c->tid + 1;
        int r = pthread_mutex_unlock(&m);
        m.__data.__owner = c->tid;
        int r2 = r == 0 ? 0 : pthread_mutex_unlock(&m);
        CLAIM(c, r == EPERM && r2 == 0,
              "unlock under another owner returned %d (not EPERM), then %d", r,
              r2);
        pthread_mutex_destroy(&m);
    }

    /* Attribute bits the rebuild reads back, and the futex word of the
       kinds that keep the owner there. */
    init_mutex(&m, PTHREAD_MUTEX_ERRORCHECK, 1, PTHREAD_PRIO_NONE, 1);
    v = LOOK(c, "robust and process-shared bits", &m, &copy);
    CLAIM(c, mutex_kind(v) == (FS_MX_ERRORCHECK | FS_MX_ROBUST | FS_MX_PSHARED),
          "a robust process-shared errorcheck mutex reads as kind 0x%x",
          mutex_kind(v));
    pthread_mutex_lock(&m);
    v = LOOK(c, "owner TID of a robust mutex", &m, &copy);
    CLAIM(c,
          mutex_holder(v) == c->tid &&
              (v->__data.__lock & 0x3fffffff) == c->tid,
          "locked by %d, reads as held by %d (futex word 0x%x)", (int)c->tid,
          (int)mutex_holder(v), (unsigned)v->__data.__lock);
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);

    init_mutex(&m, PTHREAD_MUTEX_RECURSIVE, 0, PTHREAD_PRIO_INHERIT, 0);
    if (mutex_kind(&m) & FS_MX_PI) { /* the kernel may lack PI futexes */
        pthread_mutex_lock(&m);
        v = LOOK(c, "owner TID of a PI mutex", &m, &copy);
        CLAIM(c,
              mutex_holder(v) == c->tid &&
                  (v->__data.__lock & 0x3fffffff) == c->tid,
              "locked by %d, reads as held by %d (futex word 0x%x)",
              (int)c->tid, (int)mutex_holder(v), (unsigned)v->__data.__lock);
        pthread_mutex_unlock(&m);
    }
    pthread_mutex_destroy(&m);

    init_mutex(&m, PTHREAD_MUTEX_NORMAL, 0, PTHREAD_PRIO_PROTECT, 0);
    v = LOOK(c, "priority-protect bits and ceiling", &m, &copy);
    CLAIM(c,
          mutex_kind(v) == (FS_MX_NORMAL | FS_MX_PP) &&
              ((v->__data.__lock >> MUTEX_CEILING_SHIFT) & 0xfff) == 7,
          "a PP mutex with ceiling 7 reads as kind 0x%x, ceiling %d",
          mutex_kind(v), (v->__data.__lock >> MUTEX_CEILING_SHIFT) & 0xfff);
    pthread_mutex_destroy(&m);
}

static void check_others(struct forksafe_check *c)
{
    pthread_rwlock_t l, lcopy;
    const pthread_rwlock_t *v;
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlockattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(&l, &a);
    pthread_rwlockattr_destroy(&a);
    v = LOOK(c, "rwlock kind and process-shared flag", &l, &lcopy);
    CLAIM(c,
          rwlock_kind(v) == (FS_RW_PREFER_WRITER_NONRECURSIVE | FS_RW_PSHARED),
          "a process-shared prefer-writer-nonrecursive rwlock reads as 0x%x",
          rwlock_kind(v));
    pthread_rwlock_wrlock(&l);
    v = LOOK(c, "rwlock write-locked", &l, &lcopy);
    CLAIM(c, rwlock_holder(v) == c->tid,
          "write-locked by %d, reads as held by %d", (int)c->tid,
          (int)rwlock_holder(v));
    pthread_rwlock_unlock(&l);
    pthread_rwlock_rdlock(&l);
    v = LOOK(c, "rwlock readers", &l, &lcopy);
    CLAIM(c, rwlock_holder(v) == FS_HOLDER_UNNAMED,
          "read-locked, reads as held by %d", (int)rwlock_holder(v));
    pthread_rwlock_unlock(&l);
    v = LOOK(c, "rwlock free", &l, &lcopy);
    CLAIM(c, rwlock_holder(v) == FS_HOLDER_FREE,
          "unlocked, reads as held by %d", (int)rwlock_holder(v));
    pthread_rwlock_destroy(&l);
    pthread_rwlock_init(&l, NULL);
    v = LOOK(c, "rwlock default kind", &l, &lcopy);
    CLAIM(c, rwlock_kind(v) == FS_RW_PREFER_READER,
          "a default rwlock reads as 0x%x", rwlock_kind(v));
    pthread_rwlock_destroy(&l);

    pthread_spinlock_t sp, spcopy;
    const pthread_spinlock_t *vs;
    pthread_spin_init(&sp, PTHREAD_PROCESS_PRIVATE);
    vs = forksafe__check_look(c, "spinlock word when free", (const void *)&sp,
                              (void *)&spcopy, sizeof spcopy);
    CLAIM(c, spin_holder(vs) == FS_HOLDER_FREE, "unlocked, reads as %d",
          (int)spin_holder(vs));
    pthread_spin_lock(&sp);
    vs = forksafe__check_look(c, "spinlock word when held", (const void *)&sp,
                              (void *)&spcopy, sizeof spcopy);
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

const struct forksafe_platform forksafe__platform_glibc = {
    .name = "glibc",
    .check = check,
    .multithreaded = multithreaded,
    .atfork_serialized = 0, /* handlers run unlocked (register-atfork.c) */
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
    .object_base = object_base,
    .sem_pshared = sem_pshared,
};
