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
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

/* Code the child runs in forksafe's fork handler (and forksafe_fork()'s
   return in the child). fork() copies no page-table entries of a file
   mapping, so each child faults in every page of the library's code it
   runs (the kernel maps the neighbours of a faulting page up to a 64 KiB
   aligned block along with it). Kept in one section, which the linker
   places together ahead of the rest of .text, the child path costs one
   fault, not one per block it happens to span. */
#if defined(__ELF__)
#define FS_CHILD_PATH __attribute__((section(".text.hot.forksafe_child")))
#else
#define FS_CHILD_PATH
#endif

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
#define FS_HOLDER_FREE 0 /* not held */
#define FS_HOLDER_UNNAMED                                                      \
    -1                       /* held; the libc records no owner (or readers)   \
                              */
#define FS_HOLDER_UNKNOWN -2 /* the layer cannot tell whether it is held */

/* How a prepare handler came to hold, or to leave, a lock; asked of
   mutex_vet() so that a layer that cannot restore a case refuses it before
   the fork instead of corrupting it after. */
enum forksafe_vet {
    FS_VET_TAKEN,     /* prepare just acquired it: the child must free it */
    FS_VET_RECOVERED, /* as TAKEN, after its owner died (EOWNERDEAD): it is
                         a robust mutex, now consistent */
    FS_VET_STRAY      /* busy with no other thread alive: the caller or a
                         dead thread holds it, and it is left as it is */
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
    /* 1 if the libc runs every prepare handler under one lock of its own
       that it holds until the fork is over (musl), so a thread inside
       fork() blocks every other thread's fork() until it is done. */
    int atfork_serialized;

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
       the errno that refuses the fork. It may let m go and take it again
       before deadline (the POSIX layer does, to learn whether another
       thread can release it); *still_held is set to 0 if it then could
       not, else left alone. On a refusal of a taken m that is still held,
       the caller releases it. NULL: every case can. */
    int (*mutex_vet)(pthread_mutex_t *m, enum forksafe_vet how,
                     const struct timespec *deadline, int *still_held);
    /* m is about to be registered (called outside the registry lock):
       forget what mutex_vet learned of an earlier mutex at that address.
       May be NULL. */
    void (*mutex_registered)(const pthread_mutex_t *m);
    /* Why the last mutex_vet or rwlock_vet refused, as a phrase ("a
       recursive mutex: ..."), or NULL. May be NULL. */
    const char *(*vet_refusal)(void);
    /* In the child: give m to the child's only thread (TID self). held:
       the forking thread held it: keep it held, same
       recursion depth. Otherwise prepare took it: leave it free. */
    void (*child_mutex)(pthread_mutex_t *m, int held, pid_t self);
    /* How many times child_mutex could not do that in this process (the
       layer says so on stderr when it happens). May be NULL: never. */
    unsigned long (*child_failures)(void);

    /* ---- rwlocks ---- */
    unsigned (*rwlock_kind)(const pthread_rwlock_t *l); /* FS_RW_* */
    /* The TID holding l for writing, FS_HOLDER_UNNAMED when it is held for
       reading or by an unrecorded writer, or FS_HOLDER_FREE/UNKNOWN. */
    pid_t (*rwlock_holder)(const pthread_rwlock_t *l);
    int (*rwlock_wrlock_until)(pthread_rwlock_t *l,
                               const struct timespec *deadline);
    /* As mutex_vet, for an rwlock prepare took for writing (FS_VET_TAKEN)
       or found busy with no other thread alive (FS_VET_STRAY). May be
       NULL. */
    int (*rwlock_vet)(pthread_rwlock_t *l, enum forksafe_vet how);
    /* In the child, as child_mutex; held: the forking thread held it for
       writing. */
    void (*child_rwlock)(pthread_rwlock_t *l, int held, pid_t self);

    /* ---- spinlocks ---- */
    pid_t (*spin_holder)(const pthread_spinlock_t *l); /* FS_HOLDER_* */
    /* In the child: free a spinlock that prepare took. */
    void (*child_spin)(pthread_spinlock_t *l);

    /* ---- processes ---- */
    /* Where the libc keeps the calling thread's TID, so that a process
       made with a raw clone() can have the kernel write its own TID there
       (CLONE_CHILD_SETTID) as fork() would; NULL if the layer does not
       know. */
    pid_t *(*tid_slot)(void);

    /* ---- objects ---- */
    /* The load address (dl_iterate_phdr's dlpi_addr) of the loaded object
       that contains addr, or 0 if none does. */
    uintptr_t (*object_base)(const void *addr);

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

/* Portable helpers of the POSIX layer that the other layers share
   (posix.c): a CLOCK_REALTIME time for a CLOCK_MONOTONIC deadline (the
   clock POSIX's timed locks take), and object_base by dl_iterate_phdr. */
void forksafe__posix_realtime(const struct timespec *deadline,
                              struct timespec *rt);
uintptr_t forksafe__posix_object_base(const void *addr);

/* For the layers' self-checks. Each claim is one thing a layer relies on,
   tried on a scratch lock. The fields are read from a copy of the lock
   taken right after the step (LOOK), so the test hook can change what is
   read without breaking the scratch lock itself, which is always cleaned
   up; the first claim that does not hold is named in why. */
struct forksafe_check {
    char *why;
    size_t len;
    const char *step;
    int bad;
    pid_t tid;
};
void *forksafe__check_look(struct forksafe_check *c, const char *step,
                           const void *lock, void *copy, size_t size);
#define LOOK(c, step, lock, copy)                                              \
    forksafe__check_look((c), (step), (lock), (copy), sizeof *(copy))
#define CLAIM(c, cond, fmt, ...)                                               \
    do {                                                                       \
        if (!(c)->bad && !(cond)) {                                            \
            snprintf((c)->why, (c)->len, "%s: " fmt, (c)->step, __VA_ARGS__);  \
            (c)->bad = 1;                                                      \
        }                                                                      \
    } while (0)

/* Tests only: when set before the first forksafe__platform() call, the
   build layer's check calls it at each step with the step's name and the
   scratch lock it has just set up, so a test can change what the check is
   about to read (a simulated future libc) and see the fallback. Hidden:
   only programs linked with the static library can set it. */
extern void (*forksafe__platform_check_hook)(const char *step, void *lock);

/* The layers (their files). */
extern const struct forksafe_platform forksafe__platform_glibc;
extern const struct forksafe_platform forksafe__platform_musl;
extern const struct forksafe_platform forksafe__platform_posix;

#endif
