/* SPDX-License-Identifier: MIT */
/*
 * interpose.h: the interposer core of forksafe's LD_PRELOAD libraries.
 * libforksafe-audit.so is built from these objects plus the audit's own
 * (audit.h); a second preload library (forksafe-run) links the same core
 * objects (SConscript: env['FS_INTERPOSE_OBJS']) and its own policy.
 *
 * The core gives a library:
 *   - the real libc functions behind every hook (real.c: REAL(fn));
 *   - a thread table, one record per live thread, with the stack of locks
 *     each holds (threads.c);
 *   - a lock table keyed by address (first user, whether a second thread
 *     used it) and the lock-order pairs seen (locktab.c);
 *   - the pthread mutex, rwlock, condition and semaphore hooks that fill
 *     them, and the hooks on everything that releases lock memory
 *     (sem_close, sem_destroy, pthread_*_destroy, munmap, mremap, dlclose)
 *     so that the tables never point into memory that is gone (locks.c;
 *     a library with acquire and release hooks of its own compiles it
 *     with FORKSAFE_INTERPOSE_LIVENESS_ONLY and gets only the latter);
 *   - fault-safe reads of the program's memory (safemem.c);
 *   - the exec family, posix_spawn, system and popen, which keep the
 *     library's environment in descendants and say when a new program
 *     cannot load it (exec.c, execcheck.h).
 *
 * Rules for everything here: it may run in a signal handler, in the child
 * of a multi-threaded fork and in a vfork child, so it never allocates,
 * never takes a lock and keeps errno. A library supplies the policy
 * functions declared at the end of this file.
 *
 * A library built on the core has its own constructor, which calls, in
 * this order: forksafe__out_use_variable() if its record directory is
 * named by another variable than FORKSAFE_AUDIT_DIR, forksafe__out_init()
 * (records, if that variable names a directory; emit.c),
 * forksafe__resolve_early(), forksafe__thread_key_init(),
 * forksafe__exec_keep_init() with the variables its descendants need, and
 * forksafe__exec_unkeep(). The audit's is src/preload/setup.c. The fork
 * hooks (fork, _Fork) and what happens in a child are the library's own
 * (the audit's: fork.c, child.c); the core's lock hooks hand a blocking
 * acquire to the library's forksafe__policy_acquire() whenever the library
 * sets forksafe__policy_slow, and cost nothing otherwise.
 */
#ifndef FORKSAFE_INTERPOSE_H
#define FORKSAFE_INTERPOSE_H

#include "preload.h"

#include <pthread.h>
#include <semaphore.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
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

/* Every libc function a hook forwards to: X(return type, name, params). */
#define FORKSAFE_REAL_LIST(X)                                                  \
    X(int, pthread_mutex_lock, (pthread_mutex_t *))                            \
    X(int, pthread_mutex_trylock, (pthread_mutex_t *))                         \
    X(int, pthread_mutex_timedlock,                                            \
      (pthread_mutex_t *, const struct timespec *))                            \
    X(int, pthread_mutex_clocklock,                                            \
      (pthread_mutex_t *, clockid_t, const struct timespec *))                 \
    X(int, pthread_mutex_unlock, (pthread_mutex_t *))                          \
    X(int, pthread_mutex_destroy, (pthread_mutex_t *))                         \
    X(int, pthread_mutex_init,                                                 \
      (pthread_mutex_t *, const pthread_mutexattr_t *))                        \
    X(int, pthread_rwlock_init,                                                \
      (pthread_rwlock_t *, const pthread_rwlockattr_t *))                      \
    X(int, sem_init, (sem_t *, int, unsigned))                                 \
    X(int, shmdt, (const void *))                                              \
    X(int, pthread_rwlock_rdlock, (pthread_rwlock_t *))                        \
    X(int, pthread_rwlock_wrlock, (pthread_rwlock_t *))                        \
    X(int, pthread_rwlock_tryrdlock, (pthread_rwlock_t *))                     \
    X(int, pthread_rwlock_trywrlock, (pthread_rwlock_t *))                     \
    X(int, pthread_rwlock_timedrdlock,                                         \
      (pthread_rwlock_t *, const struct timespec *))                           \
    X(int, pthread_rwlock_timedwrlock,                                         \
      (pthread_rwlock_t *, const struct timespec *))                           \
    X(int, pthread_rwlock_unlock, (pthread_rwlock_t *))                        \
    X(int, pthread_rwlock_destroy, (pthread_rwlock_t *))                       \
    X(int, pthread_create,                                                     \
      (pthread_t *, const pthread_attr_t *, void *(*)(void *), void *))        \
    X(int, pthread_cond_wait, (pthread_cond_t *, pthread_mutex_t *))           \
    X(int, pthread_cond_timedwait,                                             \
      (pthread_cond_t *, pthread_mutex_t *, const struct timespec *))          \
    X(int, pthread_cond_clockwait,                                             \
      (pthread_cond_t *, pthread_mutex_t *, clockid_t,                         \
       const struct timespec *))                                               \
    X(int, sem_wait, (sem_t *))                                                \
    X(int, sem_trywait, (sem_t *))                                             \
    X(int, sem_timedwait, (sem_t *, const struct timespec *))                  \
    X(int, sem_clockwait, (sem_t *, clockid_t, const struct timespec *))       \
    X(int, sem_post, (sem_t *))                                                \
    X(int, sem_destroy, (sem_t *))                                             \
    X(int, sem_close, (sem_t *))                                               \
    X(int, munmap, (void *, size_t))                                           \
    X(void *, mremap, (void *, size_t, size_t, int, ...))                      \
    X(int, dlclose, (void *))                                                  \
    X(pid_t, fork, (void))                                                     \
    X(void, _exit, (int))                                                      \
    X(pid_t, _Fork, (void))                                                    \
    X(int, __register_atfork,                                                  \
      (void (*)(void), void (*)(void), void (*)(void), void *))                \
    X(int, execve, (const char *, char *const[], char *const[]))               \
    X(int, execvpe, (const char *, char *const[], char *const[]))              \
    X(int, fexecve, (int, char *const[], char *const[]))                       \
    X(int, execveat, (int, const char *, char *const[], char *const[], int))   \
    X(int, posix_spawn,                                                        \
      (pid_t *, const char *, const posix_spawn_file_actions_t *,              \
       const posix_spawnattr_t *, char *const[], char *const[]))               \
    X(int, posix_spawnp,                                                       \
      (pid_t *, const char *, const posix_spawn_file_actions_t *,              \
       const posix_spawnattr_t *, char *const[], char *const[]))               \
    X(FILE *, popen, (const char *, const char *))                             \
    X(int, system, (const char *))                                             \
    X(void *, malloc, (size_t))                                                \
    X(void *, calloc, (size_t, size_t))                                        \
    X(void *, realloc, (void *, size_t))                                       \
    X(void, free, (void *))                                                    \
    X(int, vprintf, (const char *, va_list))                                   \
    X(int, vfprintf, (FILE *, const char *, va_list))                          \
    X(int, puts, (const char *))                                               \
    X(int, fputs, (const char *, FILE *))                                      \
    X(size_t, fwrite, (const void *, size_t, size_t, FILE *))                  \
    X(int, fflush, (FILE *))

#define FORKSAFE_REAL_DECLARE(ret, name, params)                               \
    extern ret(*forksafe__real_##name) params;
FORKSAFE_REAL_LIST(FORKSAFE_REAL_DECLARE)
#undef FORKSAFE_REAL_DECLARE

/* Nonzero while dlsym runs (allocations then go straight to glibc), and
   while the library itself calls the program's libraries (hooks then only
   forward). */
extern TLS int forksafe__in_resolve;
extern TLS int forksafe__in_hook;

/* dlsym(RTLD_NEXT, name) with forksafe__in_resolve set around it. Returns
   NULL if there is no next definition. */
void *forksafe__resolve(const char *name);
/* Resolve, from the constructor, the functions that may first be needed
   where dlsym must not run (signal handlers, vfork and forked children). */
void forksafe__resolve_early(void);

/* The real function, resolved on first use if a hook runs before the
   constructor (another library's constructor). */
#define REAL(fn)                                                               \
    (__extension__({                                                           \
        __typeof__(forksafe__real_##fn) real_ = LOAD(&forksafe__real_##fn);    \
        if (UNLIKELY(!real_)) {                                                \
            real_ = (__typeof__(real_))forksafe__resolve(#fn);                 \
            STORE(&forksafe__real_##fn, real_);                                \
        }                                                                      \
        real_;                                                                 \
    }))

/* ------------------------------------------------------------ threads */

enum { KIND_MUTEX = 1, KIND_RWLOCK = 2, KIND_SEMAPHORE = 3 };
/* Or'ed into the kind passed to the lock hooks' bookkeeping by a try
   acquire (trylock, sem_trywait), which never waits: it notes no order
   pair, since a thread that cannot wait cannot take part in a deadlock.
   Never stored. */
#define KIND_TRY  0x10
#define KIND_MASK 0x0f

static inline const char *kind_name(int kind)
{
    return kind == KIND_RWLOCK      ? "rwlock"
           : kind == KIND_SEMAPHORE ? "semaphore"
                                    : "mutex";
}

#define MAX_THREADS 1024
/* A thread's held stack: the first MAX_HELD entries live in its record
   (all forksafe-run uses: its own push stops there); the audit's lock
   path maps HELD_MORE more for a slot the first time one of its threads
   holds more (thread_rec.more). Past HELD_CAP in all, pushes are counted
   in thread_rec.dropped, not recorded. */
#define MAX_HELD    16
#define HELD_CAP    1024
#define HELD_MORE   (HELD_CAP - MAX_HELD)
#define SEEN_CACHE  4

struct held {
    void *lock;
    void *site;
    unsigned char kind;  /* KIND_* */
    unsigned char tried; /* taken with a try acquire (KIND_TRY) */
    /* Times the owner took the lock again while it was this entry, on top
       of its stack, beyond the first (a recursive mutex, a read lock): a
       release takes one off before the entry is popped. Never for a
       semaphore, one of whose units another thread may post. */
    unsigned depth;
};

/* One per live thread that has used a hook. Other threads read `tid`,
   `start` and the held stack at fork time: best effort, never waited for.
   Only the owning thread pushes and pops its held stack; another thread
   may only swap an entry's lock for NULL (a semaphore it posted, memory
   that went away), which readers skip. Entries [MAX_HELD, nheld) are in
   `more`, which once published (release) stays the slot's for good: a
   reader loads nheld, then `more`, and reads no entry past MAX_HELD when
   `more` is NULL nor past HELD_CAP (held_entry()). Growing copies no
   entry (the first MAX_HELD stay in the record), so it races no reader
   nor another thread's swap for NULL; a release out of order shifts the
   entries above down one, across the two parts too, and a swap made
   meanwhile may be lost (the entry stays: best effort, as ever). Records
   are cache-line aligned:
   the owner writes its held stack on every lock call, and a neighbour's
   record sharing the line would make two threads on two cores fight over
   it (false sharing) on every uncontended lock. */
struct __attribute__((aligned(64))) thread_rec {
    int tid;        /* 0: free slot */
    unsigned ident; /* unique per claim, survives fork in the child */
    void *start;    /* start routine, when the thread came from
                       pthread_create after the library was loaded */
    int nheld;        /* entries on the held stack, at most HELD_CAP */
    unsigned dropped; /* pushes past HELD_CAP, not recorded; releases of
                         locks not on the stack take them back off */
    struct held held[MAX_HELD];
    struct held *more; /* entries MAX_HELD.. (HELD_MORE of them), or NULL */
    /* Locks whose table entry needs no more writes from this thread (it
       is the first user, or the lock is already shared): the lock path
       skips the table for them. Cleared when a lock is forgotten. */
    struct {
        uintptr_t lock;
        uintptr_t outer, outer0; /* seen under these (innermost, outermost) */
    } seen[SEEN_CACHE];
};

/* Entry i of r's held stack, whose `more` (loaded once by a reader of
   another thread's record) is more; NULL when i is past what more holds. */
static inline struct held *held_entry(struct thread_rec *r, struct held *more,
                                      int i)
{
    if (i < MAX_HELD)
        return i >= 0 ? &r->held[i] : NULL;
    return more && i < HELD_CAP ? &more[i - MAX_HELD] : NULL;
}

/* The thread table. Slots [0, forksafe__threads_hwm) have been used; a
   slot with tid 0 is free. Untouched slots cost no memory. */
extern struct thread_rec forksafe__threads[MAX_THREADS];
extern int forksafe__threads_hwm;
/* This thread's record, or NULL before its first hook. */
extern TLS struct thread_rec *forksafe__self_rec;

/* This thread's record, claimed on first use without locking or
   allocating. Returns NULL when MAX_THREADS threads are live already (the
   thread is then not tracked). */
struct thread_rec *forksafe__self_claim(void);
static inline struct thread_rec *forksafe__self(void)
{
    struct thread_rec *r = forksafe__self_rec;
    return __builtin_expect(r != NULL, 1) ? r : forksafe__self_claim();
}
/* Give a thread's slot back (the thread exited, or did not survive a
   fork). p is a struct thread_rec *. */
void forksafe__thread_release(void *p);
/* Create the key whose destructor gives a thread's slot back at thread
   exit, where the C library's pthread_key_create may take a lock (not
   glibc: there the first slot claimed, or the first pthread_create,
   creates it; threads.c). Called once, from the constructor. */
void forksafe__thread_key_init(void);
/* The record of thread tid, or NULL. */
struct thread_rec *forksafe__thread_by_tid(int tid);
/* In the child of a fork: forget every thread but the caller, whose TID
   changed. Touches only live slots (fork copies every page written). */
void forksafe__threads_after_fork_child(void);

/* ------------------------------------------------------------ lock table */

/* A lock seen by the hooks, keyed by address. Entries live in a dense
   array filled in order (pages are touched only as it fills) and are
   found through an open-addressed index of 32-bit slots; neither is ever
   resized. When a lock goes away (destroyed, closed, unmapped) its entry
   is reset and kept for its address; a shared one is first copied to the
   retired list for the exit report. */
/* The locks each thread held last and first (innermost, outermost) when
   it took a lock (OUTER_BARE: none), as far as the table saw them: a lock
   every user took under a lock a prepare takes, and released before it,
   cannot be held by another thread at the fork. A pair is kept while both
   its locks live: a pair one of whose locks went away since it was last
   noted (its entry reset, or born again after the pair's stamp) is over,
   and its slot is taken by the next new pair. OUTER_MAX bounds the pairs
   alive at once, not those seen over the run. */
#define OUTER_MAX  16
#define OUTER_BARE ((uintptr_t)1)

struct lock_ent {
    uintptr_t addr;
    void *site1, *site2; /* acquire sites of the first and second user */
    unsigned owner;      /* ident of the first thread to use it (0: none) */
    int tid1, tid2;
    unsigned char kind;
    unsigned char shared; /* used by a second thread */
    unsigned char mixed;  /* under more than OUTER_MAX live pairs, or kept
                             past one */
    int mixed_tid;        /* ... first seen by this thread */
    unsigned born;        /* birth stamp of the lock now at addr (its first
                             use since the entry was made or reset) */
    uintptr_t outer[OUTER_MAX];  /* distinct innermost locks held (0: free) */
    uintptr_t outer0[OUTER_MAX]; /* with the outermost one (0: not yet) */
    int outer_tid[OUTER_MAX];    /* the thread that added each */
    unsigned outer_stamp[OUTER_MAX]; /* birth counter when last noted
                                        (0: unknown) */
};

#define LOCK_MAX    32768
#define RETIRED_MAX 128

/* Note that thread r acquired lock at site, holding outer as the last
   lock it took before and outer0 as the first (OUTER_BARE: none).
   Lock-free; writes the entry only the first time the lock is seen, the
   first time a second thread uses it and the first time it is taken under
   each outer lock. */
void forksafe__lock_note(void *lock, int kind, void *site, struct thread_rec *r,
                         uintptr_t outer, uintptr_t outer0);
/* 1 if the lock a pair noted at stamp names (an outer lock) went away
   since: its entry is gone or reset, or the lock now at that address was
   born after stamp (stamp 0: unknown, never gone by birth). Lock-free. */
int forksafe__lock_gone_since(uintptr_t lock, unsigned stamp);
/* lock stays held after the lock its thread held right before taking it
   was released (an unlock out of order, a condition wait on that lock):
   taking it under that lock covers nothing. Marks its entry mixed (as
   thread tid). Lock-free. */
void forksafe__lock_unnest(void *lock, int tid);
/* The entry of the lock at lock, or NULL if the table has none (never
   used, forgotten and not used since, or not tracked). Never inserts;
   lock-free and safe wherever the other table functions are. */
struct lock_ent *forksafe__lock_lookup(const void *lock);
/* Entries in use: forksafe__lock_at(i) for i < forksafe__lock_count(). */
size_t forksafe__lock_count(void);
struct lock_ent *forksafe__lock_at(size_t i);
/* Locks not tracked because the table was full. */
long forksafe__lock_untracked(void);
/* Shared locks that went away during the run (copies), for the report;
 *n may exceed RETIRED_MAX (the rest were dropped). */
const struct lock_ent *forksafe__lock_retired(int *n);
/* The lock at lock (lo == hi) or every lock in [lo, hi) goes away: its
   entry is reset (copied to the retired list when shared), and it is
   dropped from every thread's held stack and seen cache, so that nothing
   later reads its memory. */
void forksafe__lock_forget(uintptr_t lo, uintptr_t hi);
/* 1 if some tracked lock may lie in [lo, hi): a cheap filter (a bitmap of
   2 MiB regions that ever held a lock). */
int forksafe__lock_maybe_in(uintptr_t lo, uintptr_t hi);

/* "b was taken while a was held", first seen at these sites. */
struct edge {
    void *a, *b;
    void *site_a, *site_b;
    int tid;
};

#define EDGE_MAX 4096

void forksafe__edge_note(const struct held *outer, void *b, void *site,
                         struct thread_rec *r);
size_t forksafe__edge_count(void);
/* NULL while the entry is being filled in. */
const struct edge *forksafe__edge_at(size_t i);

/* ------------------------------------------------------------ memory */

/* Copy n bytes of the program's memory at src into dst without faulting
   if src is not mapped or not readable (process_vm_readv on ourselves).
   Returns 0, or -1 (nothing usable in dst). */
int forksafe__mem_read(void *dst, const void *src, size_t n);
/* The value of semaphore s, read fault-safe; -1 if it cannot be read. */
int forksafe__sem_value(const sem_t *s);
/* Whether the lock at lock (kind: KIND_*) is process-shared, read
   fault-safe from a copy: 1 if it is, 0 if not, -1 if it cannot be read or
   the platform layer cannot tell. For a semaphore, *value (may be NULL)
   receives its value, -1 when unknown. */
int forksafe__lock_pshared_copy(const void *lock, int kind, int *value);
/* Bytes pending in f's output buffer, read fault-safe (0 if unknown). */
size_t forksafe__file_pending(FILE *f);
/* Facts about a lock the program itself is about to use, from the platform
   layer (src/platform/platform.h): 1 if the mutex or semaphore is
   process-shared, 0 if not, -1 if the layer cannot tell; the TID recorded
   as the mutex's holder, 0 if none is. forksafe__platform_init() picks the
   layer (from the constructor; the first query does it otherwise). */
void forksafe__platform_init(void);
int forksafe__mutex_pshared(const pthread_mutex_t *m);
/* 1 if the mutex has the priority-inheritance protocol
   (PTHREAD_PRIO_INHERIT: the kernel tracks its holder by TID), 0 if not,
   -1 if the layer cannot tell. */
int forksafe__mutex_pi(const pthread_mutex_t *m);
long forksafe__mutex_owner(const pthread_mutex_t *m);
int forksafe__sem_pshared(const sem_t *s);

/* ------------------------------------------------------------ exec */

/* Environment variables to keep in every descendant, recorded by the
   library's constructor before main: names (NULL-terminated) whose
   current values are copied, the basename of the library's own file (its
   entry in LD_PRELOAD is kept), and the name of the marker variable the
   exec hooks add to say what they put back. Returns 0, or -1 when the
   library's entry is not in LD_PRELOAD (descendants are then left alone). */
int forksafe__exec_keep_init(const char *const *names, const char *self_base,
                             const char *marker);
/* In a new program's constructor: remove from the environment what an
   exec hook of the parent put back (named by the marker variable), so
   the program sees the environment its parent gave it. */
void forksafe__exec_unkeep(void);

/* ------------------------------------------------------------ policy */

/* Defined by each preload library. */

/* Set nonzero by the library to make the lock hooks call
   forksafe__policy_acquire() before acquiring (the audit: in a child of a
   multi-threaded fork). */
extern int forksafe__policy_slow;
/* A blocking acquire of lock (op: FORKSAFE_OP_*) from site, while
   forksafe__policy_slow is set. Returns the result to give the caller
   (the lock was acquired, or an error), or FORKSAFE_POLICY_PASS to do the
   real call as usual. Not -1: that is sem_wait's own failure (EINTR when
   a signal handler ran), which must reach the caller, not turn into a
   second, unguarded wait. */
#define FORKSAFE_POLICY_PASS (-0x7ffffff0)
enum {
    FORKSAFE_OP_MUTEX_LOCK = 1, /* pthread_mutex_lock */
    FORKSAFE_OP_SEM_WAIT = 2,   /* sem_wait */
    FORKSAFE_OP_RDLOCK = 3,     /* pthread_rwlock_rdlock */
    FORKSAFE_OP_WRLOCK = 4      /* pthread_rwlock_wrlock */
};
/* A library must return FORKSAFE_POLICY_PASS for an op it does not know
   (ops may be added). */
int forksafe__policy_acquire(void *lock, int op, void *site);
/* pthread_create() is starting a thread while forksafe__policy_slow is
   set. */
void forksafe__policy_thread_created(void);
/* An exec or spawn through `via` will start a program (path) that cannot
   load the library, for reason (an execcheck.h FORKSAFE_EXEC_* value).
   pid is the process that will run it (0 when not known yet). */
void forksafe__policy_unloadable(const char *path, int reason, const char *via,
                                 long pid);
/* The exec announced by forksafe__policy_unloadable failed: forget it. */
void forksafe__policy_exec_failed(void);

/* Optional: the core has weak definitions of these that do nothing (return
   FORKSAFE_POLICY_PASS), so a library defines only those it needs. */

/* After every successful acquire of a tracked lock (any mutex, rwlock or
   semaphore call that takes it, and the re-acquire that ends a condition
   wait), once it is on the caller's held stack, while forksafe__policy_slow
   is set. kind: KIND_*; fn: the function called ("pthread_mutex_lock",
   "sem_trywait", ...). */
void forksafe__policy_acquired(void *lock, int kind, const char *fn,
                               void *site);
/* A pthread_cond_wait(c, m) from site while forksafe__policy_slow is set
   (the timed and clock waits are not offered: they end by themselves).
   m is held by the caller on entry and must be held again on return.
   Returns the result to give the caller, or FORKSAFE_POLICY_PASS to do the
   real wait. */
int forksafe__policy_cond_wait(pthread_cond_t *c, pthread_mutex_t *m,
                               void *site);
/* The memory [lo, hi) of an unloaded object is gone (dlclose): forget
   pointers into it. */
void forksafe__policy_unloaded(uintptr_t lo, uintptr_t hi);

#pragma GCC visibility pop

#endif
