/* SPDX-License-Identifier: MIT */
/*
 * adapters/event/event.c: libforksafe-event. Calls event_reinit() in the
 * child on every tracked libevent base, as libevent requires.
 *
 * DESIGN: one callback entry holds the list of tracked bases (the
 * adapter's own array, guarded by ev_mu: taken in prepare, released in the
 * parent, re-created in the child). When the application enables libevent
 * threading through forksafe_event_use_pthreads(), every libevent lock is a
 * pthread mutex made here, and forksafe_event_track() finds which one is
 * the base's lock by calling event_base_foreach_event() (documented to hold
 * the base lock) with a thread-local flag set that makes the lock callback
 * note the lock it is asked to take. That mutex is then registered with the
 * core like any other, so prepare waits for a thread inside the base.
 */
#include <forksafe/event.h>

#include <errno.h>
#include <stdatomic.h>
#include <event2/thread.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

#define EV_RANK (FORKSAFE_RANK_LIBRARY + 400u)
#define EV_BASE_LOCK_RANK (FORKSAFE_RANK_LIBRARY + 410u)

struct ev_entry {
    struct event_base *base;
    pthread_mutex_t *lock; /* the base lock if registered, else NULL */
};

static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ev_entry *ev_list;    /* guarded by ev_mu */
static size_t ev_count, ev_cap;     /* guarded by ev_mu */
static int ev_child_error;          /* written only in the child callback */
static atomic_int ev_registered;
static char ev_key; /* the key of the adapter's callback entry */
static atomic_int ev_locks_ours; /* forksafe_event_use_pthreads() worked */
static _Thread_local int ev_discovering;      /* see DESIGN */
static _Thread_local void *ev_discovered;

static int ev_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    if (deadline)
        return pthread_mutex_clocklock(&ev_mu, CLOCK_MONOTONIC, deadline);
    return pthread_mutex_lock(&ev_mu);
}

static void ev_parent(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&ev_mu);
}

static void ev_child(void *ctx)
{
    (void)ctx;
    /* event_reinit() rebuilds the backend (a new epoll set), the signal
       socketpair and the notification fds, then re-adds every event. It
       must run before any other use of the base in the child. */
    ev_child_error = 0;
    for (size_t i = 0; i < ev_count; i++)
        if (event_reinit(ev_list[i].base) != 0)
            ev_child_error = -1;
    pthread_mutex_init(&ev_mu, NULL);
}

/* Register the callback entry once; never with ev_mu held (registration
   waits for a fork in progress, whose prepare wants ev_mu). */
static int ev_register(void)
{
    if (atomic_load(&ev_registered))
        return 0;
    static const struct forksafe_ops ops = {ev_prepare, ev_parent, ev_child};
    int rc = forksafe_register_ops(&ev_key, "event: tracked bases", EV_RANK,
                                   &ops);
    if (rc != 0 && rc != EEXIST)
        return rc;
    atomic_store(&ev_registered, 1);
    return forksafe_register_adapter("event");
}

/* Index of base in the list, or ev_count. Caller holds ev_mu. */
static size_t ev_find(const struct event_base *base)
{
    size_t i = 0;
    while (i < ev_count && ev_list[i].base != base)
        i++;
    return i;
}

static int ev_noop(const struct event_base *b, const struct event *e,
                   void *arg)
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
    if (!base)
        return EINVAL;
    int rc = ev_register();
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&ev_mu);
    int known = ev_find(base) < ev_count;
    pthread_mutex_unlock(&ev_mu);
    if (known)
        return 0;
    /* Register the base lock before listing the base: a fork in between
       then only covers the lock, which is always correct. */
    pthread_mutex_t *lock = ev_base_lock(base);
    if (lock) {
        rc = forksafe_register_mutex(lock, "event: base lock",
                                     EV_BASE_LOCK_RANK);
        if (rc == EEXIST)
            return 0; /* a concurrent forksafe_event_track() of base */
        if (rc != 0)
            return rc;
    }
    pthread_mutex_lock(&ev_mu);
    if (ev_count == ev_cap) {
        size_t cap = ev_cap ? 2 * ev_cap : 8;
        struct ev_entry *l = realloc(ev_list, cap * sizeof *l);
        if (!l) {
            pthread_mutex_unlock(&ev_mu);
            if (lock)
                forksafe_unregister(lock);
            return ENOMEM;
        }
        ev_list = l;
        ev_cap = cap;
    }
    ev_list[ev_count].base = base;
    ev_list[ev_count].lock = lock;
    ev_count++;
    pthread_mutex_unlock(&ev_mu);
    return 0;
}

/* Unregister base's lock (if any), then unlist base. 0, EINVAL, ENOENT
   or EDEADLK. */
int forksafe_event_untrack(struct event_base *base)
{
    if (!base)
        return EINVAL;
    pthread_mutex_lock(&ev_mu);
    size_t i = ev_find(base);
    pthread_mutex_t *lock = i < ev_count ? ev_list[i].lock : NULL;
    int known = i < ev_count;
    pthread_mutex_unlock(&ev_mu);
    if (!known)
        return ENOENT;
    /* Unregister first, so a refusal (EDEADLK) changes nothing. */
    if (lock) {
        int rc = forksafe_unregister(lock);
        if (rc != 0 && rc != ENOENT)
            return rc;
    }
    pthread_mutex_lock(&ev_mu);
    i = ev_find(base);
    if (i < ev_count)
        ev_list[i] = ev_list[--ev_count];
    pthread_mutex_unlock(&ev_mu);
    return 0;
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
    int rc = broadcast ? pthread_cond_broadcast(cond) : pthread_cond_signal(cond);
    return rc == 0 ? 0 : -1;
}

static int ev_cond_wait(void *cond, void *lock, const struct timeval *tv)
{
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
        EVTHREAD_LOCK_API_VERSION, EVTHREAD_LOCKTYPE_RECURSIVE,
        ev_lock_alloc, ev_lock_free, ev_lock_lock, ev_lock_unlock};
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
