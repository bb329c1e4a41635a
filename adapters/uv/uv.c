/* SPDX-License-Identifier: MIT */
/*
 * adapters/uv/uv.c: libforksafe-uv. Calls uv_loop_fork() in the child on
 * every tracked libuv loop, as libuv requires, and registers each loop's
 * work-queue mutex so pool threads are not inside it at the fork.
 *
 * DESIGN: one callback entry holds the list of tracked loops (the adapter's
 * own array, guarded by uv_mu: taken in prepare, released in the parent,
 * re-created in the child). Each loop's wq_mutex is a separate mutex entry,
 * so the core preserves its state like any other registered lock.
 */
#include <forksafe/uv.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#define UV_LIST_RANK (FORKSAFE_RANK_LIBRARY + 200u)
#define UV_WQ_RANK (FORKSAFE_RANK_LIBRARY + 210u)

static pthread_mutex_t uv_mu = PTHREAD_MUTEX_INITIALIZER;
static uv_loop_t **uv_list;      /* guarded by uv_mu */
static size_t uv_count, uv_cap;  /* guarded by uv_mu */
static int uv_child_error;       /* written only in the child callback */
static atomic_int uv_registered;
static char uv_key; /* the key of the adapter's callback entry */

static int uv_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    if (deadline)
        return pthread_mutex_clocklock(&uv_mu, CLOCK_MONOTONIC, deadline);
    return pthread_mutex_lock(&uv_mu);
}

static void uv_parent(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&uv_mu);
}

static void uv_child(void *ctx)
{
    (void)ctx;
    /* Runs after the core restored every wq_mutex (higher rank, so visited
       first in the child). uv_loop_fork() must precede any other use of
       the loop; running it here guarantees that for all later code. */
    uv_child_error = 0;
    for (size_t i = 0; i < uv_count; i++) {
        int rc = uv_loop_fork(uv_list[i]);
        if (rc != 0 && uv_child_error == 0)
            uv_child_error = rc;
    }
    pthread_mutex_init(&uv_mu, NULL);
}

/* Register the callback entry once; never with uv_mu held (registration
   waits for a fork in progress, whose prepare wants uv_mu). */
static int uv_register(void)
{
    if (atomic_load(&uv_registered))
        return 0;
    static const struct forksafe_ops ops = {uv_prepare, uv_parent, uv_child};
    int rc = forksafe_register_ops(&uv_key, "uv: tracked loops",
                                   UV_LIST_RANK, &ops);
    if (rc != 0 && rc != EEXIST)
        return rc;
    atomic_store(&uv_registered, 1);
    return forksafe_register_adapter("uv");
}

/* Index of loop in the list, or uv_count. Caller holds uv_mu. */
static size_t uv_find(const uv_loop_t *loop)
{
    size_t i = 0;
    while (i < uv_count && uv_list[i] != loop)
        i++;
    return i;
}

/* Register loop->wq_mutex, then list loop for uv_loop_fork() in children.
   0 or an errno value; nothing changed on error. */
int forksafe_uv_track(uv_loop_t *loop)
{
    if (!loop)
        return EINVAL;
    int rc = uv_register();
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&uv_mu);
    int known = uv_find(loop) < uv_count;
    pthread_mutex_unlock(&uv_mu);
    if (known)
        return 0;
    /* Register the mutex before listing the loop: a fork in between then
       only covers the mutex, which is always correct. */
    rc = forksafe_register_mutex(&loop->wq_mutex, "uv: loop wq_mutex",
                                 UV_WQ_RANK);
    if (rc == EEXIST)
        return 0; /* a concurrent forksafe_uv_track() of the same loop */
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&uv_mu);
    if (uv_count == uv_cap) {
        size_t cap = uv_cap ? 2 * uv_cap : 8;
        uv_loop_t **l = realloc(uv_list, cap * sizeof *l);
        if (!l) {
            pthread_mutex_unlock(&uv_mu);
            forksafe_unregister(&loop->wq_mutex);
            return ENOMEM;
        }
        uv_list = l;
        uv_cap = cap;
    }
    uv_list[uv_count++] = loop;
    pthread_mutex_unlock(&uv_mu);
    return 0;
}

/* Unregister loop->wq_mutex, then unlist loop. 0, EINVAL, ENOENT or
   EDEADLK; nothing changed on error. */
int forksafe_uv_untrack(uv_loop_t *loop)
{
    if (!loop)
        return EINVAL;
    pthread_mutex_lock(&uv_mu);
    int known = uv_find(loop) < uv_count;
    pthread_mutex_unlock(&uv_mu);
    if (!known)
        return ENOENT;
    /* Unregister first, so a refusal (EDEADLK) changes nothing. A fork
       between the two steps still calls uv_loop_fork(), which is right. */
    int rc = forksafe_unregister(&loop->wq_mutex);
    if (rc != 0 && rc != ENOENT)
        return rc;
    pthread_mutex_lock(&uv_mu);
    size_t i = uv_find(loop);
    if (i < uv_count)
        uv_list[i] = uv_list[--uv_count];
    pthread_mutex_unlock(&uv_mu);
    return 0;
}

/* 0, or the first uv_loop_fork() error in this child at the last fork. */
int forksafe_uv_fork_error(void)
{
    return uv_child_error;
}
