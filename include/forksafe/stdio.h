/* SPDX-License-Identifier: MIT */
/*
 * forksafe/stdio.h: the stdio adapter (libforksafe-stdio). It keeps C
 * stdio output consistent across fork(): buffered bytes are written once,
 * and a record a thread writes under flockfile() is never cut in two by
 * the fork.
 *
 * What the platform says about fork. POSIX (XSH 2.5.1, "Interaction of
 * File Descriptors and Standard I/O Streams") requires an application to
 * fflush() an output stream before a fork if both processes may use it;
 * otherwise unflushed bytes sit in both copies of the buffer and are
 * written twice. glibc's fork() (posix/fork.c, 2.36) takes its stream-list
 * lock after the user prepare handlers, and in the child of a
 * multi-threaded parent re-initialises every FILE lock and the list lock
 * before the child handlers run.
 *
 * What the adapter does.
 *   prepare: in a multi-threaded process, take glibc's stream-list lock
 *            (the order glibc's own fflush(NULL), fopen() and fclose() use:
 *            list lock first, FILE locks second, so a concurrent
 *            fflush(NULL) cannot deadlock the fork), then flockfile()
 *            stdout, stderr and every tracked stream, in that order, then
 *            fflush(NULL): every output stream is flushed, and the locked
 *            ones stay empty up to the fork because no other thread can
 *            write into them; no record written under their lock is cut.
 *            In a single-threaded process: fflush(NULL) only.
 *   parent:  release those locks in reverse order.
 *   child:   nothing. glibc has already reset every FILE lock and the list
 *            lock there; unlocking them again would corrupt their counts.
 * The stream locks honour the fork deadline: one that stays held past it
 * makes forksafe_fork() fail with ETIMEDOUT (and a plain fork() proceed
 * without this adapter), with nothing left locked. glibc's list lock and
 * the flush of an untracked stream have no timed form: a thread blocked
 * while holding one (writing to a full pipe) delays the fork until it
 * returns.
 *
 * Rank: FORKSAFE_RANK_LEAF + 100. Code holding a FILE lock takes no
 * registered lock (printing is what code does last, under its own locks),
 * so stream locks are inner to every application and library lock.
 *
 * What the application must still do. Track any other output stream that
 * threads write records to (forksafe_stdio_track), and untrack it before
 * fclose(). Never track a stream a thread may block reading from (stdin):
 * its lock is held for the whole read and would block every fork. Streams
 * that are not tracked are flushed but not locked: another thread can
 * still put bytes into their buffers between the flush and the fork.
 * A record written without flockfile() as several stdio calls is several
 * records; only locked sequences are kept whole.
 */
#ifndef FORKSAFE_STDIO_H
#define FORKSAFE_STDIO_H

#include <stdio.h>

#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The rank of the adapter's entry (see "Rank" above). */
#define FORKSAFE_STDIO_RANK (FORKSAFE_RANK_LEAF + 100u)

/* Install the adapter: register its fork callbacks (entry name
   "stdio") and record the adapter as "stdio" for forksafe_audit_write().
   Idempotent and thread-safe: a second call returns 0 and changes nothing.
   Returns 0, ENOMEM or EDEADLK (called from a forksafe callback). */
FORKSAFE_API int forksafe_stdio_install(void);

/* Undo forksafe_stdio_install(): later forks neither flush nor lock.
   Tracked streams stay tracked (and are used again after a reinstall).
   Returns 0, ENOENT (not installed) or EDEADLK. */
FORKSAFE_API int forksafe_stdio_uninstall(void);

/* Also lock and flush fp at every fork (stdout and stderr always are).
   Installs the adapter if needed. fp must stay open until it is untracked.
   Returns 0, EINVAL (fp NULL), EEXIST (already tracked, or stdout/stderr),
   ENOMEM or EDEADLK. */
FORKSAFE_API int forksafe_stdio_track(FILE *fp);

/* Stop tracking fp. Returns 0, EINVAL (fp NULL) or ENOENT (not tracked). */
FORKSAFE_API int forksafe_stdio_untrack(FILE *fp);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_STDIO_H */
