/* SPDX-License-Identifier: MIT */
/*
 * forksafe/uv.h: the libuv adapter, libforksafe-uv.
 *
 * What libuv says about fork (docs/src/loop.rst, uv_loop_fork): "It is
 * necessary to explicitly call this function on every event loop created
 * in the parent process that you plan to continue to use in the child,
 * including the default loop", and it "must be called before calling
 * uv_run() or any other API function using the loop in the child. Failure
 * to do so will result in undefined behaviour, possibly including duplicate
 * events delivered to both parent and child or aborting the child process."
 * Without it the child shares the parent's epoll instance and the loop's
 * wake-up eventfd: a uv_async_send() in the child wakes the parent's loop,
 * and closing a watcher in the child removes it from the parent's epoll
 * set. libuv's threadpool re-initialises itself in the child on its own
 * (src/threadpool.c registers pthread_atfork), but each loop's wq_mutex,
 * which pool threads take to hand back finished work, is not covered.
 *
 * What the adapter does, for every tracked loop:
 *  - prepare: takes the adapter's list lock, then (rank order) the loop's
 *    wq_mutex, so no pool thread is handing work back at the fork;
 *  - parent:  releases both;
 *  - child:   restores wq_mutex (the core does it, as for any registered
 *    mutex), then calls uv_loop_fork() on each tracked loop, before any
 *    other code can use it, and re-creates the list lock. uv_loop_fork()
 *    allocates and makes system calls: that is fine here, because glibc
 *    has re-initialised malloc before fork handlers run in the child.
 * Ranks: the list entry at FORKSAFE_UV_RANK and every loop's wq_mutex at
 * one rank, FORKSAFE_UV_RANK_WQ (no order among loops is assumed: the core
 * acquires the entries of one rank as a set). libuv takes wq_mutex under
 * its global pool mutex (uv_cancel) and takes nothing under it, so it is
 * an inner library lock; the adapter's list lock is never held while
 * calling libuv.
 * wq_mutex is a field that libuv's public unix header (uv/unix.h,
 * UV_LOOP_PRIVATE_FIELDS) exposes and that has been there through libuv 1.x.
 *
 * What the application must still do: fork from the thread that runs the
 * loop, or while its loop thread waits in uv_run() (a loop is not
 * thread-safe: a child inheriting one that another thread was in the
 * middle of changing gets that half-made change). Threadpool requests
 * pending at the fork never complete in the child; finished ones may have
 * their after-work callbacks run in both processes. Call
 * forksafe_uv_untrack() before uv_loop_close(). In the child, prefer a new
 * loop for new work, as libuv's documentation recommends.
 */
#ifndef FORKSAFE_UV_H
#define FORKSAFE_UV_H

#include <forksafe.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ranks the adapter registers at (see "Ranks" above). */
#define FORKSAFE_UV_RANK    (FORKSAFE_RANK_LIBRARY + 200u)
#define FORKSAFE_UV_RANK_WQ (FORKSAFE_RANK_LIBRARY + 210u)

/* Install the adapter: register its callback entry (name "uv: tracked
   loops") and record the adapter as "uv" for forksafe_audit_write().
   forksafe_uv_track() calls it. Idempotent and thread-safe: a second call
   returns 0 and changes nothing. Returns 0, ENOMEM or EDEADLK (called
   from a forksafe callback). */
FORKSAFE_API int forksafe_uv_install(void);

/* Undo forksafe_uv_install(). Returns 0, ENOENT (not installed), EBUSY
   (loops are still tracked) or EDEADLK. */
FORKSAFE_API int forksafe_uv_uninstall(void);

/* Track an initialised loop: every child forked afterwards gets
   uv_loop_fork(loop) before any of its own code runs. Tracking a tracked
   loop again is a no-op. Installs the adapter if needed. Returns 0,
   EINVAL (loop NULL), ENOMEM, or EDEADLK (called from a forksafe
   callback). */
FORKSAFE_API int forksafe_uv_track(uv_loop_t *loop);

/* Stop tracking loop; call it before uv_loop_close(). Returns 0, EINVAL
   (loop NULL), ENOENT (not tracked) or EDEADLK. */
FORKSAFE_API int forksafe_uv_untrack(uv_loop_t *loop);

/* In a forked child: 0 if uv_loop_fork() succeeded for every tracked loop
   at the most recent fork, else the first libuv error it returned (a
   negative UV_E* value; the loop is then unusable in the child). 0 in a
   process that has not been forked since tracking. */
FORKSAFE_API int forksafe_uv_fork_error(void);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_UV_H */
