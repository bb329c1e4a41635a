/* SPDX-License-Identifier: MIT */
/*
 * forksafe/zmq.h: the ZeroMQ (libzmq) adapter, libforksafe-zmq.
 *
 * What libzmq says about fork: a context and its sockets belong to the
 * process that created them. The zguide ("Getting the Context Right")
 * tells programs to create their contexts after fork(), one per process;
 * the maintainers' advice for a child that inherited one is to close the
 * sockets and terminate the context at once (libzmq issues #2807, #3531).
 * libzmq 4.x built with HAVE_FORK (Debian's is, PR #640) compares getpid()
 * with the creator's PID in its signalers: in a child, commands to the
 * inherited I/O and reaper threads, which do not exist there, are dropped,
 * so zmq_ctx_term() on an inherited context cannot finish: it returns -1
 * with EINTR on every call (issue #2807), a "retry on EINTR" loop spins
 * forever, and the descriptors stay open anyway (issue #4131). In builds
 * without that check, closing an inherited socket wakes the parent's reaper
 * through a shared eventfd, and it aborts on a command that is not there
 * ("Assertion failed: ok (mailbox.cpp)", reported by pyzmq, php-zmq and
 * ffi-rzmq users, whose bindings now remember the creating PID).
 *
 * What the adapter does:
 *  - prepare: takes the adapter's own list lock (with the fork deadline),
 *    so no tracked context is being added or removed at the fork;
 *  - parent:  releases it;
 *  - child:   marks every tracked context as inherited and re-creates the
 *    list lock. It calls nothing in libzmq: the inherited context and its
 *    sockets are deliberately leaked in the child, the only drop that can
 *    neither hang the child nor touch anything the parent shares, whatever
 *    the libzmq build. The child then makes its own context as usual.
 * Rank: one callback entry at FORKSAFE_ZMQ_RANK. It protects only
 * the adapter's list and takes no libzmq lock, so any place in the library
 * band is correct; it sits after the other adapters' library locks.
 *
 * What the application must still do: in the child, never use, close or
 * terminate an inherited socket or context directly; call
 * forksafe_zmq_term(), which drops an inherited context and terminates one
 * the process owns (so one shutdown path serves parent and child). The
 * child's copies of libzmq's descriptors (TCP connections, listeners,
 * eventfds) stay open until the child exits or execs (libzmq opens them
 * close-on-exec): a parent's peer sees a connection close only when every
 * holder has closed it. Fork from a thread that is not inside a libzmq call
 * on the tracked context's sockets.
 */
#ifndef FORKSAFE_ZMQ_H
#define FORKSAFE_ZMQ_H

#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The rank of the adapter's callback entry (see "Rank" above). */
#define FORKSAFE_ZMQ_RANK (FORKSAFE_RANK_LIBRARY + 700u)

/* Install the adapter: register its callback entry (name "zmq: tracked
   contexts") and record the adapter as "zmq" for forksafe_audit_write().
   forksafe_zmq_track() calls it. Idempotent and thread-safe: a second call
   returns 0 and changes nothing. Returns 0, ENOMEM or EDEADLK (called
   from a forksafe callback). */
FORKSAFE_API int forksafe_zmq_install(void);

/* Undo forksafe_zmq_install(). Returns 0, ENOENT (not installed), EBUSY
   (contexts are still tracked) or EDEADLK. */
FORKSAFE_API int forksafe_zmq_uninstall(void);

/* Track a context made by zmq_ctx_new() in this process, so that a forked
   child knows it is inherited. Tracking a tracked context again is a no-op.
   Installs the adapter if needed.
   Returns 0, EINVAL (ctx NULL), ENOMEM or EDEADLK. */
FORKSAFE_API int forksafe_zmq_track(void *ctx);

/* Forget ctx without terminating it. Returns 0, EINVAL (ctx NULL) or
   ENOENT (not tracked). */
FORKSAFE_API int forksafe_zmq_untrack(void *ctx);

/* 1 if ctx is a tracked context inherited from a parent process (this
   process must not touch it), 0 otherwise (including NULL). */
FORKSAFE_API int forksafe_zmq_inherited(void *ctx);

/* End a tracked context and forget it. In the process that created it:
   zmq_ctx_term(), retried while it reports EINTR (close its sockets first,
   as zmq_ctx_term requires). In a child that inherited it: nothing is
   called; the context is leaked on purpose and 0 is returned at once.
   Returns 0, EINVAL (ctx NULL), ENOENT (not tracked; nothing is done) or the
   errno of a failed zmq_ctx_term() (ctx is then still tracked). */
FORKSAFE_API int forksafe_zmq_term(void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_ZMQ_H */
