/* SPDX-License-Identifier: MIT */
/*
 * forksafe/sqlite.h: the SQLite adapter (libforksafe-sqlite). It makes
 * fork() happen between SQLite calls, never inside one, on tracked
 * connections, and makes every tracked connection the child inherits
 * refuse all further work, so the child cannot touch the parent's
 * database through it.
 *
 * What SQLite says about fork. "How To Corrupt An SQLite Database File"
 * (sqlite.org/howtocorrupt.html, section 2.6, "Carrying an open database
 * connection across a fork()"): do not open a database connection and
 * then fork(), then try to use that connection in the child; POSIX
 * advisory locks are not inherited while SQLite's own lock bookkeeping
 * is, so the child can corrupt the file. A connection the child needs
 * must be opened in the child. Closing an inherited connection in the
 * child is unsafe too: it can roll back the parent's hot journal and
 * releases locks the child never held.
 *
 * What the adapter does.
 *   prepare: enter the mutex of every tracked connection
 *            (sqlite3_db_mutex()), then SQLite's static mutexes OPEN,
 *            MAIN, VFS1-3, LRU, PRNG, PMEM and MEM: no thread is inside an
 *            API call on a tracked connection, nor in SQLite's allocator,
 *            page-cache or unix-VFS inode lists, so a child can open new
 *            connections. No order is assumed among the connection
 *            mutexes, nor among the static mutexes (see "Ranks").
 *   parent:  leave them.
 *   child:   the core restores those mutexes (they are registered with
 *            forksafe_register_mutex(), which knows how to hand a held
 *            recursive mutex over to the child's thread); then every
 *            tracked connection gets an authorizer that returns
 *            SQLITE_DENY and a progress handler that interrupts every
 *            statement. Setting the authorizer expires the connection's
 *            prepared statements, so statements prepared before the fork
 *            fail too when stepped. Then, for a database on a unix VFS,
 *            its files are closed in the child through SQLite's file
 *            methods (sqlite3_file_control() with
 *            SQLITE_FCNTL_JOURNAL_POINTER and SQLITE_FCNTL_FILE_POINTER:
 *            the journal or WAL file; the database file's share of the
 *            WAL index, unmapped without delete, then the database file)
 *            and given methods that fail every access: nothing is
 *            written or deleted, only the child's descriptors and
 *            mappings go. The unix VFS keeps, per process, one record of
 *            the locks held on each open file and its WAL-index mapping;
 *            the child inherits it but not the locks, and a connection
 *            the child opened to such a file joined that record and took
 *            no lock of its own: the parent, believing itself alone,
 *            truncated and rebuilt the -shm file under the child's
 *            mapping (SIGBUS). Once every inherited connection to a file
 *            is discarded, the child's own connections take their locks
 *            as any other process does. No connection is closed.
 * The mutexes are registered with the core one entry each (so its child
 * handler restores each one to its exact state); the list of connections
 * is the adapter's own, behind a mutex its callback entry takes.
 *
 * Ranks: FORKSAFE_SQLITE_RANK for the callback entry,
 * FORKSAFE_SQLITE_RANK_CLOSE for forksafe_sqlite_close()'s lock, every
 * connection mutex at one rank, FORKSAFE_SQLITE_RANK_DB, and every static
 * mutex at one rank, FORKSAFE_SQLITE_RANK_STATIC. SQLite takes its static
 * mutexes while holding a connection's mutex, never the reverse (it
 * forbids SQLite calls from the unlock-notify callback, the one it runs
 * under a static mutex); but no order is assumed inside either rank:
 * SQLite 3.40 takes MAIN while holding PRNG (sqlite3_randomness ->
 * sqlite3_vfs_find), a backup enters its source, then its destination,
 * and the core acquires the entries of one rank as a set, without
 * assuming any order among them. An application may hold its own locks
 * around SQLite calls, so all of this lies in the library band. The
 * callback entry is outermost so that its child handler runs after the
 * mutexes are restored.
 *
 * Assumptions, checked by forksafe_sqlite_install() (ENOTSUP otherwise):
 * SQLite uses its default unix mutexes, whose sqlite3_mutex begins with a
 * pthread_mutex_t (src/mutex_unix.c); an application that installed its
 * own with SQLITE_CONFIG_MUTEX cannot use this adapter.
 *
 * What the application must still do. Open the connections it uses in
 * the child there, and never use, close or free an inherited one (the
 * adapter makes use fail; only the application can avoid the rest).
 * Track every connection the parent has open to a file the children
 * open: an untracked one that holds a lock or the WAL index at the fork
 * (in WAL mode, any that has read the file) stays in that record, and a
 * connection the child opens to the file again takes no lock of its own;
 * if a thread is inside SQLite on it at the fork, SQLite's per-file
 * mutexes may be held in the child, and the child hangs in the adapter's
 * handler or in its own open. Close a tracked connection with
 * forksafe_sqlite_close() (or untrack it before sqlite3_close(), leaving
 * the close itself unprotected). A transaction issued as one
 * sqlite3_exec() call holds the connection's mutex throughout and is
 * never split by the fork; one spread over several calls may be open at
 * the fork, stays the parent's, and the child's own connection sees it
 * as another process's transaction.
 * Shared-cache connections and open BLOB handles are not covered. SQLite's
 * default busy handler (sqlite3_busy_timeout) sleeps up to 100 ms at a
 * time holding the connection mutex, which a fork waits for: with many
 * writers, a handler that retries often keeps forks prompt.
 */
#ifndef FORKSAFE_SQLITE_H
#define FORKSAFE_SQLITE_H

#include <sqlite3.h>

#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ranks the adapter registers at (see "Ranks" above). */
#define FORKSAFE_SQLITE_RANK        (FORKSAFE_RANK_LIBRARY + 300u)
#define FORKSAFE_SQLITE_RANK_CLOSE  (FORKSAFE_RANK_LIBRARY + 305u)
#define FORKSAFE_SQLITE_RANK_DB     (FORKSAFE_RANK_LIBRARY + 310u)
#define FORKSAFE_SQLITE_RANK_STATIC (FORKSAFE_RANK_LIBRARY + 320u)

/* Install the adapter: register its callback entry (name "sqlite") and
   SQLite's static mutexes, and record the adapter as "sqlite" for
   forksafe_audit_write(). forksafe_sqlite_track() calls it. Idempotent and
   thread-safe: a second call returns 0 and changes nothing.
   Returns 0, ENOTSUP (SQLite's mutexes are not its default pthread ones),
   ENOMEM or EDEADLK (called from a forksafe callback). */
FORKSAFE_API int forksafe_sqlite_install(void);

/* Undo forksafe_sqlite_install(). Returns 0, ENOENT (not installed),
   EBUSY (connections are still tracked) or EDEADLK. */
FORKSAFE_API int forksafe_sqlite_uninstall(void);

/* Track db: its mutex is held across every fork and the child's copy of
   db refuses all work (see above). Installs the adapter if needed. db
   must stay open until it is untracked. A connection opened without a
   mutex (SQLITE_OPEN_NOMUTEX, or a single-thread build) is tracked too:
   its child copy still refuses work, but the application must make sure
   no thread is using it at the fork.
   Returns 0, EINVAL (db NULL), EEXIST (already tracked), ENOTSUP, ENOMEM
   or EDEADLK. */
FORKSAFE_API int forksafe_sqlite_track(sqlite3 *db);

/* Stop tracking db (in the parent: nothing about db changes).
   Returns 0, EINVAL (db NULL), ENOENT (not tracked) or EDEADLK. */
FORKSAFE_API int forksafe_sqlite_untrack(sqlite3 *db);

/* Untrack db if it is tracked and sqlite3_close() it, both while holding
   a lock that every fork waits for (rank FORKSAFE_SQLITE_RANK_CLOSE), so
   at every fork db is either still tracked or wholly closed, and no child
   inherits SQLite's bookkeeping of a half-closed connection: with a WAL
   database, a fork that landed inside sqlite3_close() of an untracked
   connection left children whose own new connection to the file got
   SQLITE_BUSY for good (5 of about 10,000 forks in workload-sqlite).
   Use it instead of forksafe_sqlite_untrack() + sqlite3_close(). Returns
   0, EINVAL (db NULL), EBUSY (sqlite3_close() refused: statements or
   backups are still open; db stays open, and tracked if it was) or
   EDEADLK. */
FORKSAFE_API int forksafe_sqlite_close(sqlite3 *db);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_SQLITE_H */
