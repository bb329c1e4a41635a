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
 * SQLite mutex is its own core entry: every connection mutex at one rank,
 * every static mutex at one rank after it. SQLite takes static mutexes
 * while holding a connection mutex and never the reverse (no SQLite call
 * may be made from the one callback it runs under a static mutex, the
 * unlock-notify callback), but it nests the static mutexes in no
 * documented, fixed order (3.40 takes MAIN while holding PRNG,
 * sqlite3_randomness -> sqlite3_vfs_find), nor connections among
 * themselves (a backup enters source, then destination); the core takes
 * the entries of one rank as a set without assuming any order among
 * them. The adapter's callback entry
 * (the common helper's, adapters/common/adapter.h), ranked before them,
 * only guards the connection list and fences the connections once the
 * mutexes are usable again.
 */
#include <forksafe/sqlite.h>

#include "../common/adapter.h"

#include <errno.h>
#include <string.h>

struct conn {
    sqlite3 *db;
    pthread_mutex_t *mutex; /* its connection mutex, or NULL (no mutex) */
};

/* SQLite's static mutexes (their order here means nothing). */
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

/* Held across sqlite3_close() by forksafe_sqlite_close(), registered at
   FORKSAFE_SQLITE_RANK_CLOSE: no fork lands inside a close. */
static pthread_mutex_t s_close_mu = PTHREAD_MUTEX_INITIALIZER;

/* Tracked connections, in tracking order. */
static struct forksafe__list s_conns =
    FORKSAFE__LIST_INIT(struct conn, sqlite3 *);

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

/* The file methods an inherited connection's files get in the child once
   discard_files() has closed them: nothing is read, written or locked
   any more, every access fails with SQLITE_IOERR, and closing succeeds. */
static int dead_close(sqlite3_file *f)
{
    (void)f;
    return SQLITE_OK;
}

static int dead_rw(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    (void)f;
    (void)buf;
    (void)n;
    (void)off;
    return SQLITE_IOERR;
}

static int dead_write(sqlite3_file *f, const void *buf, int n,
                      sqlite3_int64 off)
{
    (void)f;
    (void)buf;
    (void)n;
    (void)off;
    return SQLITE_IOERR;
}

static int dead_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    (void)f;
    (void)size;
    return SQLITE_IOERR;
}

static int dead_int(sqlite3_file *f, int arg)
{
    (void)f;
    (void)arg;
    return SQLITE_IOERR;
}

static int dead_size(sqlite3_file *f, sqlite3_int64 *size)
{
    (void)f;
    *size = 0;
    return SQLITE_IOERR;
}

static int dead_reserved(sqlite3_file *f, int *out)
{
    (void)f;
    *out = 0;
    return SQLITE_IOERR;
}

static int dead_fcntl(sqlite3_file *f, int op, void *arg)
{
    (void)f;
    (void)op;
    (void)arg;
    return SQLITE_NOTFOUND;
}

static int dead_sector(sqlite3_file *f)
{
    (void)f;
    return 512;
}

static int dead_caps(sqlite3_file *f)
{
    (void)f;
    return 0;
}

static int dead_shm_map(sqlite3_file *f, int region, int size, int extend,
                        void volatile **pp)
{
    (void)f;
    (void)region;
    (void)size;
    (void)extend;
    *pp = NULL;
    return SQLITE_IOERR;
}

static int dead_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    (void)f;
    (void)offset;
    (void)n;
    (void)flags;
    return SQLITE_IOERR;
}

static void dead_shm_barrier(sqlite3_file *f)
{
    (void)f;
}

static int dead_shm_unmap(sqlite3_file *f, int del)
{
    (void)f;
    (void)del;
    return SQLITE_OK;
}

static int dead_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    (void)f;
    (void)off;
    (void)n;
    *pp = NULL;
    return SQLITE_OK;
}

static int dead_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    (void)f;
    (void)off;
    (void)p;
    return SQLITE_OK;
}

static const sqlite3_io_methods k_dead = {
    .iVersion = 3,
    .xClose = dead_close,
    .xRead = dead_rw,
    .xWrite = dead_write,
    .xTruncate = dead_truncate,
    .xSync = dead_int,
    .xFileSize = dead_size,
    .xLock = dead_int,
    .xUnlock = dead_int,
    .xCheckReservedLock = dead_reserved,
    .xFileControl = dead_fcntl,
    .xSectorSize = dead_sector,
    .xDeviceCharacteristics = dead_caps,
    .xShmMap = dead_shm_map,
    .xShmLock = dead_shm_lock,
    .xShmBarrier = dead_shm_barrier,
    .xShmUnmap = dead_shm_unmap,
    .xFetch = dead_fetch,
    .xUnfetch = dead_unfetch,
};

/* Close f through its own methods and give it the dead ones. xShmUnmap
   with deleteFlag 0 drops the file's share of the wal-index (the last one
   unmaps it and closes its descriptor, never deleting it); xClose drops
   its share of the VFS's per-file lock bookkeeping. In the child these
   only close descriptors and release locks the child's process never
   held: the parent's locks are its own. */
static void discard_file(sqlite3_file *f, int shm)
{
    if (f == NULL || f->pMethods == NULL || f->pMethods == &k_dead)
        return;
    if (shm && f->pMethods->iVersion >= 2 && f->pMethods->xShmUnmap != NULL)
        f->pMethods->xShmUnmap(f, 0);
    f->pMethods->xClose(f);
    f->pMethods = &k_dead;
}

/* The unix VFS keeps, per process, one record per open file with the
   locks the process holds on it and its wal-index mapping; a connection
   the child opens to a file an inherited connection has open joins that
   record, so it would take no lock of its own and map the parent's
   wal-index without the lock that tells other processes it is there (the
   parent could then truncate and rebuild it under the child: SIGBUS).
   So every file of db's databases that the unix VFS holds is closed here,
   and its record goes with the last inherited share of it. */
static void discard_files(sqlite3 *db)
{
    for (int i = 0;; i++) {
#if SQLITE_VERSION_NUMBER >= 3039000
        const char *name = sqlite3_db_name(db, i);
#else
        const char *name = i == 0 ? "main" : i == 1 ? "temp" : NULL;
#endif
        if (name == NULL)
            break;
        sqlite3_vfs *vfs = NULL;
        sqlite3_file *f = NULL, *j = NULL;
        if (sqlite3_file_control(db, name, SQLITE_FCNTL_VFS_POINTER, &vfs) !=
                SQLITE_OK ||
            vfs == NULL || vfs->zName == NULL ||
            strncmp(vfs->zName, "unix", 4) != 0)
            continue;
        if (sqlite3_file_control(db, name, SQLITE_FCNTL_JOURNAL_POINTER, &j) ==
            SQLITE_OK)
            discard_file(j, 0);
        if (sqlite3_file_control(db, name, SQLITE_FCNTL_FILE_POINTER, &f) ==
            SQLITE_OK)
            discard_file(f, 1);
    }
}

static void sqlite_child(void)
{
    /* The connection mutexes were restored by their own entries, which
       rank after this one and so ran first; so were SQLite's static
       mutexes (the unix VFS's own, VFS1, among them). */
    for (size_t i = 0; i < s_conns.n; i++) {
        struct conn *c = forksafe__list_at(&s_conns, i);
        sqlite3_set_authorizer(c->db, deny_all, NULL);
        sqlite3_progress_handler(c->db, 1, interrupt_all, NULL);
        discard_files(c->db);
    }
}

static void unregister_statics(void)
{
    forksafe_unregister(&s_close_mu);
    for (size_t i = N_STATICS; i-- > 0;) {
        if (s_statics[i] != NULL)
            forksafe_unregister(s_statics[i]);
        s_statics[i] = NULL;
    }
}

/* Check the mutex layout and register SQLite's static mutexes. */
static int sqlite_install(void)
{
    if (sqlite3_initialize() != SQLITE_OK)
        return ENOMEM;
    if (!layout_ok())
        return ENOTSUP;
    int rc = forksafe_register_mutex(&s_close_mu, "sqlite: closing",
                                     FORKSAFE_SQLITE_RANK_CLOSE);
    for (size_t i = 0; i < N_STATICS && rc == 0; i++) {
        sqlite3_mutex *m = sqlite3_mutex_alloc(k_statics[i].id);
        if (m == NULL)
            continue;
        rc = forksafe_register_mutex(pthread_of(m), k_statics[i].name,
                                     FORKSAFE_SQLITE_RANK_STATIC);
        if (rc == 0)
            s_statics[i] = pthread_of(m);
    }
    if (rc != 0)
        unregister_statics();
    return rc;
}

static const struct forksafe__adapter_hooks hooks = {
    .install = sqlite_install,
    .uninstall = unregister_statics,
    .tracked = &s_conns,
    .child = sqlite_child,
};
FORKSAFE__ADAPTER_DEFINE(sqlite, "sqlite", FORKSAFE_SQLITE_RANK, &hooks)

/* Contract in forksafe/sqlite.h. Registers db's mutex with the core
   before db joins the list, so the child handler never sees a connection
   whose mutex the core did not restore. */
int forksafe_sqlite_track(sqlite3 *db)
{
    int rc = forksafe__adapter_enter(&ad, db);
    if (rc != 0)
        return rc;
    rc = forksafe__adapter_reserve(&ad, &s_conns, &db);
    sqlite3_mutex *sm = rc == 0 ? sqlite3_db_mutex(db) : NULL;
    struct conn c = {db, sm ? pthread_of(sm) : NULL};
    if (rc == 0 && c.mutex != NULL)
        rc = forksafe_register_mutex(c.mutex, "sqlite connection mutex",
                                     FORKSAFE_SQLITE_RANK_DB);
    if (rc == 0) {
        forksafe__adapter_add(&ad, &s_conns, &c); /* room reserved, api held */
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Contract in forksafe/sqlite.h. The connection itself is not touched.
   It leaves the list before its mutex is unregistered (the reverse of
   forksafe_sqlite_track()), so the child handler never touches a
   connection whose mutex a fork did not take. */
int forksafe_sqlite_untrack(sqlite3 *db)
{
    if (db == NULL)
        return EINVAL;
    int rc = forksafe__adapter_refused_in_fork(&ad);
    if (rc != 0)
        return rc;
    forksafe__adapter_enter_plain(&ad);
    struct conn c;
    rc = forksafe__adapter_remove(&ad, &s_conns, &db, &c);
    if (rc == 0 && c.mutex != NULL) {
        rc = forksafe_unregister(c.mutex);
        if (rc != 0)
            forksafe__adapter_add(&ad, &s_conns, &c); /* its room is free */
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Contract in forksafe/sqlite.h.

   The close runs under s_close_mu, a registered lock ranked after the
   callback entry (whose prepare takes ad.mu) and before every SQLite
   mutex (sqlite3_close() takes them). A tracked connection is untracked
   under that lock too, so at every fork a connection being closed is
   either still tracked (its mutex registered: prepare takes it, the child
   fences it) or wholly inside the close, whose lock the fork waits for;
   never open, untracked and outside the lock (a fork there found the
   connection's mutex alive and outside every prepare, which
   forksafe-audit reported).

   Why this cannot deadlock. The locks, in the order taken:
     ad.api     no fork callback takes it; it serialises the adapter's
                calls, so no other close or track runs meanwhile.
     ad.mu      taken before s_close_mu, the fork's own order (ranks
                FORKSAFE_SQLITE_RANK < FORKSAFE_SQLITE_RANK_CLOSE), and
                released before anything below waits for a fork; while
                api is held only a fork can hold s_close_mu, and a fork
                takes ad.mu first, so waiting for s_close_mu here waits
                for no one.
     s_close_mu held across forksafe_unregister(), which waits for a fork
                in progress (it holds the registry lock). Such a fork
                either has not reached rank CLOSE yet or waits for
                s_close_mu: it then sees that the lock's holder waits for
                the registry lock and yields (it releases what it took,
                lets this thread have the registry, and starts again; the
                core does this for any registered lock, see
                forksafe_fork() in forksafe.h). It holds nothing else of
                ours: not api, and ad.mu is free again.
   On a refused close (EBUSY) the mutex is registered again under
   s_close_mu (the same registry wait), and the connection rejoins the
   list after s_close_mu is released (ad.mu under s_close_mu would invert
   the fork's order): a fork in between takes its mutex but does not fence
   the child's copy. */
int forksafe_sqlite_close(sqlite3 *db)
{
    if (db == NULL)
        return EINVAL;
    int rc = forksafe__adapter_refused_in_fork(&ad);
    if (rc != 0)
        return rc;
    forksafe__adapter_enter_plain(&ad);
    forksafe__adapter_lock(&ad);
    pthread_mutex_lock(&s_close_mu);
    struct conn c;
    int tracked = forksafe__list_remove(&s_conns, &db, &c) == 0;
    forksafe__adapter_unlock(&ad);
    if (tracked && c.mutex != NULL && (rc = forksafe_unregister(c.mutex))) {
        pthread_mutex_unlock(&s_close_mu);
        forksafe__adapter_add(&ad, &s_conns, &c); /* its room is free */
        forksafe__adapter_leave(&ad);
        return rc;
    }
    int src = sqlite3_close(db);
    if (src != SQLITE_OK && tracked && c.mutex != NULL &&
        forksafe_register_mutex(c.mutex, "sqlite connection mutex",
                                FORKSAFE_SQLITE_RANK_DB) != 0)
        tracked = 0; /* cannot be tracked again: stays open, untracked */
    pthread_mutex_unlock(&s_close_mu);
    if (src != SQLITE_OK && tracked)
        forksafe__adapter_add(&ad, &s_conns, &c); /* its room is free */
    forksafe__adapter_leave(&ad);
    return src == SQLITE_OK ? 0 : EBUSY;
}
