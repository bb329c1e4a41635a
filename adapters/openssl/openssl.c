/* SPDX-License-Identifier: MIT */
/*
 * adapters/openssl/openssl.c: the OpenSSL 3 adapter. In the child it
 * clears the error queue and cuts every tracked SSL object off from the
 * socket it shares with the parent; nothing changes in the parent.
 *
 * DESIGN. One callback entry and the adapter's own list of tracked SSL
 * objects behind the adapter's list lock, which prepare takes (one entry
 * rather than one per SSL object: there is no lock to order per object,
 * only a list to walk); both are the common adapter helper's
 * (adapters/common/adapter.h). Everything the child handler needs is made
 * at track time (the failing BIO) so that the handler allocates nothing
 * and frees nothing: it only stores flags and swaps pointers.
 */
#include <forksafe/openssl.h>

#include "../common/adapter.h"

#include <errno.h>

#include <openssl/bio.h>
#include <openssl/err.h>

struct tracked {
    SSL *ssl;  /* with a reference held by the adapter */
    BIO *dead; /* the failing BIO to give it in the child */
};

static BIO_METHOD *s_dead_method;
static struct forksafe__list s_list =
    FORKSAFE__LIST_INIT(struct tracked, SSL *);

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

static void openssl_child(void)
{
    /* The forking thread's errors belong to the parent's story. */
    ERR_clear_error();
    for (size_t i = 0; i < s_list.n; i++) {
        struct tracked *t = forksafe__list_at(&s_list, i);
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
}

/* ------------------------------------------------------------ the API */

/* Make the failing BIO's method once; it is kept for the life of the
   process (BIOs made from it may live on in children or SSL objects). */
static int openssl_install(void)
{
    if (s_dead_method != NULL)
        return 0;
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "forksafe child (always fails)");
    if (m == NULL || !BIO_meth_set_write(m, dead_write) ||
        !BIO_meth_set_read(m, dead_read) || !BIO_meth_set_puts(m, dead_puts) ||
        !BIO_meth_set_ctrl(m, dead_ctrl) ||
        !BIO_meth_set_create(m, dead_create) ||
        !BIO_meth_set_destroy(m, dead_destroy)) {
        BIO_meth_free(m);
        return ENOMEM;
    }
    s_dead_method = m;
    return 0;
}

static const struct forksafe__adapter_hooks hooks = {
    .install = openssl_install,
    .tracked = &s_list,
    .child = openssl_child,
};
FORKSAFE__ADAPTER_DEFINE(openssl, "openssl", FORKSAFE_OPENSSL_RANK, &hooks)

/* Contract in forksafe/openssl.h. Everything the child handler will need
   (the failing BIO, a reference to ssl) is made here, in the parent. */
int forksafe_openssl_track(SSL *ssl)
{
    int rc = forksafe__adapter_enter(&ad, ssl);
    if (rc != 0)
        return rc;
    rc = forksafe__adapter_reserve(&ad, &s_list, &ssl);
    struct tracked t = {ssl, NULL};
    if (rc == 0) {
        t.dead = BIO_new(s_dead_method);
        if (t.dead == NULL || !SSL_up_ref(ssl)) {
            BIO_free(t.dead);
            rc = ENOMEM;
        }
    }
    if (rc == 0) {
        /* api is held throughout, so the room reserved is still there. */
        forksafe__adapter_add(&ad, &s_list, &t);
    }
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Contract in forksafe/openssl.h. Frees outside the adapter's locks. */
int forksafe_openssl_untrack(SSL *ssl)
{
    if (ssl == NULL)
        return EINVAL;
    struct tracked gone;
    forksafe__adapter_enter_plain(&ad);
    int rc = forksafe__adapter_remove(&ad, &s_list, &ssl, &gone);
    forksafe__adapter_leave(&ad);
    if (rc != 0)
        return rc;
    /* Outside our locks: freeing may run OpenSSL callbacks. In a child
       whose handler consumed it, dead is NULL (the SSL owns it now). */
    BIO_free(gone.dead);
    SSL_free(gone.ssl);
    return 0;
}
