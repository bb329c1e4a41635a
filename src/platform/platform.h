/* SPDX-License-Identifier: MIT */
/*
 * platform.h: the platform layer, the only code that reads a C library's
 * private pthread structures. One file per libc (glibc.c, musl.c) plus a
 * layer that reads nothing private (posix.c); the build picks one
 * (PLATFORM= in `scons -h`), and the glibc layer falls back to the POSIX
 * layer at run time if its self-check finds glibc's fields moved.
 *
 * Everything else in src/ sees locks only through this table: what a lock
 * is (kind bits), who holds it (owner TIDs, where the libc records one), how
 * to wait for it on CLOCK_MONOTONIC, and how to hand it to the child after
 * fork. The generic algorithm (ranks, deadlines, rollback) lives in
 * locks.c and fork.c and is the same on every layer.
 */
#ifndef FORKSAFE_PLATFORM_H
#define FORKSAFE_PLATFORM_H

#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

/* What a mutex is, the same bits on every layer. The type is the low three
   bits; the numbering is glibc's, which the POSIX constants share there. */
#define FS_MX_NORMAL     0u
#define FS_MX_RECURSIVE  1u
#define FS_MX_ERRORCHECK 2u
#define FS_MX_ADAPTIVE   3u /* glibc's PTHREAD_MUTEX_ADAPTIVE_NP */
#define FS_MX_TYPE_MASK  7u
#define FS_MX_ROBUST     0x10u
#define FS_MX_PI         0x20u /* PTHREAD_PRIO_INHERIT */
#define FS_MX_PP         0x40u /* PTHREAD_PRIO_PROTECT */
#define FS_MX_PSHARED    0x80u /* PTHREAD_PROCESS_SHARED */
/* The layer cannot read the attributes: every other bit is meaningless. */
#define FS_MX_UNKNOWN 0x100u

/* What an rwlock is. The preference is glibc's numbering
   (PTHREAD_RWLOCK_PREFER_*_NP). */
#define FS_RW_PREFER_READER              0u
#define FS_RW_PREFER_WRITER              1u
#define FS_RW_PREFER_WRITER_NONRECURSIVE 2u
#define FS_RW_PREFER_MASK                3u
#define FS_RW_PSHARED                    0x80u
#define FS_RW_UNKNOWN                    0x100u

/* Holder queries answer a TID (> 0), or one of these. */
#define FS_HOLDER_FREE    0  /* not held */
#define FS_HOLDER_UNNAMED -1 /* held; the libc records no owner (or readers)   \
                              */
#define FS_HOLDER_UNKNOWN -2 /* the layer cannot tell whether it is held */

/* How a prepare handler came to hold, or to leave, a lock; asked of
   vet_mutex() so that a layer that cannot restore a case refuses it before
   the fork instead of corrupting it after. */
enum forksafe_vet {
    FS_VET_TAKEN, /* prepare just acquired it: the child must free it */
    FS_VET_SELF,  /* the forking thread held it: the child must keep it */
    FS_VET_STRAY  /* busy with no other thread alive: the caller or a dead
                     thread holds it, and it is left as it is */
};

/* One platform layer. Every function may be called with any registered
   lock, from any thread, with the registry lock held; none allocates. The
   child_* functions run in the child of fork() before any other code of
   the child and must be async-signal-safe. Pointers may be NULL where the
   comment says so. */
struct forksafe_platform {
    const char *name; /* "glibc", "musl", "posix" */

    /* Check, on scratch locks, that the fields this layer reads mean what
       it thinks. 0 if they do; otherwise an errno value, with one sentence
       naming the first failed check in why. NULL: nothing to check. */
    int (*check)(char *why, size_t len);

    /* 0 if the libc knows the process has a single thread, 1 if other
       threads may exist. */
    int (*multithreaded)(void);

    /* ---- mutexes ---- */
    unsigned (*mutex_kind)(const pthread_mutex_t *m); /* FS_MX_* */
    /* The TID that holds m, or FS_HOLDER_*. */
    pid_t (*mutex_holder)(const pthread_mutex_t *m);
    /* Lock m; deadline is absolute CLOCK_MONOTONIC time, NULL for none.
       Returns what pthread_mutex_lock/timedlock would (ETIMEDOUT,
       EOWNERDEAD, EDEADLK, ...). */
    int (*mutex_lock_until)(pthread_mutex_t *m,
                            const struct timespec *deadline);
    /* Whether the child can be given m in the state how describes: 0, or
       the errno that refuses the fork (the caller then releases what it
       took). NULL: every case can. */
    int (*mutex_vet)(pthread_mutex_t *m, enum forksafe_vet how);
    /* In the child: give m to the child's only thread (TID self). held:
       the forking thread held it (FS_VET_SELF): keep it held, same
       recursion depth. Otherwise prepare took it: leave it free. */
    void (*child_mutex)(pthread_mutex_t *m, int held, pid_t self);

    /* ---- rwlocks ---- */
    unsigned (*rwlock_kind)(const pthread_rwlock_t *l); /* FS_RW_* */
    /* The TID holding l for writing, FS_HOLDER_UNNAMED when it is held for
       reading or by an unrecorded writer, or FS_HOLDER_FREE/UNKNOWN. */
    pid_t (*rwlock_holder)(const pthread_rwlock_t *l);
    int (*rwlock_wrlock_until)(pthread_rwlock_t *l,
                               const struct timespec *deadline);
    /* In the child, as child_mutex; held: the forking thread held it for
       writing. */
    void (*child_rwlock)(pthread_rwlock_t *l, int held, pid_t self);

    /* ---- spinlocks ---- */
    pid_t (*spin_holder)(const pthread_spinlock_t *l); /* FS_HOLDER_* */
    /* In the child: free a spinlock that prepare took. */
    void (*child_spin)(pthread_spinlock_t *l);

    /* ---- semaphores (read by the audit interposer) ---- */
    /* 1 if s is process-shared, 0 if not, -1 if the layer cannot tell. */
    int (*sem_pshared)(const sem_t *s);
};

/* The layer in use. The first call picks it (running the build's layer's
   check, falling back to the POSIX layer if it fails); later calls only
   return it. Thread-safe. */
const struct forksafe_platform *forksafe__platform(void);

/* For reports: the layer in use, the C library (with its version where
   the libc says), the architecture, and why the build's layer was not used
   ("" if it was). Valid for the life of the process. */
struct forksafe_platform_info {
    const char *layer;
    const char *libc;
    const char *arch;
    const char *fallback;
};
void forksafe__platform_info(struct forksafe_platform_info *info);

/* The layers (their files). */
extern const struct forksafe_platform forksafe__platform_glibc;
extern const struct forksafe_platform forksafe__platform_musl;
extern const struct forksafe_platform forksafe__platform_posix;

#endif
