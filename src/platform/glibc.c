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

#include <errno.h>
#include <stdio.h>
#include <string.h>
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

static void child_mutex(pthread_mutex_t *m, int held, pid_t self)
{
    if (m->__data.__kind & MK_REBUILD) {
        mutex_rebuild(m, held);
        return;
    }
    /* glibc checks __owner against the caller's TID for errorcheck and
       recursive mutexes; the child's TID is new (CLONE_CHILD_SETTID). */
    m->__data.__owner = self;
    if (!held)
        pthread_mutex_unlock(m);
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
static void child_rwlock(pthread_rwlock_t *l, int held, pid_t self)
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

static pid_t spin_holder(const pthread_spinlock_t *l)
{
    return LOAD(*l) ? FS_HOLDER_UNNAMED : FS_HOLDER_FREE;
}

/* glibc's spinlock records no owner: unlocking in the child is valid. */
static void child_spin(pthread_spinlock_t *l)
{
    pthread_spin_unlock(l);
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

const struct forksafe_platform forksafe__platform_glibc = {
    .name = "glibc",
    .check = NULL,
    .multithreaded = multithreaded,
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
    .sem_pshared = sem_pshared,
};
