/* SPDX-License-Identifier: MIT */
/*
 * adapters/common/adapter.c: install/uninstall, the one callback entry
 * and the tracked-object arrays shared by every adapter (see adapter.h).
 * Linked statically into each libforksafe-<lib>; compiled with hidden
 * visibility, so none of it is exported.
 */
#include "adapter.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ fork callbacks */

/* mu by deadline (absolute CLOCK_MONOTONIC). pthread_mutex_clocklock()
   is glibc's (2.30); elsewhere the time left is turned into the
   CLOCK_REALTIME deadline pthread_mutex_timedlock() takes. */
static int lock_until(pthread_mutex_t *mu, const struct timespec *deadline)
{
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
    return pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, deadline);
#else
    struct timespec now, rt;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long left = (long long)(deadline->tv_sec - now.tv_sec) * 1000000000ll +
                     (deadline->tv_nsec - now.tv_nsec);
    if (left < 0)
        left = 0;
    clock_gettime(CLOCK_REALTIME, &rt);
    left += rt.tv_nsec;
    rt.tv_sec += (time_t)(left / 1000000000ll);
    rt.tv_nsec = (long)(left % 1000000000ll);
    return pthread_mutex_timedlock(mu, &rt);
#endif
}

static int ad_prepare(void *ctx, const struct timespec *deadline)
{
    struct forksafe__adapter *a = ctx;
    /* A deadline comes from forksafe_fork(); a plain fork() passes none. */
    int rc =
        deadline ? lock_until(&a->mu, deadline) : pthread_mutex_lock(&a->mu);
    if (rc != 0)
        return rc;
    if (a->hooks && a->hooks->prepare) {
        rc = a->hooks->prepare(deadline);
        if (rc != 0)
            pthread_mutex_unlock(&a->mu);
    }
    return rc;
}

static void ad_parent(void *ctx)
{
    struct forksafe__adapter *a = ctx;
    if (a->hooks && a->hooks->parent)
        a->hooks->parent();
    pthread_mutex_unlock(&a->mu);
}

static void ad_child(void *ctx)
{
    struct forksafe__adapter *a = ctx;
    if (a->hooks && a->hooks->child)
        a->hooks->child();
    /* The forking thread holds mu (a normal mutex, taken in prepare);
       api can only be held by a thread that is gone. Re-creating both is
       the one way that works for each. */
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->api, NULL);
}

/* ------------------------------------------------- install, uninstall */

static int install_locked(struct forksafe__adapter *a)
{
    static const struct forksafe_ops ops = {ad_prepare, ad_parent, ad_child};
    if (a->installed)
        return 0;
    int rc = a->hooks && a->hooks->install ? a->hooks->install() : 0;
    if (rc != 0)
        return rc;
    rc = forksafe_register_ops(a, a->entry, a->rank, &ops);
    if (rc == 0) {
        rc = forksafe_register_adapter(a->name);
        if (rc != 0)
            forksafe_unregister(a);
    }
    if (rc != 0) {
        if (a->hooks && a->hooks->uninstall)
            a->hooks->uninstall();
        return rc;
    }
    a->installed = true;
    return 0;
}

int forksafe__adapter_install(struct forksafe__adapter *a)
{
    pthread_mutex_lock(&a->api);
    int rc = install_locked(a);
    pthread_mutex_unlock(&a->api);
    return rc;
}

int forksafe__adapter_uninstall(struct forksafe__adapter *a)
{
    int rc = 0;
    pthread_mutex_lock(&a->api);
    if (!a->installed)
        rc = ENOENT;
    else if (a->hooks && ((a->hooks->tracked && a->hooks->tracked->n > 0) ||
                          (a->hooks->busy && a->hooks->busy())))
        rc = EBUSY;
    else
        rc = forksafe_unregister(a);
    if (rc == 0) {
        if (a->hooks && a->hooks->uninstall)
            a->hooks->uninstall();
        a->installed = false;
    }
    pthread_mutex_unlock(&a->api);
    return rc;
}

int forksafe__adapter_refused_in_fork(struct forksafe__adapter *a)
{
    return forksafe_adapter_installed(a->name) &&
                   forksafe_register_adapter(a->name) == EDEADLK
               ? EDEADLK
               : 0;
}

int forksafe__adapter_enter(struct forksafe__adapter *a, const void *obj)
{
    if (obj == NULL)
        return EINVAL;
    int rc = forksafe__adapter_refused_in_fork(a);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&a->api);
    rc = install_locked(a);
    if (rc != 0)
        pthread_mutex_unlock(&a->api);
    return rc;
}

void forksafe__adapter_enter_plain(struct forksafe__adapter *a)
{
    pthread_mutex_lock(&a->api);
}

void forksafe__adapter_leave(struct forksafe__adapter *a)
{
    pthread_mutex_unlock(&a->api);
}

void forksafe__adapter_lock(struct forksafe__adapter *a)
{
    pthread_mutex_lock(&a->mu);
}

void forksafe__adapter_unlock(struct forksafe__adapter *a)
{
    pthread_mutex_unlock(&a->mu);
}

/* ------------------------------------------------------------- arrays */

void *forksafe__list_at(const struct forksafe__list *l, size_t i)
{
    return (char *)l->items + i * l->size;
}

size_t forksafe__list_find(const struct forksafe__list *l, const void *key)
{
    size_t i = 0;
    while (i < l->n && memcmp(forksafe__list_at(l, i), key, l->keysize) != 0)
        i++;
    return i;
}

int forksafe__list_reserve(struct forksafe__list *l)
{
    if (l->n < l->cap)
        return 0;
    size_t cap = l->cap ? 2 * l->cap : 8;
    /* Under mu, so no fork (whose child handler may read the array) can
       see it half-moved. */
    void *p = realloc(l->items, cap * l->size);
    if (p == NULL)
        return ENOMEM;
    l->items = p;
    l->cap = cap;
    return 0;
}

int forksafe__list_add(struct forksafe__list *l, const void *item)
{
    if (forksafe__list_find(l, item) < l->n)
        return EEXIST;
    int rc = forksafe__list_reserve(l);
    if (rc != 0)
        return rc;
    memcpy(forksafe__list_at(l, l->n), item, l->size);
    l->n++;
    return 0;
}

int forksafe__list_remove(struct forksafe__list *l, const void *key, void *out)
{
    size_t i = forksafe__list_find(l, key);
    if (i == l->n)
        return ENOENT;
    if (out != NULL)
        memcpy(out, forksafe__list_at(l, i), l->size);
    memmove(forksafe__list_at(l, i), forksafe__list_at(l, i + 1),
            (l->n - i - 1) * l->size);
    l->n--;
    return 0;
}

int forksafe__adapter_reserve(struct forksafe__adapter *a,
                              struct forksafe__list *l, const void *key)
{
    pthread_mutex_lock(&a->mu);
    int rc =
        forksafe__list_find(l, key) < l->n ? EEXIST : forksafe__list_reserve(l);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int forksafe__adapter_add(struct forksafe__adapter *a, struct forksafe__list *l,
                          const void *item)
{
    pthread_mutex_lock(&a->mu);
    int rc = forksafe__list_add(l, item);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

int forksafe__adapter_remove(struct forksafe__adapter *a,
                             struct forksafe__list *l, const void *key,
                             void *out)
{
    pthread_mutex_lock(&a->mu);
    int rc = forksafe__list_remove(l, key, out);
    pthread_mutex_unlock(&a->mu);
    return rc;
}
