/* SPDX-License-Identifier: MIT */
/*
 * adapters/event/event.c: libforksafe-event. Calls event_reinit() in the
 * child on every tracked libevent base, as libevent requires.
 *
 * DESIGN: one callback entry holds the list of tracked bases (the common
 * helper's, adapters/common/adapter.h: its list lock is taken in prepare,
 * released in the parent, re-created in the child). When the application
 * enables libevent threading through forksafe_event_use_pthreads(), every
 * libevent lock is a pthread mutex made here, and forksafe_event_track()
 * finds which one is the base's lock by calling event_base_foreach_event()
 * (documented to hold the base lock) with a thread-local flag set that
 * makes the lock callback note the lock it is asked to take. That mutex is
 * then registered with the core like any other, so prepare waits for a
 * thread inside the base. Every base lock is at one rank: no order among
 * bases is assumed.
 */
#include <forksafe/event.h>

#include "../common/adapter.h"

#include <errno.h>
#include <stdatomic.h>
#include <event2/thread.h>
#include <stdlib.h>
#include <sys/time.h>

struct ev_entry {
    struct event_base *base;
    pthread_mutex_t *lock; /* the base lock if registered, else NULL */
};

static struct forksafe__list ev_bases =
    FORKSAFE__LIST_INIT(struct ev_entry, struct event_base *);
static int ev_child_error; /* written only in the child callback */
/* Set in the child while event_reinit() runs: see ev_cond_wait(). */
static int ev_in_reinit;
static atomic_int ev_locks_ours; /* forksafe_event_use_pthreads() worked */
static _Thread_local int ev_discovering; /* see DESIGN */
static _Thread_local void *ev_discovered;

static void ev_child(void)
{
    /* event_reinit() rebuilds the backend (a new epoll set), the signal
       socketpair and the notification fds, then re-adds every event. It
       must run before any other use of the base in the child. */
    ev_child_error = 0;
    ev_in_reinit = 1;
    for (size_t i = 0; i < ev_bases.n; i++) {
        struct ev_entry *e = forksafe__list_at(&ev_bases, i);
        if (event_reinit(e->base) != 0)
            ev_child_error = -1;
    }
    ev_in_reinit = 0;
}

static const struct forksafe__adapter_hooks hooks = {
    .tracked = &ev_bases,
    .child = ev_child,
};
FORKSAFE__ADAPTER_DEFINE(event, "event: tracked bases", FORKSAFE_EVENT_RANK,
                         &hooks)

static int ev_noop(const struct event_base *b, const struct event *e, void *arg)
{
    (void)b;
    (void)e;
    (void)arg;
    return 0;
}

/* The base lock of base if libevent uses the adapter's locks, else NULL. */
static pthread_mutex_t *ev_base_lock(struct event_base *base)
{
    if (!atomic_load(&ev_locks_ours))
        return NULL;
    ev_discovered = NULL;
    ev_discovering = 1;
    event_base_foreach_event(base, ev_noop, NULL);
    ev_discovering = 0;
    return ev_discovered;
}

/* List base for event_reinit() in children, registering its lock when the
   adapter's lock callbacks are in use. 0 or an errno value. */
int forksafe_event_track(struct event_base *base)
{
    int rc = forksafe__adapter_enter(&ad, base);
    if (rc != 0)
        return rc;
    rc = forksafe__adapter_reserve(&ad, &ev_bases, &base);
    int known = rc == EEXIST;
    if (known)
        rc = 0;
    /* Register the base lock before listing the base: a fork in between
       then only covers the lock, which is always correct. */
    struct ev_entry e = {base, NULL};
    if (!known && rc == 0) {
        e.lock = ev_base_lock(base);
        if (e.lock)
            rc = forksafe_register_mutex(e.lock, "event: base lock",
                                         FORKSAFE_EVENT_RANK_BASE);
    }
    if (!known && rc == 0) {
        forksafe__adapter_add(&ad, &ev_bases, &e); /* room reserved, api held */
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Unregister base's lock (if any), then unlist base. 0, EINVAL, ENOENT
   or EDEADLK. */
int forksafe_event_untrack(struct event_base *base)
{
    if (!base)
        return EINVAL;
    forksafe__adapter_enter_plain(&ad);
    size_t i = forksafe__list_find(&ev_bases, &base);
    int rc = i < ev_bases.n ? 0 : ENOENT;
    /* Unregister first, so a refusal (EDEADLK) changes nothing. */
    if (rc == 0) {
        struct ev_entry *e = forksafe__list_at(&ev_bases, i);
        if (e->lock) {
            rc = forksafe_unregister(e->lock);
            if (rc == ENOENT)
                rc = 0;
        }
    }
    if (rc == 0) {
        forksafe__adapter_remove(&ad, &ev_bases, &base, NULL);
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* libevent's lock callbacks: recursive pthread mutexes (libevent requires
   recursive locks and never asks for read-write ones). */
static void *ev_lock_alloc(unsigned locktype)
{
    pthread_mutexattr_t a;
    pthread_mutex_t *m = malloc(sizeof *m);
    if (!m)
        return NULL;
    pthread_mutexattr_init(&a);
    if (locktype & EVTHREAD_LOCKTYPE_RECURSIVE)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0) {
        free(m);
        return NULL;
    }
    return m;
}

static void ev_lock_free(void *lock, unsigned locktype)
{
    (void)locktype;
    pthread_mutex_destroy(lock);
    free(lock);
}

static int ev_lock_lock(unsigned mode, void *lock)
{
    if (ev_discovering && !ev_discovered)
        ev_discovered = lock;
    if (mode & EVTHREAD_TRY)
        return pthread_mutex_trylock(lock);
    return pthread_mutex_lock(lock);
}

static int ev_lock_unlock(unsigned mode, void *lock)
{
    (void)mode;
    return pthread_mutex_unlock(lock);
}

static void *ev_cond_alloc(unsigned condtype)
{
    (void)condtype;
    pthread_cond_t *c = malloc(sizeof *c);
    if (c && pthread_cond_init(c, NULL) != 0) {
        free(c);
        c = NULL;
    }
    return c;
}

static void ev_cond_free(void *cond)
{
    pthread_cond_destroy(cond);
    free(cond);
}

static int ev_cond_signal(void *cond, int broadcast)
{
    int rc =
        broadcast ? pthread_cond_broadcast(cond) : pthread_cond_signal(cond);
    return rc == 0 ? 0 : -1;
}

static int ev_cond_wait(void *cond, void *lock, const struct timeval *tv)
{
    /* In the child, event_reinit() deletes the base's internal events; if
       the parent's loop thread was running one of their callbacks at the
       fork, libevent waits once on this condition for that callback to
       end (event_del_nolock_, libevent 2.1), which it never does there:
       every child hung in 1 of about 1,000 forks (workload-event). No
       callback runs in the child, so the wait ends at once. */
    if (ev_in_reinit)
        return 0;
    if (!tv)
        return pthread_cond_wait(cond, lock) == 0 ? 0 : -1;
    /* libevent passes a relative timeout; pthread wants an absolute
       CLOCK_REALTIME time (the condition's default clock). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += tv->tv_sec;
    ts.tv_nsec += (long)tv->tv_usec * 1000;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int rc = pthread_cond_timedwait(cond, lock, &ts);
    return rc == 0 ? 0 : rc == ETIMEDOUT ? 1 : -1;
}

static unsigned long ev_thread_id(void)
{
    return (unsigned long)pthread_self();
}

/* Install the adapter's lock, condition and thread-id callbacks in
   libevent. 0, or EBUSY when libevent already has other ones. */
int forksafe_event_use_pthreads(void)
{
    static const struct evthread_lock_callbacks locks = {
        EVTHREAD_LOCK_API_VERSION,
        EVTHREAD_LOCKTYPE_RECURSIVE,
        ev_lock_alloc,
        ev_lock_free,
        ev_lock_lock,
        ev_lock_unlock};
    static const struct evthread_condition_callbacks conds = {
        EVTHREAD_CONDITION_API_VERSION, ev_cond_alloc, ev_cond_free,
        ev_cond_signal, ev_cond_wait};
    /* libevent refuses new lock callbacks once others are in place. */
    if (evthread_set_lock_callbacks(&locks) != 0)
        return EBUSY;
    if (evthread_set_condition_callbacks(&conds) != 0)
        return EBUSY;
    evthread_set_id_callback(ev_thread_id);
    atomic_store(&ev_locks_ours, 1);
    return forksafe_register_adapter("event");
}

/* 0, or -1 if event_reinit() failed in this child at the last fork. */
int forksafe_event_fork_error(void)
{
    return ev_child_error;
}
