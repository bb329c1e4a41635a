/* SPDX-License-Identifier: MIT */
/*
 * audit.h: the state and helpers shared by the files of libforksafe-audit.so
 * that interpose libc (pthread mutex, rwlock, condition and semaphore calls,
 * pthread_create, fork, _Fork, __register_atfork, and the usual
 * non-async-signal-safe calls made by forked children). Record writing and
 * the other async-signal-safe helpers are in preload.h.
 *
 * setup.c finds the real functions; locks.c keeps the thread, lock and
 * order tables on the lock path; fork.c handles fork() and owns the fork
 * state; child.c acts in a child of a multi-threaded fork; threads.c and
 * atfork.c wrap pthread_create and __register_atfork; report.c writes the
 * exit report and the inherited descriptors. Nothing declared here is
 * exported from the .so: only the interposed functions, marked EXPORT
 * where they are defined, are.
 */
#ifndef FORKSAFE_AUDIT_H
#define FORKSAFE_AUDIT_H

#include "preload.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define TLS         __thread __attribute__((tls_model("initial-exec")))
#define EXPORT      __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LOAD(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* -fvisibility=hidden covers definitions only: without this, the compiler
   would reach the shared variables below through the GOT, as if another
   module could define them, and the lock path would pay for that. */
#pragma GCC visibility push(hidden)

/* ------------------------------------------------------------ real calls */

/* The real functions, found with dlsym(RTLD_NEXT) (setup.c). Read them
   through REAL(), which resolves them on first use if a hook runs before
   our constructor (another library's constructor). */
extern int (*forksafe__audit_real_pthread_mutex_lock)(pthread_mutex_t *);
extern int (*forksafe__audit_real_pthread_mutex_trylock)(pthread_mutex_t *);
extern int (*forksafe__audit_real_pthread_mutex_timedlock)(
    pthread_mutex_t *, const struct timespec *);
extern int (*forksafe__audit_real_pthread_mutex_clocklock)(
    pthread_mutex_t *, clockid_t, const struct timespec *);
extern int (*forksafe__audit_real_pthread_mutex_unlock)(pthread_mutex_t *);
extern int (*forksafe__audit_real_pthread_mutex_destroy)(pthread_mutex_t *);
extern int (*forksafe__audit_real_pthread_rwlock_rdlock)(pthread_rwlock_t *);
extern int (*forksafe__audit_real_pthread_rwlock_wrlock)(pthread_rwlock_t *);
extern int (*forksafe__audit_real_pthread_rwlock_tryrdlock)(pthread_rwlock_t *);
extern int (*forksafe__audit_real_pthread_rwlock_trywrlock)(pthread_rwlock_t *);
extern int (*forksafe__audit_real_pthread_rwlock_unlock)(pthread_rwlock_t *);
extern int (*forksafe__audit_real_pthread_create)(pthread_t *,
                                                  const pthread_attr_t *,
                                                  void *(*)(void *), void *);
extern int (*forksafe__audit_real_pthread_cond_wait)(pthread_cond_t *,
                                                     pthread_mutex_t *);
extern int (*forksafe__audit_real_pthread_cond_timedwait)(
    pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
extern int (*forksafe__audit_real_pthread_cond_clockwait)(
    pthread_cond_t *, pthread_mutex_t *, clockid_t, const struct timespec *);
extern int (*forksafe__audit_real_sem_wait)(sem_t *);
extern int (*forksafe__audit_real_sem_trywait)(sem_t *);
extern int (*forksafe__audit_real_sem_timedwait)(sem_t *,
                                                 const struct timespec *);
extern int (*forksafe__audit_real_sem_clockwait)(sem_t *, clockid_t,
                                                 const struct timespec *);
extern int (*forksafe__audit_real_sem_post)(sem_t *);
extern int (*forksafe__audit_real_sem_destroy)(sem_t *);
extern pid_t (*forksafe__audit_real_fork)(void);
extern pid_t (*forksafe__audit_real__Fork)(void);
extern int (*forksafe__audit_real___register_atfork)(void (*)(void),
                                                     void (*)(void),
                                                     void (*)(void), void *);
extern void *(*forksafe__audit_real_malloc)(size_t);
extern void *(*forksafe__audit_real_calloc)(size_t, size_t);
extern void *(*forksafe__audit_real_realloc)(void *, size_t);
extern void (*forksafe__audit_real_free)(void *);
extern int (*forksafe__audit_real_vprintf)(const char *, va_list);
extern int (*forksafe__audit_real_vfprintf)(FILE *, const char *, va_list);
extern int (*forksafe__audit_real_puts)(const char *);
extern int (*forksafe__audit_real_fputs)(const char *, FILE *);
extern size_t (*forksafe__audit_real_fwrite)(const void *, size_t, size_t,
                                             FILE *);
extern int (*forksafe__audit_real_fflush)(FILE *);

/* Nonzero while dlsym runs (allocations then go straight to glibc), and
   while the audit itself calls the program's libraries (hooks then only
   forward); see setup.c. */
extern TLS int forksafe__audit_in_resolve;
extern TLS int forksafe__audit_in_hook;

/* dlsym(RTLD_NEXT, name) with forksafe__audit_in_resolve set around it.
   Returns NULL if there is no next definition. */
void *forksafe__audit_resolve(const char *name);

#define REAL(fn)                                                               \
    (LOAD(&forksafe__audit_real_##fn)                                          \
         ? forksafe__audit_real_##fn                                           \
         : (STORE(&forksafe__audit_real_##fn,                                  \
                  (__typeof__(forksafe__audit_real_##fn))                      \
                      forksafe__audit_resolve(#fn)),                           \
            forksafe__audit_real_##fn))

/* ------------------------------------------------------------ threads */

enum { KIND_MUTEX = 1, KIND_RWLOCK = 2, KIND_SEMAPHORE = 3 };

static inline const char *kind_name(int kind)
{
    return kind == KIND_RWLOCK      ? "rwlock"
           : kind == KIND_SEMAPHORE ? "semaphore"
                                    : "mutex";
}

#define MAX_THREADS 1024
#define MAX_HELD    16

struct held {
    void *lock;
    void *site;
    int kind;
};

/* One per live thread that has used a hook. Other threads read `tid`,
   `start` and the held stack at fork time: best effort, never waited for. */
struct thread_rec {
    int tid;        /* 0: free slot */
    unsigned ident; /* unique per claim, survives fork in the child */
    void *start;
    int nheld;
    struct held held[MAX_HELD];
};

/* The thread table (locks.c). Slots [0, forksafe__audit_threads_hwm) have
   been used; a slot with tid 0 is free. */
extern struct thread_rec forksafe__audit_threads[MAX_THREADS];
extern int forksafe__audit_threads_hwm;
/* This thread's record, or NULL before its first hook. */
extern TLS struct thread_rec *forksafe__audit_self_rec;

/* This thread's record, claimed on first use without locking or
   allocating. Returns NULL when MAX_THREADS threads are live already (the
   thread is then not tracked). */
struct thread_rec *forksafe__audit_self(void);
/* Give a thread's slot back (the thread exited, or did not survive a
   fork). p is a struct thread_rec *. */
void forksafe__audit_thread_release(void *p);
/* Create the key whose destructor gives a thread's slot back at thread
   exit. Called once, from the constructor, before the first
   forksafe__audit_self() there. */
void forksafe__audit_thread_key_init(void);

/* ------------------------------------------------------------ lock table */

#define LOCK_BITS  16
#define LOCK_SLOTS (1u << LOCK_BITS)

struct lock_ent {
    uintptr_t addr; /* 0: empty; written once */
    unsigned owner; /* ident of the first thread to use it (0: none) */
    int shared;     /* used by a second thread */
    int kind;
    int tid1, tid2;
    void *site1, *site2;
};

/* Every lock seen, keyed by address (locks.c). */
extern struct lock_ent forksafe__audit_locks[LOCK_SLOTS];

/* Shared locks destroyed during the run, kept for the exit report. */
#define RETIRED_MAX 128
extern struct lock_ent forksafe__audit_retired[RETIRED_MAX];
/* How many were retired; may exceed RETIRED_MAX (the rest are dropped). */
extern int forksafe__audit_nretired;

/* ------------------------------------------------------------ order edges */

#define EDGE_BITS  12
#define EDGE_SLOTS (1u << EDGE_BITS)

/* "b was taken while a was held", first seen at these sites. */
struct edge {
    uint64_t key; /* 0: empty */
    void *a, *b;
    void *site_a, *site_b;
    int tid;
    int ready;
};

/* Every order edge seen (locks.c); read an entry only once `ready`. */
extern struct edge forksafe__audit_edges[EDGE_SLOTS];

/* ------------------------------------------------------------ fork state */

#define SNAP_MAX 80

/* Locks other threads held when the last multi-threaded fork happened. */
struct snap {
    void *lock;
    void *site;
    int holder;
    int kind;
};

/* Small per-process "report once" sets: fork call sites, held locks,
   unsafe call sites, stdio streams. Reset in every child. */
#define ONCE_MAX 32
struct once {
    uintptr_t key[ONCE_MAX];
    int n;
};

/* Everything fork() and the child write, in one page (fork.c). */
struct fork_state {
    int child_mt;          /* we are a child of a multi-threaded fork */
    int child_has_threads; /* ... that has started threads since */
    int snap_busy;         /* a fork owns the snapshot */
    int nsnap;
    long forks; /* forks made by this process */
    struct once once_fork, once_held, once_unsafe, once_stdio;
    struct snap snap[SNAP_MAX];
};
extern struct fork_state forksafe__audit_fk;

/* 1 the first time key is offered (0 when already seen or the set is
   full, so a flood of findings is capped). Lock-free; safe in a signal
   handler and in a forked child. */
int forksafe__audit_once_first(struct once *o, uintptr_t key);
/* Start a finding record: kind, severity, pid, ppid and tid. */
void forksafe__audit_rec_common(struct forksafe__rec *r, const char *kind,
                                const char *sev);
/* Numeric entries of a /proc directory (tasks or fds): returns how many
   there are (-1 if dir cannot be opened), and stores the first max of them
   in out. If dirfd_out is not NULL it receives the descriptor used for the
   scan (closed again before the return). Raw system calls only. */
int forksafe__audit_list_numeric(const char *dir, int *out, int max,
                                 int *dirfd_out);

/* ------------------------------------------------------------ child */

/* Grace period, in milliseconds, for a lock in a child of a
   multi-threaded fork (child.c; FORKSAFE_AUDIT_GRACE_MS, read by the
   constructor). */
extern long forksafe__audit_grace_ms;

/* Report fn as called from site in a child of a multi-threaded parent,
   once per call site. Does nothing elsewhere; errno is kept. */
void forksafe__audit_note_unsafe(const char *fn, void *site);
/* Write a child-deadlock finding for lock m and end the process with
   FORKSAFE_AUDIT_DEADLOCK_STATUS. Never returns. */
void forksafe__audit_deadlock_exit(void *m, int kind, void *site, int holder,
                                   void *holder_site) __attribute__((noreturn));
/* 1 if semaphore s is process-shared (see mutex_pshared in child.c). */
int forksafe__audit_sem_pshared(const sem_t *s);
/* Now + the grace period, on CLOCK_MONOTONIC. */
void forksafe__audit_grace_deadline(struct timespec *ts);
/* pthread_mutex_lock in a child of a multi-threaded fork: a lock that
   another thread held at the fork can never be released, so wait for it
   for the grace period only. Returns the lock result, or -1 to take the
   normal path. */
int forksafe__audit_child_lock(pthread_mutex_t *m, void *site);

/* ------------------------------------------------------------ atfork */

/* Raw atfork registrations seen, and those made by libforksafe
   (atfork.c). */
extern int forksafe__audit_atfork_raw, forksafe__audit_atfork_registry;

/* 1 if the object path obj is libforksafe or one of its adapters (not
   libforksafe-audit itself). */
int forksafe__audit_is_forksafe_object(const char *obj);

/* ------------------------------------------------------------ reports */

/* The exit report without registry questions: the fallback atexit handler
   registered by the constructor (report.c). Runs at most once per process,
   whichever exit path comes first. */
void forksafe__audit_exit_late(void);
/* Report every descriptor above 2 inherited across exec without
   close-on-exec. Called from the constructor, before the first record. */
void forksafe__audit_report_inherited_fds(void);

#pragma GCC visibility pop

#endif
