/* SPDX-License-Identifier: MIT */
/*
 * adapters/sqlite/sqlite.c: the SQLite adapter. It registers the mutexes
 * of tracked connections and SQLite's static mutexes with the core, so
 * that no thread is inside SQLite on them at the fork, and fences off the
 * tracked connections in the child with a denying authorizer and an
 * interrupting progress handler.
 *
 * DESIGN. A held recursive mutex cannot be unlocked in the child with
 * pthread_mutex_unlock() on glibc (EPERM: the owner is the parent's TID);
 * the core's mutex entries know how to hand such a mutex over. So each
 * SQLite mutex is its own core entry, at a rank that fixes the order, and
 * the adapter's single callback entry, ranked before them, only guards the
 * connection list and fences the connections once the mutexes are usable
 * again. All public functions serialise on s_api_mu, which no fork
 * callback takes, so registration calls may be made while holding it;
 * s_list_mu, which prepare takes, is never held across a registration.
 */
#include <forksafe/sqlite.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct conn {
    sqlite3 *db;
    pthread_mutex_t *mutex; /* its connection mutex, or NULL (no mutex) */
};

static pthread_mutex_t s_api_mu = PTHREAD_MUTEX_INITIALIZER;
static bool s_installed;
static char s_key; /* the registry key of the callback entry */

/* SQLite's static mutexes, outer to inner (see the header). */
static const struct {
    int id;
    const char *name;
} k_statics[] = {
    {SQLITE_MUTEX_STATIC_OPEN, "sqlite static mutex OPEN"},
    {SQLITE_MUTEX_STATIC_MAIN, "sqlite static mutex MAIN"},
    {SQLITE_MUTEX_STATIC_VFS1, "sqlite static mutex VFS1"},
    {SQLITE_MUTEX_STATIC_VFS2, "sqlite static mutex VFS2"},
    {SQLITE_MUTEX_STATIC_VFS3, "sqlite static mutex VFS3"},
    {SQLITE_MUTEX_STATIC_LRU, "sqlite static mutex LRU"},
    {SQLITE_MUTEX_STATIC_PRNG, "sqlite static mutex PRNG"},
    {SQLITE_MUTEX_STATIC_PMEM, "sqlite static mutex PMEM"},
    {SQLITE_MUTEX_STATIC_MEM, "sqlite static mutex MEM"},
};
#define N_STATICS (sizeof k_statics / sizeof k_statics[0])
static pthread_mutex_t *s_statics[N_STATICS]; /* registered ones, or NULL */

static pthread_mutex_t s_list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct conn *s_conns; /* tracked connections, in tracking order */
static size_t s_n, s_cap;

/* The pthread mutex inside an SQLite mutex: mutex_unix.c declares
   struct sqlite3_mutex with a pthread_mutex_t as its first member. */
static pthread_mutex_t *pthread_of(sqlite3_mutex *m)
{
    return (pthread_mutex_t *)(void *)m;
}

/* Check that SQLite's mutexes really are pthread mutexes at offset 0, by
   locking through SQLite and looking through pthreads: a fast mutex held
   through sqlite3_mutex_enter() must be busy for pthread_mutex_trylock()
   and free after sqlite3_mutex_leave(). Returns 1 if they are, 0 if not,
   and 1 if SQLite uses no mutexes at all (then nothing is registered). */
static int layout_ok(void)
{
    sqlite3_mutex *f = sqlite3_mutex_alloc(SQLITE_MUTEX_FAST);
    if (f == NULL)
        return sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_MAIN) == NULL;
    int ok = 1;
    sqlite3_mutex_enter(f);
    if (pthread_mutex_trylock(pthread_of(f)) != EBUSY)
        ok = 0;
    sqlite3_mutex_leave(f);
    if (ok) {
        if (pthread_mutex_trylock(pthread_of(f)) == 0)
            pthread_mutex_unlock(pthread_of(f));
        else
            ok = 0;
    }
    sqlite3_mutex_free(f);
    return ok;
}

static int deny_all(void *arg, int action, const char *a, const char *b,
                    const char *c, const char *d)
{
    (void)arg;
    (void)action;
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return SQLITE_DENY;
}

static int interrupt_all(void *arg)
{
    (void)arg;
    return 1;
}

static int sqlite_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    (void)deadline;
    /* Held only briefly by track/untrack, never around a blocking call. */
    pthread_mutex_lock(&s_list_mu);
    return 0;
}

static void sqlite_parent(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&s_list_mu);
}

static void sqlite_child(void *ctx)
{
    (void)ctx;
    /* The connection mutexes were restored by their own entries, which
       rank after this one and so ran first. These calls only store
       pointers and mark prepared statements expired: no file access, no
       allocation. */
    for (size_t i = 0; i < s_n; i++) {
        sqlite3_set_authorizer(s_conns[i].db, deny_all, NULL);
        sqlite3_progress_handler(s_conns[i].db, 1, interrupt_all, NULL);
    }
    /* A normal mutex held by the forking thread: unlock works here. */
    pthread_mutex_unlock(&s_list_mu);
}

static void unregister_statics(void)
{
    for (size_t i = N_STATICS; i-- > 0;) {
        if (s_statics[i] != NULL)
            forksafe_unregister(s_statics[i]);
        s_statics[i] = NULL;
    }
}

/* Install, with s_api_mu held. */
static int install_locked(void)
{
    static const struct forksafe_ops ops = {sqlite_prepare, sqlite_parent,
                                            sqlite_child};
    if (s_installed)
        return 0;
    if (sqlite3_initialize() != SQLITE_OK)
        return ENOMEM;
    if (!layout_ok())
        return ENOTSUP;
    int rc =
        forksafe_register_ops(&s_key, "sqlite", FORKSAFE_SQLITE_RANK, &ops);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < N_STATICS && rc == 0; i++) {
        sqlite3_mutex *m = sqlite3_mutex_alloc(k_statics[i].id);
        if (m == NULL)
            continue;
        rc = forksafe_register_mutex(pthread_of(m), k_statics[i].name,
                                     FORKSAFE_SQLITE_RANK_STATIC + (unsigned)i);
        if (rc == 0)
            s_statics[i] = pthread_of(m);
    }
    if (rc == 0)
        rc = forksafe_register_adapter("sqlite");
    if (rc != 0) {
        unregister_statics();
        forksafe_unregister(&s_key);
        return rc;
    }
    s_installed = true;
    return 0;
}

/* Contract in forksafe/sqlite.h. */
int forksafe_sqlite_install(void)
{
    pthread_mutex_lock(&s_api_mu);
    int rc = install_locked();
    pthread_mutex_unlock(&s_api_mu);
    return rc;
}

/* Contract in forksafe/sqlite.h. Refuses while connections are tracked,
   since their mutexes rank against the static ones. */
int forksafe_sqlite_uninstall(void)
{
    int rc = 0;
    pthread_mutex_lock(&s_api_mu);
    if (!s_installed)
        rc = ENOENT;
    else if (s_n > 0)
        rc = EBUSY;
    else
        rc = forksafe_unregister(&s_key);
    if (rc == 0) {
        unregister_statics();
        s_installed = false;
    }
    pthread_mutex_unlock(&s_api_mu);
    return rc;
}

/* Contract in forksafe/sqlite.h. Registers db's mutex with the core
   before db joins the list, so the child handler never sees a connection
   whose mutex the core did not restore. */
int forksafe_sqlite_track(sqlite3 *db)
{
    if (db == NULL)
        return EINVAL;
    pthread_mutex_lock(&s_api_mu);
    int rc = install_locked();
    for (size_t i = 0; rc == 0 && i < s_n; i++)
        if (s_conns[i].db == db)
            rc = EEXIST;
    if (rc == 0 && s_n == s_cap) {
        size_t cap = s_cap ? 2 * s_cap : 8;
        struct conn *grown = malloc(cap * sizeof *grown);
        if (grown == NULL) {
            rc = ENOMEM;
        } else {
            /* The child handler reads the array: switch to the new one
               under the list lock, and free the old one only after. */
            pthread_mutex_lock(&s_list_mu);
            struct conn *old = s_conns;
            if (s_n > 0)
                memcpy(grown, old, s_n * sizeof *grown);
            s_conns = grown;
            s_cap = cap;
            pthread_mutex_unlock(&s_list_mu);
            free(old);
        }
    }
    sqlite3_mutex *sm = rc == 0 ? sqlite3_db_mutex(db) : NULL;
    pthread_mutex_t *m = sm ? pthread_of(sm) : NULL;
    if (rc == 0 && m != NULL)
        rc = forksafe_register_mutex(m, "sqlite connection mutex",
                                     FORKSAFE_SQLITE_RANK_DB);
    if (rc == 0) {
        pthread_mutex_lock(&s_list_mu);
        s_conns[s_n].db = db;
        s_conns[s_n].mutex = m;
        s_n++;
        pthread_mutex_unlock(&s_list_mu);
    }
    pthread_mutex_unlock(&s_api_mu);
    return rc;
}

/* Contract in forksafe/sqlite.h. The connection itself is not touched. */
int forksafe_sqlite_untrack(sqlite3 *db)
{
    if (db == NULL)
        return EINVAL;
    int rc = ENOENT;
    pthread_mutex_lock(&s_api_mu);
    for (size_t i = 0; i < s_n; i++) {
        if (s_conns[i].db != db)
            continue;
        rc = s_conns[i].mutex ? forksafe_unregister(s_conns[i].mutex) : 0;
        if (rc == 0) {
            pthread_mutex_lock(&s_list_mu);
            for (size_t j = i + 1; j < s_n; j++)
                s_conns[j - 1] = s_conns[j];
            s_n--;
            pthread_mutex_unlock(&s_list_mu);
        }
        break;
    }
    pthread_mutex_unlock(&s_api_mu);
    return rc;
}
