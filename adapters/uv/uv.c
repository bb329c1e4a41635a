/* SPDX-License-Identifier: MIT */
/*
 * adapters/uv/uv.c: libforksafe-uv. Calls uv_loop_fork() in the child on
 * every tracked libuv loop, as libuv requires, and registers each loop's
 * work-queue mutex so pool threads are not inside it at the fork.
 *
 * DESIGN: one callback entry holds the list of tracked loops (the common
 * helper's, adapters/common/adapter.h: its list lock is taken in prepare,
 * released in the parent, re-created in the child). Each loop's wq_mutex
 * is a separate mutex entry, so the core preserves its state like any
 * other registered lock; all of them share one rank (no loop's wq_mutex is
 * taken while another's is held, and none is ordered against another).
 */
#include <forksafe/uv.h>

#include "../common/adapter.h"

#include <errno.h>

static struct forksafe__list uv_loops =
    FORKSAFE__LIST_INIT(uv_loop_t *, uv_loop_t *);
static int uv_child_error; /* written only in the child callback */

static void uv_child(void)
{
    /* Runs after the core restored every wq_mutex (higher rank, so visited
       first in the child). uv_loop_fork() must precede any other use of
       the loop; running it here guarantees that for all later code. */
    uv_child_error = 0;
    for (size_t i = 0; i < uv_loops.n; i++) {
        int rc = uv_loop_fork(*(uv_loop_t **)forksafe__list_at(&uv_loops, i));
        if (rc != 0 && uv_child_error == 0)
            uv_child_error = rc;
    }
}

static const struct forksafe__adapter_hooks hooks = {
    .tracked = &uv_loops,
    .child = uv_child,
};
FORKSAFE__ADAPTER_DEFINE(uv, "uv: tracked loops", FORKSAFE_UV_RANK, &hooks)

/* Register loop->wq_mutex, then list loop for uv_loop_fork() in children.
   0 or an errno value; nothing changed on error. */
int forksafe_uv_track(uv_loop_t *loop)
{
    int rc = forksafe__adapter_enter(&ad, loop);
    if (rc != 0)
        return rc;
    rc = forksafe__adapter_reserve(&ad, &uv_loops, &loop);
    int known = rc == EEXIST;
    if (known)
        rc = 0;
    /* Register the mutex before listing the loop: a fork in between then
       only covers the mutex, which is always correct. */
    if (!known && rc == 0)
        rc = forksafe_register_mutex(&loop->wq_mutex, "uv: loop wq_mutex",
                                     FORKSAFE_UV_RANK_WQ);
    if (!known && rc == 0) {
        forksafe__adapter_add(&ad, &uv_loops,
                              &loop); /* room reserved, api held */
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Unregister loop->wq_mutex, then unlist loop. 0, EINVAL, ENOENT or
   EDEADLK; nothing changed on error. */
int forksafe_uv_untrack(uv_loop_t *loop)
{
    if (!loop)
        return EINVAL;
    forksafe__adapter_enter_plain(&ad);
    int rc = forksafe__list_find(&uv_loops, &loop) < uv_loops.n ? 0 : ENOENT;
    /* Unregister first, so a refusal (EDEADLK) changes nothing. A fork
       between the two steps still calls uv_loop_fork(), which is right. */
    if (rc == 0) {
        rc = forksafe_unregister(&loop->wq_mutex);
        if (rc == ENOENT)
            rc = 0;
    }
    if (rc == 0) {
        forksafe__adapter_remove(&ad, &uv_loops, &loop, NULL);
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* 0, or the first uv_loop_fork() error in this child at the last fork. */
int forksafe_uv_fork_error(void)
{
    return uv_child_error;
}
