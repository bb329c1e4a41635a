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
    uint16_t owner;       /* index into the owner table */
    unsigned char kind;   /* enum forksafe_kind */
    unsigned char single; /* needs work even when single-threaded */
    char name[];          /* copied at registration */
};

static inline const struct forksafe_ops *
forksafe__entry_ops(const struct forksafe_entry *e)
{
    return (const struct forksafe_ops *)(const void *)e - 1;
}

/* The entries as the fork handlers see them: dense, read-only arrays in
   fork order, rebuilt from the entry list when the registry has changed
   (see registry.c). A fork reads 9 bytes per entry (key and kind) and
   writes nothing there; the entry itself is looked up by key only for
   callback sets and for diagnostics. */
struct forksafe_snapshot {
    const void *const *key;
    const unsigned char *kind;
    const uint32_t *single;         /* slots that need work when alone */
    struct forksafe_exception *exc; /* room for one exception per slot */
    size_t n, n_single;
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
   prepare returns 0 or an errno value and sets *st (enum forksafe_state);
   mt is non-zero when other threads may exist. parent and child get that
   state back; child also gets the child's TID. e is the entry for callback
   sets and NULL for locks. */
struct forksafe_kind_ops {
    const char *name;
    int (*prepare)(const void *key, const struct forksafe_entry *e,
                   unsigned char *st, const struct timespec *deadline, int mt,
                   pid_t self);
    void (*parent)(const void *key, const struct forksafe_entry *e, int st);
    void (*child)(const void *key, const struct forksafe_entry *e, int st,
                  pid_t self);
    /* The TID holding the lock now, 0 if free, -1 if held by an unknown
       thread (no owner recorded). Used only for diagnostics. */
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

/* ---- registry.c ---- */

/* The registry lock. Held from the start of prepare to the end of the parent
   or child handler, so registry changes from other threads wait for a fork.
   forksafe__registry_lock_until() gives up at deadline (ETIMEDOUT). */
void forksafe__registry_lock(void);
int forksafe__registry_lock_until(const struct timespec *deadline);
void forksafe__registry_unlock(void);
/* In the child: make the (held) registry lock free again. */
void forksafe__registry_child_reset(void);

/* First entry in fork order; walk with ->next. Caller holds the registry
   lock. */
struct forksafe_entry *forksafe__registry_first(void);

/* The entry for key, or NULL. Caller holds the registry lock. */
struct forksafe_entry *forksafe__registry_find(const void *key);

/* The fork-order snapshot, rebuilt here if the registry changed since the
   last call. Never allocates: capacity is reserved at registration. Caller
   holds the registry lock. */
void forksafe__registry_snapshot(struct forksafe_snapshot *snap);

/* Drop the entries of objects that were unloaded since the last check.
   Cheap when nothing was unloaded. Caller holds the registry lock. */
void forksafe__registry_sweep(void);

/* The names of registered adapters, NULL-terminated walk: call with i = 0,
   1, ... until it returns NULL. Caller holds the registry lock. */
const char *forksafe__adapter_name(size_t i);

/* Copy the path of the object that registered e into buf ("?" if it is
   not known or no longer loaded). */
void forksafe__entry_object(const struct forksafe_entry *e, char *buf,
                            size_t len);

/* ---- fork.c ---- */

/* The default prepare timeout (FORKSAFE_TIMEOUT_MS or 5000). */
unsigned forksafe__default_timeout_ms(void);

/* How many plain fork() calls had an entry fail in prepare; *text gets the
   last failure's description. Caller holds the registry lock. */
unsigned long forksafe__plain_failures(const char **text);

/* Non-zero while the calling thread is inside the fork handlers (so a
   registry call from a callback must fail with EDEADLK). */
int forksafe__in_fork(void);

/* Record a thread-local error message for forksafe_last_error(). */
void forksafe__set_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* ---- threads.c ---- */

/* Copy thread tid's name (from /proc) into buf; "?" if unknown. */
void forksafe__thread_name(pid_t tid, char *buf, size_t len);
/* Call fn for every live thread of the process. Returns 0 or an errno. */
int forksafe__threads_visit(void (*fn)(pid_t tid, void *arg), void *arg);

/* ---- time ---- */
void forksafe__deadline(struct timespec *ts, unsigned timeout_ms);
int forksafe__expired(const struct timespec *deadline);

#endif
