/* SPDX-License-Identifier: MIT */
/*
 * threads.c: the thread table, and pthread_create() as the interposer sees
 * it. Each thread claims a record on its first hook, without locking or
 * allocating; a key destructor gives it back at thread exit. New threads
 * start through a trampoline that records their start routine, so that a
 * fork can say which threads were running.
 */
#include "interpose.h"

#include <pthread.h>

/* ------------------------------------------------------------ table */

struct thread_rec forksafe__threads[MAX_THREADS];
HOT int forksafe__threads_hwm; /* slots [0, hwm) have been used */
HOT static unsigned next_ident;
HOT static pthread_key_t rec_key;
/* 0 not created, 1 being created, 2 created, -1 could not be. */
HOT static int rec_key_state;
TLS struct thread_rec *forksafe__self_rec;

void forksafe__thread_release(void *p)
{
    struct thread_rec *r = p;
    if (forksafe__self_rec == r)
        forksafe__self_rec = NULL;
    STORE(&r->nheld, 0);
    STORE(&r->dropped, 0);
    r->start = NULL;
    STORE(&r->tid, 0);
}

/* The key whose destructor gives a thread's slot back. glibc's
   pthread_key_create takes no lock and allocates nothing (a compare and
   swap on its key table), so there it is created by the first thread
   that claims a slot, whatever it runs in (a signal handler, a vfork or
   forked child): a program image that never reaches a hook (most of those
   an exec-heavy script starts) never creates it, and saves its first
   touch of the key table and of that code, about 3 us per start
   (docs/audit.md, Overhead). Other C libraries may take a lock in
   pthread_key_create (musl does): there the constructor creates it, as
   before. A thread that finds another creating it (two threads' first
   hooks at once, neither started through our pthread_create, which
   creates it before the thread exists) goes without, as when the key
   could not be created: its slot is then not given back at its exit. */
static void key_create(void)
{
    int expect = 0;
    if (!__atomic_compare_exchange_n(&rec_key_state, &expect, 1, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    pthread_key_t k;
    int ok = pthread_key_create(&k, forksafe__thread_release) == 0;
    rec_key = k;
    STORE(&rec_key_state, ok ? 2 : -1);
}

/* The slow half of forksafe__self() (interpose.h): this thread's first
   hook. */
struct thread_rec *forksafe__self_claim(void)
{
    struct thread_rec *r;
    int tid = (int)forksafe__gettid();
    for (int i = 0; i < MAX_THREADS; i++) {
        int expect = 0;
        if (LOAD(&forksafe__threads[i].tid) == 0 &&
            __atomic_compare_exchange_n(&forksafe__threads[i].tid, &expect, tid,
                                        0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            r = &forksafe__threads[i];
            int hwm = LOAD(&forksafe__threads_hwm);
            while (hwm < i + 1 && !__atomic_compare_exchange_n(
                                      &forksafe__threads_hwm, &hwm, i + 1, 0,
                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                ;
            r->ident = __atomic_add_fetch(&next_ident, 1, __ATOMIC_RELAXED);
            r->start = NULL;
            for (int k = 0; k < SEEN_CACHE; k++)
                r->seen[k].lock = 0;
            STORE(&r->nheld, 0);
            STORE(&r->dropped, 0);
            /* r->more, if an earlier thread of the slot mapped it, is
               kept: interpose.h */
            forksafe__self_rec = r;
            /* Slots are given back by the key destructor at thread exit;
               keys below 32 never allocate in pthread_setspecific. */
            if (LOAD(&rec_key_state) == 0)
                key_create();
            if (LOAD(&rec_key_state) == 2)
                pthread_setspecific(rec_key, r);
            return r;
        }
    }
    return NULL; /* more than MAX_THREADS live threads: not tracked */
}

void forksafe__thread_key_init(void)
{
#ifndef __GLIBC__
    key_create();
#endif
}

struct thread_rec *forksafe__thread_by_tid(int tid)
{
    int hwm = LOAD(&forksafe__threads_hwm);
    for (int i = 0; i < hwm; i++)
        if (LOAD(&forksafe__threads[i].tid) == tid)
            return &forksafe__threads[i];
    return NULL;
}

void forksafe__threads_after_fork_child(void)
{
    struct thread_rec *mine = forksafe__self_rec;
    int hwm = LOAD(&forksafe__threads_hwm);
    for (int i = 0; i < hwm; i++)
        if (&forksafe__threads[i] != mine &&
            LOAD(&forksafe__threads[i].tid) != 0)
            forksafe__thread_release(&forksafe__threads[i]);
    if (mine)
        STORE(&mine->tid, (int)forksafe__gettid());
}

/* ------------------------------------------------------------ create */

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
    struct thread_rec *r = forksafe__self();
    if (r)
        r->start = (void *)fn;
    return fn(arg);
}

/* pthread_create(): starts the thread through trampoline() so that its
   start routine can be named. Same result as the real call. */
EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg)
{
    if (UNLIKELY(LOAD(&forksafe__policy_slow)))
        forksafe__policy_thread_created();
    /* The caller may be a forked child whose record still has its
       parent's TID (fork.c does not write it in single-threaded children):
       now that the process gets a second thread, it must be right. */
    struct thread_rec *me = forksafe__self_rec;
    if (me) {
        int tid = (int)forksafe__gettid();
        if (me->tid != tid)
            STORE(&me->tid, tid);
    }
    /* The new thread's slot must be given back at its exit: the key
       exists before the thread does. */
    if (UNLIKELY(LOAD(&rec_key_state) == 0))
        key_create();
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
