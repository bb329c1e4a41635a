/*
 * adapters/event/event.c: libforksafe-event. Calls event_reinit() in the
 * child on every tracked libevent base, as libevent requires.
 *
 * DESIGN: one callback entry holds the list of tracked bases (the
 * adapter's own array, guarded by ev_mu: taken in prepare, released in the
 * parent, re-created in the child).
 */
#include <forksafe/event.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#define EV_RANK (FORKSAFE_RANK_LIBRARY + 400u)

static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static struct event_base **ev_list; /* guarded by ev_mu */
static size_t ev_count, ev_cap;     /* guarded by ev_mu */
static int ev_child_error;          /* written only in the child callback */
static atomic_int ev_registered;
static char ev_key; /* the key of the adapter's callback entry */

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
        if (event_reinit(ev_list[i]) != 0)
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
    while (i < ev_count && ev_list[i] != base)
        i++;
    return i;
}

int forksafe_event_track(struct event_base *base)
{
    if (!base)
        return EINVAL;
    int rc = ev_register();
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&ev_mu);
    if (ev_find(base) < ev_count) {
        pthread_mutex_unlock(&ev_mu);
        return 0;
    }
    if (ev_count == ev_cap) {
        size_t cap = ev_cap ? 2 * ev_cap : 8;
        struct event_base **l = realloc(ev_list, cap * sizeof *l);
        if (!l) {
            pthread_mutex_unlock(&ev_mu);
            return ENOMEM;
        }
        ev_list = l;
        ev_cap = cap;
    }
    ev_list[ev_count++] = base;
    pthread_mutex_unlock(&ev_mu);
    return 0;
}

int forksafe_event_untrack(struct event_base *base)
{
    if (!base)
        return EINVAL;
    pthread_mutex_lock(&ev_mu);
    size_t i = ev_find(base);
    int rc = ENOENT;
    if (i < ev_count) {
        ev_list[i] = ev_list[--ev_count];
        rc = 0;
    }
    pthread_mutex_unlock(&ev_mu);
    return rc;
}

int forksafe_event_fork_error(void)
{
    return ev_child_error;
}
