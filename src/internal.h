/* SPDX-License-Identifier: MIT */
/*
 * internal.h: the types and functions that the parts of libforksafe share.
 * Nothing here is exported; the public API is include/forksafe.h.
 */
#ifndef FORKSAFE_INTERNAL_H
#define FORKSAFE_INTERNAL_H

#include "forksafe.h"

#include <stdint.h>
#include <sys/types.h>

#ifdef FORKSAFE_DEBUG
#define FORKSAFE_ASSERT(x)                                                     \
    ((x) ? (void)0 : forksafe__assert_fail(#x, __FILE__, __LINE__))
void forksafe__assert_fail(const char *what, const char *file, int line);
#else
#define FORKSAFE_ASSERT(x) ((void)0)
#endif

/* Entry kinds; each has one row in forksafe__kinds (locks.c). */
enum forksafe_kind {
    FS_KIND_MUTEX,
    FS_KIND_RWLOCK,
    FS_KIND_SPINLOCK,
    FS_KIND_OPS,
    FS_KIND_COUNT
};

/* What prepare did to a slot during the current fork; read by the parent
   and child handlers. Written only before the fork, so the parent and child
   handlers never dirty a page for it (docs/design.md, "Every fork"). */
enum forksafe_state {
    FS_ST_IDLE,  /* nothing taken: single-threaded and free, or not visited */
    FS_ST_TAKEN, /* prepare acquired it: release in parent, restore in child */
    FS_ST_SELF,  /* held by the forking thread before the fork: keep held */
    FS_ST_FAILED /* prepare failed under plain fork(): skip its callbacks */
};

/* One registered lock or callback set. Kept small on purpose: every byte
   the registry keeps resident is copied into each child's page tables by
   fork() (about 0.2 us per 4 KiB page here), so at 16,384 entries the
   entry size shows up directly in the cost of a fork. For a callback set,
   its struct forksafe_ops sits just before the entry in the same block. */
struct forksafe_entry {
    const void *key;              /* lock address or callback ctx */
    struct forksafe_entry *hnext; /* hash chain */
    struct forksafe_entry *prev;  /* fork order: ascending (rank, seq) */
    struct forksafe_entry *next;
    unsigned rank;
    uint32_t seq;         /* registration sequence number */
    uint16_t owner;       /* index into the owner table: who registered */
    uint16_t home;        /* the object holding the key, or UINT16_MAX */
    unsigned char kind;   /* enum forksafe_kind */
    unsigned char single; /* needs work even when single-threaded */
    unsigned char shared; /* in MAP_SHARED memory: never touched at fork */
    unsigned char slot;   /* its slot kind (FS_SLOT_MUTEX_FAST or kind) */
    unsigned char cls;    /* its block's size class (registry.c arena) */
    char name[];          /* copied at registration */
};

static inline const struct forksafe_ops *
forksafe__entry_ops(const struct forksafe_entry *e)
{
    return (const struct forksafe_ops *)(const void *)e - 1;
}

/* A raw pthread_atfork() triple captured from another object (fork.c's
   __register_atfork): run by forksafe's prepare, parent and child walks so
   that every handler has one place in one order on every fork path. */
struct forksafe_raw {
    void (*prepare)(void);
    void (*parent)(void);
    void (*child)(void);
};

/* The slot kind byte: enum forksafe_kind, or FS_SLOT_MUTEX_FAST for a
   mutex that prepare may simply trylock and the parent unlock (normal,
   adaptive or errorcheck, and not robust, PI or PP: a trylock by its own
   holder fails with EBUSY, which sends it the full way), plus this bit on
   the first slot of each rank (a rank's slots are contiguous: its locks,
   then its callback sets, each in registration order). */
#define FS_SLOT_MUTEX_FAST FS_KIND_COUNT
#define FS_SLOT_FIRST      0x80u
#define FS_SLOT_KIND       0x7fu

/* The entries as the fork handlers see them: dense, read-only arrays in
   fork order, rebuilt from the entry list when the registry has changed
   (see registry.c). A fork reads 9 bytes per entry (key and kind) and
   writes nothing there; the entry itself is looked up by key only for
   callback sets and for diagnostics. Captured raw handlers come in two
   lists, in registration order: outer ones prepare before every entry,
   inner ones (the process's allocator) after every entry. */
struct forksafe_snapshot {
    const void *const *key;
    const unsigned char *kind;      /* enum forksafe_kind | FS_SLOT_FIRST */
    const uint32_t *single;         /* slots that need work when alone */
    struct forksafe_exception *exc; /* room for one exception per slot */
    const struct forksafe_raw *outer, *inner;
    size_t n, n_single, n_ops, n_outer, n_inner;
};

/* A slot whose prepare outcome differs from the fork's default (TAKEN when
   multi-threaded, IDLE when not). Only these are written per fork: a state
   byte per slot would dirty one page per 4,096 slots, and every such page
   costs a write-protect fault after each fork (docs/design.md). */
struct forksafe_exception {
    uint32_t idx;
    unsigned char state;
};

/* Per-kind operations: SQLite's sqlite3_mutex_methods idea, one table row
   per lock kind. All run with the registry lock held by the forking thread.
   e is the entry for callback sets and NULL for locks; mt is non-zero when
   other threads may exist; self is the caller's TID.

   try_take takes the lock without waiting: 0 with *st set (TAKEN, SELF:
   the forking thread holds it, IDLE: nothing to do), EBUSY (another thread
   holds it), or another errno. For callback sets it runs prepare(ctx,
   deadline), whose errno is final. wait (locks only) waits for the lock
   until the absolute CLOCK_MONOTONIC time until and takes it: 0 (*st
   TAKEN), ETIMEDOUT, or another errno. Splitting the two lets fork.c take
   one rank's locks as a set (std::lock style). parent and child get the
   state back; child also gets the child's TID. */
struct forksafe_kind_ops {
    const char *name;
    int (*try_take)(const void *key, const struct forksafe_entry *e,
                    unsigned char *st, const struct timespec *deadline, int mt,
                    pid_t self);
    int (*wait)(const void *key, unsigned char *st,
                const struct timespec *until);
    void (*parent)(const void *key, const struct forksafe_entry *e, int st);
    void (*child)(const void *key, const struct forksafe_entry *e, int st,
                  pid_t self);
    /* The TID holding the lock now, 0 if free, -1 if held by an unknown
       thread (no owner recorded). Used for diagnostics, and to see whether
       a busy lock's holder is itself waiting to fork. */
    pid_t (*holder)(const void *key);
    /* A short description of the lock's type for reports ("recursive"). */
    const char *(*detail)(const void *key);
    /* Whether a lock of this kind needs prepare/child work when the process
       is single-threaded (read once, at registration). */
    int (*single)(const void *key);
};

extern const struct forksafe_kind_ops forksafe__kinds[FS_KIND_COUNT];

/* Forget what the kinds learned during the previous fork (locks.c). Caller
   holds the registry lock. */
void forksafe__kinds_reset(void);

/* The slot kind for a lock of this kind (read once, at registration). */
unsigned char forksafe__lock_slot_kind(enum forksafe_kind kind,
                                       const void *key);

/* Whether the lock key of this kind may be process-shared: initialised
   with PTHREAD_PROCESS_SHARED, or of a kind that does not record it
   (spinlocks). Read once, at registration (locks.c). */
int forksafe__lock_pshared(enum forksafe_kind kind, const void *key);

/* ---- the fork page (registry.c) ----

   Everything a fork writes in the parent after prepare, and the registry
   lock itself, lives in one page mapped with MADV_WIPEONFORK (Linux 4.14):
   fork() does not write-protect it in the parent (no copy-on-write fault
   there, ever), and the child gets it zero-filled: the lock free, no
   owner, no waiters, which is the right state for a process with one
   thread. Without MADV_WIPEONFORK it is an ordinary static page (wiped ==
   0) and the child handler resets it. */
#define FS_WAITERS 32
struct forksafe_fork_page {
    pthread_mutex_t lock;      /* the registry lock, also the fork lock */
    pthread_t owner;           /* the thread holding lock for a fork, or 0 */
    unsigned long seq;         /* forks finished by a parent handler */
    int by_wrapper;            /* the owner is in forksafe_fork() */
    pid_t waiters[FS_WAITERS]; /* TIDs blocked on lock; 0: a free slot */
};
extern struct forksafe_fork_page *forksafe__fp;
extern int forksafe__fp_wiped;

/* Map the fork page and reserve room for the first owner objects; called
   once from the constructor. */
void forksafe__registry_init(void);
/* In the child, when the page is not wiped: reset it to all-free. */
void forksafe__fork_page_child_reset(void);

/* Why the platform layer refused the lock whose prepare just failed (a
   phrase for forksafe_last_error), or NULL (locks.c). */
const char *forksafe__kinds_refusal(void);

/* ---- registry.c ---- */

/* The registry lock. Held from the start of prepare to the end of the parent
   or child handler, so registry changes from other threads wait for a fork.
   A thread that has to wait for it records its TID in the fork page while
   it waits, so that a fork waiting for a lock that thread holds can let it
   go first (fork.c). forksafe__registry_lock_until() gives up at deadline
   (ETIMEDOUT). */
void forksafe__registry_lock(void);
int forksafe__registry_lock_until(const struct timespec *deadline);
void forksafe__registry_unlock(void);
/* Whether thread tid is waiting for the registry lock now. */
int forksafe__registry_is_waiter(pid_t tid);
/* One thread waiting for the registry lock now, or 0. */
pid_t forksafe__registry_a_waiter(void);
/* Return once tid no longer waits for the registry lock (it got it, or
   gave up), or at deadline. Caller does not hold the lock. */
void forksafe__registry_wait_for(pid_t tid, const struct timespec *deadline);

/* Record a raw pthread_atfork() triple registered by the object that dso
   (its __dso_handle, may be NULL) or its code belongs to. inner: it is
   the process's allocator (runs after every entry). Returns 0, ENOSPC
   (the fixed table is full) or ENOMEM; then the caller leaves it to the
   C library. Never allocates when the table has room for its owner. */
int forksafe__registry_capture_atfork(const struct forksafe_raw *h,
                                      const void *dso, int inner);

/* First entry in fork order; walk with ->next. Caller holds the registry
   lock. */
struct forksafe_entry *forksafe__registry_first(void);

/* The entry for key, or NULL. Caller holds the registry lock. */
struct forksafe_entry *forksafe__registry_find(const void *key);

/* The fork-order snapshot, rebuilt here if the registry changed since the
   last call. Never allocates: capacity is reserved at registration. Caller
   holds the registry lock. */
void forksafe__registry_snapshot(struct forksafe_snapshot *snap);

/* Drop the entries of objects that were unloaded since the last check:
   one lock-free _dl_find_object() per owner object, writing nothing.
   Caller holds the registry lock. */
void forksafe__registry_sweep(void);

/* The names of registered adapters, NULL-terminated walk: call with i = 0,
   1, ... until it returns NULL. Caller holds the registry lock. */
const char *forksafe__adapter_name(size_t i);

/* Copy the path of the object that registered e into buf ("?" if it is
   not known or no longer loaded). */
void forksafe__entry_object(const struct forksafe_entry *e, char *buf,
                            size_t len);

/* ---- peer.c: one registry per process ---- */

/* The entry points one copy of libforksafe offers another (see peer.c).
   abi and size come first and never move. */
struct forksafe_peer_api {
    unsigned abi, size;
    void (*joined)(const char *who);
    void (*init)(void);
    int (*add)(const char *fn, const void *key, const char *name, unsigned rank,
               int kind, const struct forksafe_ops *ops, const void *caller);
    int (*unregister)(const void *key);
    int (*lookup)(const void *key, struct forksafe_info *info);
    int (*register_adapter)(const char *name);
    int (*adapter_installed)(const char *name);
    pid_t (*fork)(const struct forksafe_fork_opts *opts);
    const char *(*last_error)(void);
    int (*audit_write)(int fd, unsigned flags);
    int (*capture_atfork)(const struct forksafe_raw *h, const void *dso,
                          int inner);
    void (*object_unloaded)(void *dso);
};

/* The copy this one forwards every public call to, or NULL if this copy
   keeps the registry. Set once, by the constructor. */
extern const struct forksafe_peer_api *forksafe__peer;
/* Another copy with an incompatible interface was loaded first: this one
   refuses registrations. */
extern int forksafe__peer_refused;
/* Find the other copies and decide (the constructor calls it first). */
void forksafe__peer_elect(void);
/* ENOTSUP from fn, with the reason in forksafe_last_error(). */
int forksafe__peer_refuse(const char *fn);
/* For the report: what the copies decided, "" with one copy. */
const char *forksafe__peer_text(void);

/* Forward the enclosing public call to the copy that keeps the registry. */
#define FORKSAFE_FORWARD(call)                                                 \
    do {                                                                       \
        const struct forksafe_peer_api *fs_p_ =                                \
            __atomic_load_n(&forksafe__peer, __ATOMIC_ACQUIRE);                \
        if (__builtin_expect(fs_p_ != NULL, 0))                                \
            return fs_p_->call;                                                \
    } while (0)

/* registry.c: register an entry; caller is the return address the public
   function saw. The same for every kind. */
int forksafe__add(const char *fn, const void *key, const char *name,
                  unsigned rank, int kind, const struct forksafe_ops *ops,
                  const void *caller);
/* registry.c: object dso (a __dso_handle) is being unloaded: drop its
   entries and captured handlers (__cxa_finalize). */
void forksafe__object_unloaded(void *dso);

/* fork.c: install the fork handlers (once; the constructor, or a copy that
   forwards to this one). */
void forksafe__init(void);
/* fork.c: capture a raw handler, if this copy captures now; 0 or an errno
   (then the caller leaves it to the C library). */
int forksafe__capture_atfork(const struct forksafe_raw *h, const void *dso,
                             int inner);

/* ---- fork.c ---- */

/* The default prepare timeout (FORKSAFE_TIMEOUT_MS or 5000). */
unsigned forksafe__default_timeout_ms(void);

/* How many plain fork() calls had an entry fail in prepare; *text gets the
   last failure's description. Caller holds the registry lock. */
unsigned long forksafe__plain_failures(const char **text);

/* Non-zero while the calling thread is inside the fork handlers (so a
   registry call from a callback must fail with EDEADLK). */
static inline int forksafe__in_fork(void)
{
    return __atomic_load_n(&forksafe__fp->owner, __ATOMIC_RELAXED) ==
           pthread_self();
}

/* Record a thread-local error message for forksafe_last_error(). */
void forksafe__set_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* ---- threads.c ---- */

/* The threads of this process that have not begun to exit (a thread
   pthread_join() has returned for is not one), counted up to max (the
   first max found), or -errno: -ENOENT without /proc, -EMFILE or -ENFILE
   with no descriptor free. forksafe_thread_count() is this with no
   limit. Reads /proc: a slow path only. */
int forksafe__threads_alive(int max);

/* 1 if addr lies in a MAP_SHARED mapping (from /proc/self/maps), 0 if
   not or if that cannot be read. Reads the file: registration time only. */
int forksafe__in_shared_mapping(const void *addr);

/* What thread tid of this process is doing now (from /proc, so only on a
   slow path): on a CPU or preempted outside any system call
   (FS_TS_RUNNING), sleeping for a set time (FS_TS_SLEEPING: it goes on by
   itself), in a futex call whose first argument, the futex word's
   address, is stored in *addr (FS_TS_FUTEX: waiting for a lock or a
   condition, most likely), in another system call (FS_TS_OTHER), or not
   known (FS_TS_UNKNOWN: no /proc, or the thread is gone). */
enum { FS_TS_UNKNOWN, FS_TS_RUNNING, FS_TS_SLEEPING, FS_TS_FUTEX, FS_TS_OTHER };
int forksafe__thread_activity(pid_t tid, uintptr_t *addr);

/* Copy thread tid's name (from /proc) into buf; "?" if unknown. */
void forksafe__thread_name(pid_t tid, char *buf, size_t len);
/* Call fn for every thread of the process that has not begun to exit (one
   joined a moment ago may still be listed by /proc). Returns 0 or an
   errno. */
int forksafe__threads_visit(void (*fn)(pid_t tid, void *arg), void *arg);

/* ---- time ---- */
void forksafe__deadline(struct timespec *ts, unsigned timeout_ms);
int forksafe__expired(const struct timespec *deadline);

#endif
