/* SPDX-License-Identifier: MIT */
/*
 * adapters/zmq/zmq.c: libforksafe-zmq. Remembers which ZeroMQ contexts a
 * process owns, so that after fork() the child knows which ones it merely
 * inherited and drops them by leaking them, never calling into libzmq.
 *
 * DESIGN: one callback entry covers every tracked context. The list of
 * contexts is the adapter's own, guarded by zmq_mu, which the prepare
 * callback takes (so no list update is half done at the fork) and the child
 * re-creates. The child only flips a flag in each list element: no system
 * call, no allocation, nothing in libzmq.
 */
#include <forksafe/zmq.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <zmq.h>

#define ZMQ_RANK (FORKSAFE_RANK_LIBRARY + 700u)

struct zmq_entry {
    void *ctx;
    int inherited; /* 1 once a fork has happened since it was tracked */
};

static pthread_mutex_t zmq_mu = PTHREAD_MUTEX_INITIALIZER;
static struct zmq_entry *zmq_list; /* guarded by zmq_mu */
static size_t zmq_count, zmq_cap;  /* guarded by zmq_mu */
static atomic_int zmq_registered;
static char zmq_key; /* the key of the adapter's callback entry */

static int zmq_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    /* A deadline comes from forksafe_fork(); plain fork() passes none. */
    if (deadline)
        return pthread_mutex_clocklock(&zmq_mu, CLOCK_MONOTONIC, deadline);
    return pthread_mutex_lock(&zmq_mu);
}

static void zmq_parent(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&zmq_mu);
}

static void zmq_child(void *ctx)
{
    (void)ctx;
    /* Everything tracked was created by an ancestor: it is leaked on
       purpose, because terminating it here cannot complete and, in libzmq
       builds without a PID check, would signal the parent's threads. */
    for (size_t i = 0; i < zmq_count; i++)
        zmq_list[i].inherited = 1;
    pthread_mutex_init(&zmq_mu, NULL);
}

/* Register the adapter's callback entry once. Never called with zmq_mu
   held: registration waits for a fork in progress, whose prepare wants
   zmq_mu. A concurrent first call may see EEXIST, which is success. */
static int zmq_register(void)
{
    if (atomic_load(&zmq_registered))
        return 0;
    static const struct forksafe_ops ops = {zmq_prepare, zmq_parent,
                                            zmq_child};
    int rc = forksafe_register_ops(&zmq_key, "zmq: tracked contexts",
                                   ZMQ_RANK, &ops);
    if (rc != 0 && rc != EEXIST)
        return rc;
    atomic_store(&zmq_registered, 1);
    return forksafe_register_adapter("zmq");
}

/* Index of ctx in the list, or zmq_count. Caller holds zmq_mu. */
static size_t zmq_find(const void *ctx)
{
    size_t i = 0;
    while (i < zmq_count && zmq_list[i].ctx != ctx)
        i++;
    return i;
}

/* List ctx as owned by this process. 0, EINVAL or ENOMEM (or the core's
   registration error on first use). */
int forksafe_zmq_track(void *ctx)
{
    if (!ctx)
        return EINVAL;
    int rc = zmq_register();
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&zmq_mu);
    if (zmq_find(ctx) < zmq_count) {
        pthread_mutex_unlock(&zmq_mu);
        return 0;
    }
    if (zmq_count == zmq_cap) {
        size_t cap = zmq_cap ? 2 * zmq_cap : 8;
        struct zmq_entry *l = realloc(zmq_list, cap * sizeof *l);
        if (!l) {
            pthread_mutex_unlock(&zmq_mu);
            return ENOMEM;
        }
        zmq_list = l;
        zmq_cap = cap;
    }
    zmq_list[zmq_count].ctx = ctx;
    zmq_list[zmq_count].inherited = 0;
    zmq_count++;
    pthread_mutex_unlock(&zmq_mu);
    return 0;
}

/* Remove element i. Caller holds zmq_mu. */
static void zmq_remove(size_t i)
{
    zmq_list[i] = zmq_list[--zmq_count];
}

/* Unlist ctx without terminating it. 0, EINVAL or ENOENT. */
int forksafe_zmq_untrack(void *ctx)
{
    if (!ctx)
        return EINVAL;
    pthread_mutex_lock(&zmq_mu);
    size_t i = zmq_find(ctx);
    int rc = ENOENT;
    if (i < zmq_count) {
        zmq_remove(i);
        rc = 0;
    }
    pthread_mutex_unlock(&zmq_mu);
    return rc;
}

/* 1 if ctx is listed and was inherited across a fork, else 0. */
int forksafe_zmq_inherited(void *ctx)
{
    if (!ctx)
        return 0;
    pthread_mutex_lock(&zmq_mu);
    size_t i = zmq_find(ctx);
    int r = i < zmq_count && zmq_list[i].inherited;
    pthread_mutex_unlock(&zmq_mu);
    return r;
}

/* Terminate an owned ctx (retrying EINTR) or leak an inherited one, then
   unlist it. 0, EINVAL, ENOENT, or the errno of zmq_ctx_term(). */
int forksafe_zmq_term(void *ctx)
{
    if (!ctx)
        return EINVAL;
    pthread_mutex_lock(&zmq_mu);
    size_t i = zmq_find(ctx);
    if (i == zmq_count) {
        pthread_mutex_unlock(&zmq_mu);
        return ENOENT;
    }
    int inherited = zmq_list[i].inherited;
    pthread_mutex_unlock(&zmq_mu);
    if (!inherited) {
        /* zmq_ctx_term() blocks until the sockets are closed; it is not
           called with zmq_mu held, so forks may proceed meanwhile. EINTR
           means a signal interrupted it: the documented answer is to call
           it again. */
        int rc;
        while ((rc = zmq_ctx_term(ctx)) != 0 && errno == EINTR)
            ;
        if (rc != 0)
            return errno;
    }
    /* If the process forked while zmq_ctx_term() ran, the entry may have
       been marked inherited in the child meanwhile; either way it is gone. */
    pthread_mutex_lock(&zmq_mu);
    i = zmq_find(ctx);
    if (i < zmq_count)
        zmq_remove(i);
    pthread_mutex_unlock(&zmq_mu);
    return 0;
}
