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
#define FORKSAFE_ASSERT(x) ((x) ? (void)0 : forksafe__assert_fail(#x, __FILE__, __LINE__))
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

/* What prepare did to an entry during the current fork; read by the parent
   and child handlers. Written only before the fork, so the parent and child
   handlers never dirty the entry's page (see NOTES.md, cost model). */
enum forksafe_state {
    FS_ST_IDLE,    /* nothing taken: single-threaded and free, or not visited */
    FS_ST_TAKEN,   /* prepare acquired it: release in parent, restore in child */
    FS_ST_SELF,    /* held by the forking thread before the fork: keep held */
    FS_ST_FAILED   /* prepare failed under plain fork(): skip its callbacks */
};

struct forksafe_entry {
    const void *key;               /* lock address or callback ctx */
    struct forksafe_entry *hnext;  /* hash chain */
    struct forksafe_entry *prev;   /* fork order: ascending (rank, seq) */
    struct forksafe_entry *next;
    struct forksafe_entry *left;   /* treap over (rank, seq) */
    struct forksafe_entry *right;
    uint32_t prio;                 /* treap heap priority */
    unsigned rank;
    unsigned long seq;
    unsigned char kind;            /* enum forksafe_kind */
    unsigned char state;           /* enum forksafe_state, per fork */
    uintptr_t owner;               /* load address of the owning object */
    struct forksafe_ops ops;       /* FS_KIND_OPS only */
    char name[];                   /* copied at registration */
};

/* Per-kind operations: SQLite's sqlite3_mutex_methods idea, one table row
   per lock kind. All run with the registry lock held by the forking thread.
   prepare returns 0 or an errno value and sets e->state; mt is non-zero
   when other threads may exist. child gets the child's TID. */
struct forksafe_kind_ops {
    const char *name;
    int (*prepare)(struct forksafe_entry *e, const struct timespec *deadline,
                   int mt, pid_t self);
    void (*parent)(struct forksafe_entry *e);
    void (*child)(struct forksafe_entry *e, pid_t self);
    /* The TID holding the lock now, 0 if free, -1 if held by an unknown
       thread (no owner recorded). Used only for diagnostics. */
    pid_t (*holder)(const struct forksafe_entry *e);
    /* A short description of the lock's type for reports ("recursive"). */
    const char *(*detail)(const struct forksafe_entry *e);
};

extern const struct forksafe_kind_ops forksafe__kinds[FS_KIND_COUNT];

/* ---- registry.c ---- */

/* The registry lock. Held from the start of prepare to the end of the parent
   or child handler, so registry changes from other threads wait for a fork.
   forksafe__registry_lock_until() gives up at deadline (ETIMEDOUT). */
void forksafe__registry_lock(void);
int forksafe__registry_lock_until(const struct timespec *deadline);
void forksafe__registry_unlock(void);
/* In the child: make the (held) registry lock free again. */
void forksafe__registry_child_reset(void);

/* First and last entry in fork order; walk with ->next / ->prev. Caller
   holds the registry lock. */
struct forksafe_entry *forksafe__registry_first(void);
struct forksafe_entry *forksafe__registry_last(void);

/* Drop the entries of objects that were unloaded since the last check.
   Cheap when nothing was unloaded. Caller holds the registry lock. */
void forksafe__registry_sweep(void);

/* The names of registered adapters, NULL-terminated walk: call with i = 0,
   1, ... until it returns NULL. Caller holds the registry lock. */
const char *forksafe__adapter_name(size_t i);

/* Copy the path of the object loaded at base (0: the main program) into
   buf. */
void forksafe__object_name(uintptr_t base, char *buf, size_t len);

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
