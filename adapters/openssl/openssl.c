/* SPDX-License-Identifier: MIT */
/*
 * adapters/openssl/openssl.c: the OpenSSL 3 adapter. In the child it
 * clears the error queue and cuts every tracked SSL object off from the
 * socket it shares with the parent; nothing changes in the parent.
 *
 * DESIGN. One callback entry and the adapter's own list of tracked SSL
 * objects behind s_list_mu, which prepare takes (one entry rather than one
 * per SSL object: there is no lock to order per object, only a list to
 * walk). Everything the child handler needs is made at track time (the
 * failing BIO) so that the handler allocates nothing and frees nothing:
 * it only stores flags and swaps pointers. s_api_mu serialises the public
 * functions and is never taken by a callback, so registration calls may
 * be made while holding it; s_list_mu is never held across one.
 */
#include <forksafe/openssl.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>

struct tracked {
    SSL *ssl;  /* with a reference held by the adapter */
    BIO *dead; /* the failing BIO to give it in the child */
};

static pthread_mutex_t s_api_mu = PTHREAD_MUTEX_INITIALIZER;
static bool s_installed;
static char s_key; /* the registry key of the adapter's entry */
static BIO_METHOD *s_dead_method;

static pthread_mutex_t s_list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct tracked *s_list;
static size_t s_n, s_cap;

/* ------------------------------------------------------- the failing BIO */

static int dead_write(BIO *b, const char *data, int len)
{
    (void)data;
    (void)len;
    BIO_clear_retry_flags(b); /* a hard failure, not "try again" */
    return -1;
}

static int dead_read(BIO *b, char *data, int len)
{
    (void)data;
    (void)len;
    BIO_clear_retry_flags(b);
    return -1;
}

static int dead_puts(BIO *b, const char *s)
{
    (void)s;
    BIO_clear_retry_flags(b);
    return -1;
}

static long dead_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)cmd;
    (void)num;
    (void)ptr;
    return 0; /* nothing pending, flush failed, no fd */
}

static int dead_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int dead_destroy(BIO *b)
{
    (void)b;
    return 1;
}

/* ------------------------------------------------------------ callbacks */

static int openssl_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    (void)deadline;
    /* Held only briefly by track/untrack, never around a blocking call. */
    pthread_mutex_lock(&s_list_mu);
    return 0;
}

static void openssl_parent(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&s_list_mu);
}

static void openssl_child(void *ctx)
{
    (void)ctx;
    /* The forking thread's errors belong to the parent's story. */
    ERR_clear_error();
    for (size_t i = 0; i < s_n; i++) {
        struct tracked *t = &s_list[i];
        if (t->dead == NULL)
            continue; /* already cut off by an earlier fork's child */
        SSL_set_quiet_shutdown(t->ssl, 1);
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        /* SSL_set_bio() drops the SSL's references to its old BIOs; add
           one for each first, so they are not freed (nor their socket
           closed) here: the child just stops using them. */
        BIO *r = SSL_get_rbio(t->ssl), *w = SSL_get_wbio(t->ssl);
        if (r != NULL)
            BIO_up_ref(r);
        if (w != NULL)
            BIO_up_ref(w);
        /* The same BIO for both: SSL_set_bio() consumes our one reference
           (see SSL_set_bio(3)). */
        SSL_set_bio(t->ssl, t->dead, t->dead);
        t->dead = NULL;
    }
    /* A normal mutex held by the forking thread: unlock works here. */
    pthread_mutex_unlock(&s_list_mu);
}

/* ------------------------------------------------------------ the API */

/* Install, with s_api_mu held. */
static int install_locked(void)
{
    static const struct forksafe_ops ops = {openssl_prepare, openssl_parent,
                                            openssl_child};
    if (s_installed)
        return 0;
    if (s_dead_method == NULL) {
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                     "forksafe child (always fails)");
        if (m == NULL || !BIO_meth_set_write(m, dead_write) ||
            !BIO_meth_set_read(m, dead_read) ||
            !BIO_meth_set_puts(m, dead_puts) ||
            !BIO_meth_set_ctrl(m, dead_ctrl) ||
            !BIO_meth_set_create(m, dead_create) ||
            !BIO_meth_set_destroy(m, dead_destroy)) {
            BIO_meth_free(m);
            return ENOMEM;
        }
        s_dead_method = m; /* kept for the life of the process */
    }
    int rc =
        forksafe_register_ops(&s_key, "openssl", FORKSAFE_OPENSSL_RANK, &ops);
    if (rc == 0) {
        rc = forksafe_register_adapter("openssl");
        if (rc != 0)
            forksafe_unregister(&s_key);
    }
    if (rc == 0)
        s_installed = true;
    return rc;
}

/* Contract in forksafe/openssl.h. */
int forksafe_openssl_install(void)
{
    pthread_mutex_lock(&s_api_mu);
    int rc = install_locked();
    pthread_mutex_unlock(&s_api_mu);
    return rc;
}

/* Contract in forksafe/openssl.h. The BIO method stays allocated: BIOs
   made from it may still live in children or SSL objects. */
int forksafe_openssl_uninstall(void)
{
    int rc;
    pthread_mutex_lock(&s_api_mu);
    if (!s_installed)
        rc = ENOENT;
    else if (s_n > 0)
        rc = EBUSY;
    else
        rc = forksafe_unregister(&s_key);
    if (rc == 0)
        s_installed = false;
    pthread_mutex_unlock(&s_api_mu);
    return rc;
}

/* Contract in forksafe/openssl.h. Everything the child handler will need
   (the failing BIO, a reference to ssl) is made here, in the parent. */
int forksafe_openssl_track(SSL *ssl)
{
    if (ssl == NULL)
        return EINVAL;
    pthread_mutex_lock(&s_api_mu);
    int rc = install_locked();
    for (size_t i = 0; rc == 0 && i < s_n; i++)
        if (s_list[i].ssl == ssl)
            rc = EEXIST;
    if (rc == 0 && s_n == s_cap) {
        size_t cap = s_cap ? 2 * s_cap : 8;
        struct tracked *grown = malloc(cap * sizeof *grown);
        if (grown == NULL) {
            rc = ENOMEM;
        } else {
            /* The child handler reads the array: switch under the list
               lock, free the old one only after. */
            pthread_mutex_lock(&s_list_mu);
            struct tracked *old = s_list;
            if (s_n > 0)
                memcpy(grown, old, s_n * sizeof *grown);
            s_list = grown;
            s_cap = cap;
            pthread_mutex_unlock(&s_list_mu);
            free(old);
        }
    }
    BIO *dead = NULL;
    if (rc == 0) {
        dead = BIO_new(s_dead_method);
        if (dead == NULL || !SSL_up_ref(ssl)) {
            BIO_free(dead);
            rc = ENOMEM;
        }
    }
    if (rc == 0) {
        pthread_mutex_lock(&s_list_mu);
        s_list[s_n].ssl = ssl;
        s_list[s_n].dead = dead;
        s_n++;
        pthread_mutex_unlock(&s_list_mu);
    }
    pthread_mutex_unlock(&s_api_mu);
    return rc;
}

/* Contract in forksafe/openssl.h. Frees outside the adapter's locks. */
int forksafe_openssl_untrack(SSL *ssl)
{
    if (ssl == NULL)
        return EINVAL;
    struct tracked gone = {NULL, NULL};
    pthread_mutex_lock(&s_api_mu);
    pthread_mutex_lock(&s_list_mu);
    for (size_t i = 0; i < s_n; i++) {
        if (s_list[i].ssl != ssl)
            continue;
        gone = s_list[i];
        for (size_t j = i + 1; j < s_n; j++)
            s_list[j - 1] = s_list[j];
        s_n--;
        break;
    }
    pthread_mutex_unlock(&s_list_mu);
    pthread_mutex_unlock(&s_api_mu);
    if (gone.ssl == NULL)
        return ENOENT;
    /* Outside our locks: freeing may run OpenSSL callbacks. In a child
       whose handler consumed it, dead is NULL (the SSL owns it now). */
    BIO_free(gone.dead);
    SSL_free(gone.ssl);
    return 0;
}
