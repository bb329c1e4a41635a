/* SPDX-License-Identifier: MIT */
/*
 * forksafe/random.h: the PRNG-state adapter (libforksafe-random). It gives
 * every child of fork() its own random()/rand() and drand48() sequences,
 * which are otherwise copied from the parent, so that parent and children
 * (and sibling children) draw the same "random" numbers.
 *
 * What the library says about fork. glibc's random(3) and drand48(3)
 * pages say nothing about fork; POSIX fork() copies the whole address
 * space, generator state included. glibc 2.36 keeps random()'s state
 * behind an internal lock (stdlib/random.c) that fork() does not reset,
 * while drand48()'s state has no lock. arc4random() (glibc 2.36) reads
 * getrandom() directly and needs nothing.
 *
 * What the adapter does.
 *   prepare: draw a seed from getrandom() and switch random()'s state to a
 *            private buffer seeded with it (initstate()), remembering the
 *            application's state.
 *   parent:  switch back to the application's state (setstate()): the
 *            parent's own sequence continues as if nothing had happened.
 *   child:   keep the freshly seeded buffer: the child's random() and
 *            rand() start a new sequence without the child taking glibc's
 *            random lock, which another thread of the parent may have held
 *            at the fork (reseeding with srandom() in the child would then
 *            hang every child, even one that never calls random()); and
 *            reseed drand48() and friends with seed48() from getrandom()
 *            (a few stores, no lock).
 *
 * Rank: FORKSAFE_RANK_LEAF + 200. The adapter holds no lock across the
 * fork and glibc's random lock is a leaf, so its place barely matters; the
 * leaf band keeps its brief use of that lock inside every other lock.
 *
 * What the application must still do. Generators with their own state
 * (random_r(), rand_r(), erand48() with a caller's buffer, the drand48
 * parameters set by lcong48(), which seed48() resets) are not touched:
 * reseed them in the child. A draw made by another parent thread during
 * the fork itself comes from the child's fresh sequence, so it may repeat
 * one of the child's first values. If another thread was inside random()
 * at the fork, glibc's lock is left held in the child and the child's own
 * random() blocks; this adapter cannot reset that lock (no interface does):
 * prefer arc4random() or getrandom() in children of threaded parents.
 */
#ifndef FORKSAFE_RANDOM_H
#define FORKSAFE_RANDOM_H

#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The rank of the adapter's entry (see "Rank" above). */
#define FORKSAFE_RANDOM_RANK (FORKSAFE_RANK_LEAF + 200u)

/* Install the adapter: register its fork callbacks (entry name "random")
   and record the adapter as "random" for forksafe_audit_write().
   Idempotent and thread-safe: a second call returns 0 and changes nothing.
   Returns 0, ENOMEM or EDEADLK (called from a forksafe callback). */
FORKSAFE_API int forksafe_random_install(void);

/* Undo forksafe_random_install(): later children inherit the parent's
   generator state again. Returns 0, ENOENT (not installed) or EDEADLK. */
FORKSAFE_API int forksafe_random_uninstall(void);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_RANDOM_H */
