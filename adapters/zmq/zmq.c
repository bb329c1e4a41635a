/* SPDX-License-Identifier: MIT */
/*
 * adapters/zmq/zmq.c: libforksafe-zmq. Remembers which ZeroMQ contexts a
 * process owns, so that after fork() the child knows which ones it merely
 * inherited and drops them by leaking them, never calling into libzmq.
 *
 * DESIGN: one callback entry covers every tracked context. The list of
 * contexts is the adapter's own, guarded by the common helper's list lock
 * (adapters/common/adapter.h), which prepare takes (so no list update is
 * half done at the fork) and the child re-creates. The child only flips a
 * flag in each list element: no system call, no allocation, nothing in
 * libzmq.
 */
#include <forksafe/zmq.h>

#include "../common/adapter.h"

#include <errno.h>
#include <zmq.h>

struct zmq_entry {
    void *ctx;
    int inherited; /* 1 once a fork has happened since it was tracked */
};

static struct forksafe__list zmq_ctxs =
    FORKSAFE__LIST_INIT(struct zmq_entry, void *);

static void zmq_child(void)
{
    /* Everything tracked was created by an ancestor: it is leaked on
       purpose, because terminating it here cannot complete and, in libzmq
       builds without a PID check, would signal the parent's threads. */
    for (size_t i = 0; i < zmq_ctxs.n; i++)
        ((struct zmq_entry *)forksafe__list_at(&zmq_ctxs, i))->inherited = 1;
}

static const struct forksafe__adapter_hooks hooks = {
    .tracked = &zmq_ctxs,
    .child = zmq_child,
};
FORKSAFE__ADAPTER_DEFINE(zmq, "zmq: tracked contexts", FORKSAFE_ZMQ_RANK,
                         &hooks)

/* List ctx as owned by this process. 0, EINVAL or ENOMEM (or the core's
   registration error on first use). */
int forksafe_zmq_track(void *ctx)
{
    int rc = forksafe__adapter_enter(&ad, ctx);
    if (rc != 0)
        return rc;
    struct zmq_entry e = {ctx, 0};
    rc = forksafe__adapter_add(&ad, &zmq_ctxs, &e);
    forksafe__adapter_leave(&ad);
    return rc == EEXIST ? 0 : rc;
}

/* Unlist ctx without terminating it. 0, EINVAL or ENOENT. */
int forksafe_zmq_untrack(void *ctx)
{
    if (!ctx)
        return EINVAL;
    forksafe__adapter_enter_plain(&ad);
    int rc = forksafe__adapter_remove(&ad, &zmq_ctxs, &ctx, NULL);
    forksafe__adapter_leave(&ad);
    return rc;
}

/* 1 if ctx is listed and was inherited across a fork, else 0. */
int forksafe_zmq_inherited(void *ctx)
{
    if (!ctx)
        return 0;
    forksafe__adapter_lock(&ad);
    size_t i = forksafe__list_find(&zmq_ctxs, &ctx);
    int r = i < zmq_ctxs.n &&
            ((struct zmq_entry *)forksafe__list_at(&zmq_ctxs, i))->inherited;
    forksafe__adapter_unlock(&ad);
    return r;
}

/* Terminate an owned ctx (retrying EINTR) or leak an inherited one, then
   unlist it. 0, EINVAL, ENOENT, or the errno of zmq_ctx_term(). */
int forksafe_zmq_term(void *ctx)
{
    if (!ctx)
        return EINVAL;
    int inherited = forksafe_zmq_inherited(ctx);
    forksafe__adapter_lock(&ad);
    int known = forksafe__list_find(&zmq_ctxs, &ctx) < zmq_ctxs.n;
    forksafe__adapter_unlock(&ad);
    if (!known)
        return ENOENT;
    if (!inherited) {
        /* zmq_ctx_term() blocks until the sockets are closed; it is not
           called with any adapter lock held, so forks may proceed
           meanwhile. EINTR means a signal interrupted it: the documented
           answer is to call it again. */
        int rc;
        while ((rc = zmq_ctx_term(ctx)) != 0 && errno == EINTR)
            ;
        if (rc != 0)
            return errno;
    }
    /* If the process forked while zmq_ctx_term() ran, the entry may have
       been marked inherited in the child meanwhile; either way it is gone. */
    forksafe_zmq_untrack(ctx);
    return 0;
}
