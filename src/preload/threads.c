/* SPDX-License-Identifier: MIT */
/*
 * threads.c: pthread_create() as the audit sees it. Each new thread starts
 * through a trampoline that records its start routine in the thread table,
 * so that fork-with-threads can say which threads were running; a thread
 * started in a forked child also ends the child's single-threaded mode.
 */
#include "audit.h"

#include <pthread.h>

/* ------------------------------------------------------------ threads */

/* (start routine, argument) handed from pthread_create to the new thread
   through a static pool, not malloc: freeing in the new thread would make
   glibc give it its own arena, one more lock for every later fork. */
#define TRAMPS 256

struct tramp {
    void *(*fn)(void *);
    void *arg;
    int busy;
};

static struct tramp tramps[TRAMPS];

static void *trampoline(void *p)
{
    struct tramp *slot = p;
    void *(*fn)(void *) = slot->fn;
    void *arg = slot->arg;
    STORE(&slot->busy, 0);
    struct thread_rec *r = forksafe__audit_self();
    if (r)
        r->start = (void *)fn;
    return fn(arg);
}

/* pthread_create(): starts the thread through trampoline() so that its
   start routine can be named in fork-with-threads. Same result as the real
   call. */
EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg)
{
    if (UNLIKELY(LOAD(&forksafe__audit_fk.child_mt)))
        STORE(&forksafe__audit_fk.child_has_threads, 1);
    for (int i = 0; i < TRAMPS; i++) {
        int expect = 0;
        if (LOAD(&tramps[i].busy) ||
            !__atomic_compare_exchange_n(&tramps[i].busy, &expect, 1, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        tramps[i].fn = fn;
        tramps[i].arg = arg;
        int r = REAL(pthread_create)(th, attr, trampoline, &tramps[i]);
        if (r != 0)
            STORE(&tramps[i].busy, 0);
        return r;
    }
    /* Pool exhausted (hundreds of threads starting at once): the thread
       runs untracked, with no start routine in reports. */
    return REAL(pthread_create)(th, attr, fn, arg);
}
