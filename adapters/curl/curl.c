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
 * the old one reaches the parent's peer. All lists are the adapter's own,
 * guarded by cu_mu (taken in prepare, released in the parent, re-created in
 * the child); share mutexes are registered with the core one by one.
 */
#include <forksafe/curl.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CU_SHARE_RANK (FORKSAFE_RANK_LIBRARY + 300u)
#define CU_SOCKETS_RANK (FORKSAFE_RANK_LIBRARY + 390u)

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

static pthread_mutex_t cu_mu = PTHREAD_MUTEX_INITIALIZER;
static int *cu_fds;                   /* recorded sockets; cu_mu */
static size_t cu_nfds, cu_capfds;     /* cu_mu */
static CURL **cu_easy;                /* tracked handles; cu_mu */
static size_t cu_neasy, cu_capeasy;   /* cu_mu */
static struct cu_share **cu_shares;   /* cu_mu */
static size_t cu_nshares, cu_capshares; /* cu_mu */
static int cu_dead = -1;              /* the dead socket; set once, cu_mu */
static atomic_int cu_registered;
static char cu_key; /* the key of the adapter's callback entry */

static int cu_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    if (deadline)
        return pthread_mutex_clocklock(&cu_mu, CLOCK_MONOTONIC, deadline);
    return pthread_mutex_lock(&cu_mu);
}

static void cu_parent(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&cu_mu);
}

static void cu_child(void *ctx)
{
    (void)ctx;
    /* dup3 onto an open descriptor never needs a free slot, so this cannot
       fail for lack of descriptors; it drops only the child's reference to
       the parent's connection. */
    for (size_t i = 0; i < cu_nfds; i++)
        if (cu_fds[i] != cu_dead)
            dup3(cu_dead, cu_fds[i], O_CLOEXEC);
    pthread_mutex_init(&cu_mu, NULL);
}

/* Register the callback entry once; never with cu_mu held (registration
   waits for a fork in progress, whose prepare wants cu_mu). */
static int cu_register(void)
{
    if (atomic_load(&cu_registered))
        return 0;
    static const struct forksafe_ops ops = {cu_prepare, cu_parent, cu_child};
    int rc = forksafe_register_ops(&cu_key, "curl: tracked sockets",
                                   CU_SOCKETS_RANK, &ops);
    if (rc != 0 && rc != EEXIST)
        return rc;
    atomic_store(&cu_registered, 1);
    return forksafe_register_adapter("curl");
}

/* Make room for one more element in the array arr of n elements and
   capacity cap. Caller holds cu_mu. Evaluates to 0 or ENOMEM. A macro, so
   each array keeps its own type. */
#define CU_RESERVE(arr, n, cap)                                               \
    cu_grow((void *)&(arr), (n), &(cap), sizeof *(arr))

static int cu_grow(void *arrp, size_t n, size_t *cap, size_t sz)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 16;
    void *old;
    memcpy(&old, arrp, sizeof old);
    void *p = realloc(old, c * sz);
    if (!p)
        return ENOMEM;
    memcpy(arrp, &p, sizeof p);
    *cap = c;
    return 0;
}

static curl_socket_t cu_open(void *clientp, curlsocktype purpose,
                             struct curl_sockaddr *addr)
{
    (void)clientp;
    (void)purpose;
    curl_socket_t fd = CURL_SOCKET_BAD;
    /* Create and record under the lock, so a fork sees the socket either
       recorded or not yet created. Failing the connection is better than
       leaving a socket the child would share unknowingly. */
    pthread_mutex_lock(&cu_mu);
    if (CU_RESERVE(cu_fds, cu_nfds, cu_capfds) == 0) {
        fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC,
                    addr->protocol);
        if (fd >= 0)
            cu_fds[cu_nfds++] = fd;
    }
    pthread_mutex_unlock(&cu_mu);
    return fd;
}

static int cu_close(void *clientp, curl_socket_t fd)
{
    (void)clientp;
    /* Forget before closing: until close() the number cannot be reused by
       another socket, so the list never names a stranger. */
    pthread_mutex_lock(&cu_mu);
    for (size_t i = 0; i < cu_nfds; i++) {
        if (cu_fds[i] == fd) {
            cu_fds[i] = cu_fds[--cu_nfds];
            break;
        }
    }
    pthread_mutex_unlock(&cu_mu);
    return close(fd);
}

/* Create the dead socket once: a socketpair end whose peer is closed, so
   reads see end-of-file and writes fail with EPIPE (libcurl sends with
   MSG_NOSIGNAL). Caller holds cu_mu. Returns 0 or an errno value. */
static int cu_dead_make(void)
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

static size_t cu_easy_find(const CURL *easy)
{
    size_t i = 0;
    while (i < cu_neasy && cu_easy[i] != easy)
        i++;
    return i;
}

/* Record every socket libcurl opens for easy from now on (its socket
   callbacks are replaced). 0 or an errno value. */
int forksafe_curl_track(CURL *easy)
{
    if (!easy)
        return EINVAL;
    int rc = cu_register();
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&cu_mu);
    rc = cu_dead_make();
    if (rc == 0)
        rc = CU_RESERVE(cu_easy, cu_neasy, cu_capeasy);
    pthread_mutex_unlock(&cu_mu);
    if (rc != 0)
        return rc;
    /* Set the options every time, even for a known handle: the address may
       belong to a new handle after curl_easy_cleanup() of an old one. */
    if (curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, cu_open) ||
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, (void *)NULL) ||
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, cu_close) ||
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, (void *)NULL))
        return EINVAL;
    pthread_mutex_lock(&cu_mu);
    if (cu_easy_find(easy) == cu_neasy)
        cu_easy[cu_neasy++] = easy; /* room was reserved above */
    pthread_mutex_unlock(&cu_mu);
    return 0;
}

/* Restore libcurl's default socket callbacks on easy. 0, EINVAL or
   ENOENT. */
int forksafe_curl_untrack(CURL *easy)
{
    if (!easy)
        return EINVAL;
    pthread_mutex_lock(&cu_mu);
    size_t i = cu_easy_find(easy);
    int known = i < cu_neasy;
    if (known)
        cu_easy[i] = cu_easy[--cu_neasy];
    pthread_mutex_unlock(&cu_mu);
    if (!known)
        return ENOENT;
    /* Connections opened while tracked keep cu_close() (libcurl copies the
       callback into each connection), so they are forgotten when closed. */
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                     (curl_opensocket_callback)NULL);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                     (curl_closesocket_callback)NULL);
    return 0;
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

static size_t cu_share_find(const CURLSH *sh)
{
    size_t i = 0;
    while (i < cu_nshares && cu_shares[i]->sh != sh)
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
    if (!sh)
        return EINVAL;
    int rc = cu_register();
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&cu_mu);
    int known = cu_share_find(sh) < cu_nshares;
    if (!known)
        rc = CU_RESERVE(cu_shares, cu_nshares, cu_capshares);
    pthread_mutex_unlock(&cu_mu);
    if (known)
        return EEXIST;
    if (rc != 0)
        return rc;

    struct cu_share *s = calloc(1, sizeof *s);
    if (!s)
        return ENOMEM;
    s->sh = sh;
    for (int d = 0; d < CURL_LOCK_DATA_LAST; d++)
        pthread_mutex_init(&s->mu[d], NULL);
    /* Registration order does not matter: the rank fixes the order. */
    for (int d = 1; d < CURL_LOCK_DATA_LAST; d++) {
        rc = forksafe_register_mutex(&s->mu[d], cu_lock_names[d],
                                     CU_SHARE_RANK + (unsigned)d);
        if (rc != 0) {
            cu_share_unregister(s, d);
            free(s);
            return rc;
        }
    }
    /* curl_share_setopt() refuses every option while the share is in use,
       so either the first call fails and nothing changed, or all succeed. */
    rc = cu_share_errno(curl_share_setopt(sh, CURLSHOPT_USERDATA, s));
    if (rc == 0)
        rc = cu_share_errno(curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, cu_lock));
    if (rc == 0)
        rc = cu_share_errno(
            curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, cu_unlock));
    if (rc != 0) {
        cu_share_unregister(s, CURL_LOCK_DATA_LAST);
        free(s);
        return rc;
    }
    pthread_mutex_lock(&cu_mu);
    cu_shares[cu_nshares++] = s; /* room was reserved above */
    pthread_mutex_unlock(&cu_mu);
    return 0;
}

/* Remove the lock callbacks from sh (not in use) and free its mutexes.
   0, EINVAL, ENOENT, EBUSY or EDEADLK. */
int forksafe_curl_unshare(CURLSH *sh)
{
    if (!sh)
        return EINVAL;
    pthread_mutex_lock(&cu_mu);
    size_t i = cu_share_find(sh);
    struct cu_share *s = i < cu_nshares ? cu_shares[i] : NULL;
    pthread_mutex_unlock(&cu_mu);
    if (!s)
        return ENOENT;
    int rc = cu_share_errno(
        curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, (curl_lock_function)NULL));
    if (rc != 0)
        return rc;
    curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, (curl_unlock_function)NULL);
    curl_share_setopt(sh, CURLSHOPT_USERDATA, (void *)NULL);
    cu_share_unregister(s, CURL_LOCK_DATA_LAST);
    pthread_mutex_lock(&cu_mu);
    i = cu_share_find(sh);
    if (i < cu_nshares)
        cu_shares[i] = cu_shares[--cu_nshares];
    pthread_mutex_unlock(&cu_mu);
    for (int d = 0; d < CURL_LOCK_DATA_LAST; d++)
        pthread_mutex_destroy(&s->mu[d]);
    free(s);
    return 0;
}
