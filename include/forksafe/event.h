/* SPDX-License-Identifier: MIT */
/*
 * forksafe/event.h: the libevent adapter, libforksafe-event.
 *
 * What libevent says about fork (event2/event.h, event_reinit(): "Reinitialize
 * the event base after a fork. Some event mechanisms do not survive across
 * fork. The event base needs to be reinitialized with the event_reinit()
 * function."). Without it the
 * child shares the parent's epoll instance and the base's signal socketpair
 * and notification fds: a signal caught in the child is written into the
 * socketpair the parent's loop reads, so the parent runs the callback of a
 * signal it never received, and the child's may never run. event_reinit()
 * first takes the base lock (th_base_lock), which exists once threading is
 * enabled (evthread_use_pthreads()); it is a recursive pthread mutex that
 * libevent allocates and does not expose.
 *
 * What the adapter does:
 *  - forksafe_event_use_pthreads(), called instead of
 *    evthread_use_pthreads(), enables libevent threading with recursive
 *    pthread mutexes made by the adapter; forksafe_event_track() then finds
 *    which of them is the base's lock (event_base_foreach_event() is
 *    documented to hold it) and registers it with the core at
 *    FORKSAFE_EVENT_RANK_BASE (every base lock at that one rank: no order
 *    among bases is assumed, the core acquires one rank's entries as a
 *    set), so prepare waits, within the fork deadline, for any thread
 *    inside the base, and the core restores the lock in the child;
 *  - forksafe_event_install() registers the adapter's callback entry
 *    ("event: tracked bases"); forksafe_event_track() calls it;
 *  - prepare: takes the adapter's list lock (FORKSAFE_EVENT_RANK), so no
 *    base is being tracked or untracked at the fork;
 *  - parent:  releases it;
 *  - child:   calls event_reinit() on each tracked base, before any other
 *    code can use it, and re-creates the list lock. event_reinit() allocates
 *    and makes system calls: that is fine, glibc has re-initialised malloc
 *    before fork handlers run in the child.
 * Ranks: the base lock is an inner library lock (libevent takes it under a
 * bufferevent's lock and, for signal events, takes its global signal lock
 * under it); the list lock is never held while calling libevent, and sits
 * just before it.
 *
 * What the application must still do: use forksafe_event_use_pthreads()
 * (before creating any base) if other threads use a tracked base. With
 * evthread_use_pthreads() the base lock is libevent's own, which it does
 * not expose: a thread inside the base at the fork then leaves it held, and
 * event_reinit() in the child blocks on it forever; fork from the thread
 * that runs the loop, or while no other thread is inside libevent, instead.
 * libevent's global locks (signal handling, debug map) and bufferevent
 * locks are not registered: they are held only briefly, inside calls on a
 * base. Call forksafe_event_untrack() before event_base_free(). Events that
 * were added in the parent stay added in the child (event_reinit re-adds
 * them to the new backend); delete those the child must not serve.
 */
#ifndef FORKSAFE_EVENT_H
#define FORKSAFE_EVENT_H

#include <event2/event.h>
#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ranks the adapter registers at (see above). */
#define FORKSAFE_EVENT_RANK      (FORKSAFE_RANK_LIBRARY + 400u)
#define FORKSAFE_EVENT_RANK_BASE (FORKSAFE_RANK_LIBRARY + 410u)

/* Install the adapter: register its callback entry (name "event: tracked
   bases") and record the adapter as "event" for forksafe_audit_write().
   forksafe_event_track() calls it. Idempotent and thread-safe: a second
   call returns 0 and changes nothing. Returns 0, ENOMEM or EDEADLK
   (called from a forksafe callback). */
FORKSAFE_API int forksafe_event_install(void);

/* Undo forksafe_event_install(). Returns 0, ENOENT (not installed), EBUSY
   (bases are still tracked) or EDEADLK. Threading set up by
   forksafe_event_use_pthreads() stays as it is (libevent cannot undo it). */
FORKSAFE_API int forksafe_event_uninstall(void);

/* Enable libevent threading (locks, condition variables, thread ids) with
   pthread objects the adapter can register: the replacement for
   evthread_use_pthreads(). Call it before creating any event base; calling
   it again is a no-op. Also records the adapter "event". Returns 0, or
   EBUSY (libevent already has other lock callbacks, e.g. from
   evthread_use_pthreads(); nothing changed). */
FORKSAFE_API int forksafe_event_use_pthreads(void);

/* Track a base: every child forked afterwards gets event_reinit(base)
   before any of its own code runs. Tracking a tracked base again is a
   no-op. With forksafe_event_use_pthreads(), the base's lock is
   registered too (see above). Installs the adapter if needed. Returns 0,
   EINVAL (base NULL), ENOMEM, or EDEADLK (called from a forksafe
   callback). */
FORKSAFE_API int forksafe_event_track(struct event_base *base);

/* Stop tracking base (and unregister its lock); call it before
   event_base_free(). Returns 0, EINVAL (base NULL), ENOENT (not tracked)
   or EDEADLK. */
FORKSAFE_API int forksafe_event_untrack(struct event_base *base);

/* In a forked child: 0 if event_reinit() succeeded for every tracked base
   at the most recent fork, else -1 (the failing base is unusable in the
   child; libevent logs why). 0 in a process not forked since tracking. */
FORKSAFE_API int forksafe_event_fork_error(void);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_EVENT_H */
