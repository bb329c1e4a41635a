/* SPDX-License-Identifier: MIT */
/*
 * adapters/common/adapter.h: the internal helper every adapter links
 * statically (libforksafe-adapter-common.a, a convenience archive that is
 * neither installed nor exported). It holds what the adapters would
 * otherwise each write again: install and uninstall, one callback entry
 * whose prepare takes the adapter's list lock (with the fork deadline) and
 * whose parent and child handlers give it back, and arrays of tracked
 * objects guarded by that lock.
 *
 * Locking rules, the same for every adapter:
 *  - a->api serialises install, uninstall and the track/untrack calls. No
 *    fork callback takes it, so registry calls (which wait for a fork in
 *    progress) may be made while it is held. The child handler re-creates
 *    it: only threads that do not exist in the child can have held it.
 *  - a->mu guards the tracked arrays. Prepare takes it, the parent handler
 *    releases it, the child handler re-creates it. Never call the registry
 *    (nor anything that waits for a fork) while holding it.
 *  - A tracked-object array is changed with both held, so code holding
 *    either one may read it; an array the adapter changes from inside the
 *    library's own callbacks (curl's sockets) is changed under a->mu only.
 */
#ifndef FORKSAFE_ADAPTER_COMMON_H
#define FORKSAFE_ADAPTER_COMMON_H

#include <forksafe.h>

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct forksafe__list;

/* What one adapter adds to the common steps; every member may be NULL. */
struct forksafe__adapter_hooks {
    /* Extra install steps (register the library's locks, make objects the
       child handler needs), api held. 0 or an errno value; on error it
       must have undone itself. */
    int (*install)(void);
    /* Undo install(), api held; called after the entry is unregistered. */
    void (*uninstall)(void);
    /* Uninstall refuses (EBUSY) while this array is not empty, or while
       busy() says so. */
    const struct forksafe__list *tracked;
    bool (*busy)(void);
    /* Fork callbacks, each called with mu held by the forking thread.
       prepare returns 0 or an errno value (mu is then released for it). */
    int (*prepare)(const struct timespec *deadline);
    void (*parent)(void);
    void (*child)(void);
};

struct forksafe__adapter {
    const char *name;  /* recorded with forksafe_register_adapter() */
    const char *entry; /* the callback entry's name in reports */
    unsigned rank;     /* the callback entry's rank */
    const struct forksafe__adapter_hooks *hooks;
    pthread_mutex_t api; /* see above */
    pthread_mutex_t mu;  /* see above */
    bool installed;      /* api */
};

#define FORKSAFE__ADAPTER_INIT(name, entry, rank, hooks)                       \
    {                                                                          \
        (name), (entry), (rank), (hooks), PTHREAD_MUTEX_INITIALIZER,           \
            PTHREAD_MUTEX_INITIALIZER, false                                   \
    }

/* Install a: the hooks' install step, the callback entry (key a) and the
   adapter record. Idempotent. 0, or the errno of the step that failed
   (ENOMEM, EDEADLK, or what install() returned); on error nothing
   changed. */
int forksafe__adapter_install(struct forksafe__adapter *a);

/* Undo forksafe__adapter_install(). 0, ENOENT (not installed), EBUSY
   (hooks->busy() said so) or EDEADLK. */
int forksafe__adapter_uninstall(struct forksafe__adapter *a);

/* Start a track call on obj: EINVAL if obj is NULL; EDEADLK if a is
   installed and this is a forksafe callback on the forking thread (the
   fork holds a->mu: forksafe__adapter_refused_in_fork()); else take a->api
   and install a if needed. On 0, a->api is held (release it with
   forksafe__adapter_leave()); on error it is not. */
int forksafe__adapter_enter(struct forksafe__adapter *a, const void *obj);

/* EDEADLK if a is installed and the caller is a forksafe callback on the
   forking thread, whose fork may hold a->mu (and the adapter's own
   registered locks): waiting for them would never end. Else 0. The
   adapter's name was recorded at install; recording it again changes
   nothing, and the core refuses that call in a callback. */
int forksafe__adapter_refused_in_fork(struct forksafe__adapter *a);

/* Take a->api without installing: for an untrack call. */
void forksafe__adapter_enter_plain(struct forksafe__adapter *a);

void forksafe__adapter_leave(struct forksafe__adapter *a);

/* Define the adapter's state, static struct forksafe__adapter ad, and
   its public forksafe_<lib>_install() and _uninstall() (contracts in its
   header) on the helper's; lib also names the adapter record. */
#define FORKSAFE__ADAPTER_DEFINE(lib, entry, rank, hooks)                      \
    static struct forksafe__adapter ad =                                       \
        FORKSAFE__ADAPTER_INIT(#lib, entry, rank, hooks);                      \
    int forksafe_##lib##_install(void)                                         \
    {                                                                          \
        return forksafe__adapter_install(&ad);                                 \
    }                                                                          \
    int forksafe_##lib##_uninstall(void)                                       \
    {                                                                          \
        return forksafe__adapter_uninstall(&ad);                               \
    }

/* Take and release a->mu (the list lock). */
void forksafe__adapter_lock(struct forksafe__adapter *a);
void forksafe__adapter_unlock(struct forksafe__adapter *a);

/* An array of tracked objects of one type, whose first keysize bytes are
   its key. Every call needs the owning adapter's mu (see above). */
struct forksafe__list {
    void *items;
    size_t n, cap;
    size_t size;    /* bytes per element */
    size_t keysize; /* bytes of key at the start of each element */
};

#define FORKSAFE__LIST_INIT(type, keytype)                                     \
    {                                                                          \
        NULL, 0, 0, sizeof(type), sizeof(keytype)                              \
    }

/* The i-th element (i < l->n). */
void *forksafe__list_at(const struct forksafe__list *l, size_t i);

/* The index of the element whose key is *key, or l->n. */
size_t forksafe__list_find(const struct forksafe__list *l, const void *key);

/* Make room for one more element. 0 or ENOMEM. */
int forksafe__list_reserve(struct forksafe__list *l);

/* Append a copy of *item. 0, EEXIST (its key is present) or ENOMEM; on
   error the list is unchanged. */
int forksafe__list_add(struct forksafe__list *l, const void *item);

/* Remove the element whose key is *key, keeping the others' order, and
   copy it to *out (out may be NULL). 0 or ENOENT. */
int forksafe__list_remove(struct forksafe__list *l, const void *key, void *out);

/* The same three under a->mu (for callers holding a->api, per the rules
   above). forksafe__adapter_reserve() makes room for the element whose
   key is *key: 0, EEXIST (already there) or ENOMEM. */
int forksafe__adapter_reserve(struct forksafe__adapter *a,
                              struct forksafe__list *l, const void *key);
int forksafe__adapter_add(struct forksafe__adapter *a, struct forksafe__list *l,
                          const void *item);
int forksafe__adapter_remove(struct forksafe__adapter *a,
                             struct forksafe__list *l, const void *key,
                             void *out);

#endif /* FORKSAFE_ADAPTER_COMMON_H */
