/* SPDX-License-Identifier: MIT */
/*
 * adapters/curl/curl.c: libforksafe-curl. Fork-safe lock callbacks for
 * share handles, and socket bookkeeping for tracked easy handles so that a
 * child never reuses, writes on or closes a connection of its parent.
 *
 * DESIGN: every socket libcurl opens for a tracked handle goes through
 * cu_open() and is recorded in cu_fds; cu_close() forgets it before closing
 * it. In the child, each recorded descriptor number is pointed (dup3) at
 * one dead socket made when tracking began: libcurl's own liveness check
 * then drops the connection and opens a new one, and nothing it does to
 * the old one reaches the parent's peer. The lists are the adapter's own,
 * guarded by the common helper's list lock (adapters/common/adapter.h:
 * taken in prepare, released in the parent, re-created in the child).
 * Share mutexes are registered with the core one by one, all at one rank:
 * libcurl nests them in no documented order (7.88 takes DNS while holding
 * CONNECT), and the core takes one rank's entries as a set without
 * assuming any order among them.
 */
#include <forksafe/curl.h>

#include "../common/adapter.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* One mutex per curl_lock_data value (index 0, CURL_LOCK_DATA_NONE, is
   never locked by libcurl and never registered). */
struct cu_share {
    CURLSH *sh;
    pthread_mutex_t mu[CURL_LOCK_DATA_LAST];
};

static const char *const cu_lock_names[CURL_LOCK_DATA_LAST] = {
    [CURL_LOCK_DATA_SHARE] = "curl: share lock SHARE",
    [CURL_LOCK_DATA_COOKIE] = "curl: share lock COOKIE",
    [CURL_LOCK_DATA_DNS] = "curl: share lock DNS",
    [CURL_LOCK_DATA_SSL_SESSION] = "curl: share lock SSL_SESSION",
    [CURL_LOCK_DATA_CONNECT] = "curl: share lock CONNECT",
    [CURL_LOCK_DATA_PSL] = "curl: share lock PSL",
    [CURL_LOCK_DATA_HSTS] = "curl: share lock HSTS",
};

/* Recorded sockets: changed from libcurl's callbacks, under the list lock
   only. */
static struct forksafe__list cu_fds = FORKSAFE__LIST_INIT(int, int);
/* Tracked easy handles and set-up shares (the struct cu_share pointers). */
static struct forksafe__list cu_easy = FORKSAFE__LIST_INIT(CURL *, CURL *);
static struct forksafe__list cu_shares =
    FORKSAFE__LIST_INIT(struct cu_share *, struct cu_share *);
static int cu_dead = -1; /* the dead socket; made once at install */

static void cu_child(void)
{
    /* dup3 onto an open descriptor never needs a free slot, so this cannot
       fail for lack of descriptors; it drops only the child's reference to
       the parent's connection. */
    for (size_t i = 0; i < cu_fds.n; i++) {
        int fd = *(int *)forksafe__list_at(&cu_fds, i);
        if (fd != cu_dead)
            dup3(cu_dead, fd, O_CLOEXEC);
    }
}

/* Create the dead socket once: a socketpair end whose peer is closed, so
   reads see end-of-file and writes fail with EPIPE (libcurl sends with
   MSG_NOSIGNAL). 0 or an errno value. */
static int cu_install(void)
{
    int sv[2];
    if (cu_dead >= 0)
        return 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return errno;
    close(sv[1]);
    cu_dead = sv[0];
    return 0;
}

static bool cu_busy(void)
{
    return cu_easy.n > 0 || cu_shares.n > 0;
}

static const struct forksafe__adapter_hooks hooks = {
    .install = cu_install,
    .busy = cu_busy,
    .child = cu_child,
};
FORKSAFE__ADAPTER_DEFINE(curl, "curl: tracked sockets", FORKSAFE_CURL_RANK,
                         &hooks)

static curl_socket_t cu_open(void *clientp, curlsocktype purpose,
                             struct curl_sockaddr *addr)
{
    (void)clientp;
    (void)purpose;
    curl_socket_t fd = CURL_SOCKET_BAD;
    /* Create and record under the lock, so a fork sees the socket either
       recorded or not yet created. Failing the connection is better than
       leaving a socket the child would share unknowingly. */
    forksafe__adapter_lock(&ad);
    if (forksafe__list_reserve(&cu_fds) == 0) {
        fd =
            socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
        if (fd >= 0)
            forksafe__list_add(&cu_fds, &fd);
    }
    forksafe__adapter_unlock(&ad);
    return fd;
}

static int cu_close(void *clientp, curl_socket_t fd)
{
    (void)clientp;
    /* Forget before closing: until close() the number cannot be reused by
       another socket, so the list never names a stranger. */
    forksafe__adapter_remove(&ad, &cu_fds, &fd, NULL);
    return close(fd);
}

/* Record every socket libcurl opens for easy from now on (its socket
   callbacks are replaced). 0 or an errno value. */
int forksafe_curl_track(CURL *easy)
{
    int rc = forksafe__adapter_enter(&ad, easy);
    if (rc != 0)
        return rc;
    /* Set the options every time, even for a known handle: the address may
       belong to a new handle after curl_easy_cleanup() of an old one. */
    if (curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, cu_open) ||
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, (void *)NULL) ||
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, cu_close) ||
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, (void *)NULL))
        rc = EINVAL;
    if (rc == 0) {
        forksafe__adapter_lock(&ad);
        rc = forksafe__list_add(&cu_easy, &easy);
        forksafe__adapter_unlock(&ad);
        if (rc == EEXIST)
            rc = 0;
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Restore libcurl's default socket callbacks on easy. 0, EINVAL or
   ENOENT. */
int forksafe_curl_untrack(CURL *easy)
{
    if (!easy)
        return EINVAL;
    forksafe__adapter_enter_plain(&ad);
    int rc = forksafe__adapter_remove(&ad, &cu_easy, &easy, NULL);
    if (rc == 0) {
        /* Connections opened while tracked keep cu_close() (libcurl copies
           the callback into each connection), so they are forgotten when
           closed. */
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                         (curl_opensocket_callback)NULL);
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                         (curl_closesocket_callback)NULL);
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

static void cu_lock(CURL *h, curl_lock_data data, curl_lock_access access,
                    void *userptr)
{
    (void)h;
    (void)access;
    struct cu_share *s = userptr;
    if (data > CURL_LOCK_DATA_NONE && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&s->mu[data]);
}

static void cu_unlock(CURL *h, curl_lock_data data, void *userptr)
{
    (void)h;
    struct cu_share *s = userptr;
    if (data > CURL_LOCK_DATA_NONE && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&s->mu[data]);
}

static int cu_share_errno(CURLSHcode c)
{
    switch (c) {
    case CURLSHE_OK:
        return 0;
    case CURLSHE_IN_USE:
        return EBUSY;
    case CURLSHE_NOMEM:
        return ENOMEM;
    default:
        return EINVAL;
    }
}

/* The index of sh's set-up in cu_shares, or cu_shares.n. */
static size_t cu_share_find(const CURLSH *sh)
{
    size_t i = 0;
    while (i < cu_shares.n &&
           (*(struct cu_share **)forksafe__list_at(&cu_shares, i))->sh != sh)
        i++;
    return i;
}

/* Unregister the mutexes [1, upto) of s; best effort, used to undo. */
static void cu_share_unregister(struct cu_share *s, int upto)
{
    for (int d = 1; d < upto; d++)
        forksafe_unregister(&s->mu[d]);
}

/* Give sh registered lock callbacks; on any error nothing changed.
   0, EINVAL, EEXIST, EBUSY, ENOMEM or EDEADLK. */
int forksafe_curl_share(CURLSH *sh)
{
    int rc = forksafe__adapter_enter(&ad, sh);
    if (rc != 0)
        return rc;
    struct cu_share *s = NULL;
    forksafe__adapter_lock(&ad);
    if (cu_share_find(sh) < cu_shares.n)
        rc = EEXIST;
    else
        rc = forksafe__list_reserve(&cu_shares);
    forksafe__adapter_unlock(&ad);
    if (rc == 0 && (s = calloc(1, sizeof *s)) == NULL)
        rc = ENOMEM;
    int d = 1;
    if (rc == 0) {
        s->sh = sh;
        for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
            pthread_mutex_init(&s->mu[i], NULL);
        /* All at one rank: no order among them is assumed. */
        for (; d < CURL_LOCK_DATA_LAST && rc == 0; d++)
            rc = forksafe_register_mutex(&s->mu[d], cu_lock_names[d],
                                         FORKSAFE_CURL_RANK_SHARE);
        if (rc != 0)
            d--; /* the one that failed is not registered */
    }
    /* curl_share_setopt() refuses every option while the share is in use,
       so either the first call fails and nothing changed, or all succeed. */
    if (rc == 0)
        rc = cu_share_errno(curl_share_setopt(sh, CURLSHOPT_USERDATA, s));
    if (rc == 0)
        rc = cu_share_errno(curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, cu_lock));
    if (rc == 0)
        rc = cu_share_errno(
            curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, cu_unlock));
    if (rc == 0) {
        forksafe__adapter_add(&ad, &cu_shares,
                              &s); /* room reserved, api held */
    } else if (s != NULL) {
        cu_share_unregister(s, d);
        free(s);
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Remove the lock callbacks from sh (not in use) and free its mutexes.
   0, EINVAL, ENOENT, EBUSY or EDEADLK. */
int forksafe_curl_unshare(CURLSH *sh)
{
    if (!sh)
        return EINVAL;
    forksafe__adapter_enter_plain(&ad);
    size_t i = cu_share_find(sh);
    struct cu_share *s =
        i < cu_shares.n ? *(struct cu_share **)forksafe__list_at(&cu_shares, i)
                        : NULL;
    /* Unregister one mutex first, so that a refusal (EDEADLK: called from
       a forksafe callback) changes nothing; the share in use (EBUSY) puts
       it back. */
    int rc = s ? forksafe_unregister(&s->mu[1]) : ENOENT;
    if (rc == 0) {
        rc = cu_share_errno(curl_share_setopt(sh, CURLSHOPT_LOCKFUNC,
                                              (curl_lock_function)NULL));
        if (rc != 0 &&
            forksafe_register_mutex(&s->mu[1], cu_lock_names[1],
                                    FORKSAFE_CURL_RANK_SHARE) != 0)
            rc = ENOMEM; /* mu[1] stays unregistered; the share is kept */
    }
    if (rc == 0) {
        curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, (curl_unlock_function)NULL);
        curl_share_setopt(sh, CURLSHOPT_USERDATA, (void *)NULL);
        for (int d = 2; d < CURL_LOCK_DATA_LAST; d++)
            forksafe_unregister(&s->mu[d]);
        forksafe__adapter_remove(&ad, &cu_shares, &s, NULL);
        for (int d = 0; d < CURL_LOCK_DATA_LAST; d++)
            pthread_mutex_destroy(&s->mu[d]);
        free(s);
    }
    forksafe__adapter_leave(&ad);
    return rc;
}
