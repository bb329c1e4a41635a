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
 *  - prepare: takes the adapter's list lock (with the fork deadline), so no
 *    base is being tracked or untracked at the fork;
 *  - parent:  releases it;
 *  - child:   calls event_reinit() on each tracked base, before any other
 *    code can use it, and re-creates the list lock. event_reinit() allocates
 *    and makes system calls: that is fine, glibc has re-initialised malloc
 *    before fork handlers run in the child.
 * Rank: one callback entry at FORKSAFE_RANK_LIBRARY + 400; it takes no
 * libevent lock in prepare, and its list lock is never held while calling
 * libevent, so any place in the library band is correct.
 *
 * What the application must still do: fork from the thread that runs the
 * base's loop, or while no other thread is inside libevent on that base.
 * libevent offers no public way to take a base's lock from outside, so the
 * adapter cannot wait for other threads in prepare: if another thread held
 * the base lock at the fork, event_reinit() in the child would block
 * forever on it. Without threading enabled there is no base lock, and a
 * base must be used by one thread only anyway. Call forksafe_event_untrack()
 * before event_base_free(). Events that were active in the parent stay
 * added in the child (event_reinit re-adds them to the new backend); delete
 * those the child must not serve.
 */
#ifndef FORKSAFE_EVENT_H
#define FORKSAFE_EVENT_H

#include <event2/event.h>
#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Track a base: every child forked afterwards gets event_reinit(base)
   before any of its own code runs. Tracking a tracked base again is a
   no-op. Also records the adapter "event" for forksafe_audit_write().
   Returns 0, EINVAL (base NULL), ENOMEM, or EDEADLK (called from a
   forksafe callback). */
FORKSAFE_API int forksafe_event_track(struct event_base *base);

/* Stop tracking base; call it before event_base_free(). Returns 0, EINVAL
   (base NULL) or ENOENT (not tracked). */
FORKSAFE_API int forksafe_event_untrack(struct event_base *base);

/* In a forked child: 0 if event_reinit() succeeded for every tracked base
   at the most recent fork, else -1 (the failing base is unusable in the
   child; libevent logs why). 0 in a process not forked since tracking. */
FORKSAFE_API int forksafe_event_fork_error(void);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_EVENT_H */
