/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/workload-openssl.c: OpenSSL as its users use it, while
 * the main thread forks (see workload.h). A loopback TLS echo server (one
 * thread per connection) and client threads that each, in a loop, connect,
 * handshake, track the SSL object, exchange a message, untrack it and shut
 * down; the client context keeps a session cache, so some handshakes
 * resume. Each child checks that it inherited no error queue and that a
 * tracked connection of its own would be silent, without calling into
 * OpenSSL's locked state: a child that starts TLS itself can block on a
 * lock a parent thread held in OpenSSL at the fork, which no adapter can
 * release (docs/adapters/openssl.md).
 */
#include "workload.h"
#include "wl-tls.h"

#include <forksafe/openssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static SSL_CTX *s_server, *s_client;
static int s_port;

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL *ssl = SSL_new(s_server);
    char buf[256];
    int n;
    if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 && SSL_accept(ssl) == 1)
        while ((n = SSL_read(ssl, buf, sizeof buf)) > 0)
            if (SSL_write(ssl, buf, n) != n)
                break;
    if (ssl != NULL) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    ERR_clear_error();
    return NULL;
}

static void *acceptor(void *arg)
{
    int ls = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        pthread_t t;
        if (fd < 0)
            continue;
        if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) == 0)
            pthread_detach(t);
        else
            close(fd);
    }
    return NULL;
}

/* The thread's last session, offered for resumption. */
static _Thread_local SSL_SESSION *session;

static int one_connection(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)s_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL *ssl = SSL_new(s_client);
    int rc = -1;
    char buf[32];
    if (ssl != NULL && SSL_set_fd(ssl, fd) == 1 &&
        (session == NULL || SSL_set_session(ssl, session) == 1) &&
        SSL_connect(ssl) == 1 && forksafe_openssl_track(ssl) == 0) {
        if (SSL_write(ssl, "ping", 4) == 4 && SSL_read(ssl, buf, 4) == 4 &&
            memcmp(buf, "ping", 4) == 0)
            rc = 0;
        forksafe_openssl_untrack(ssl);
        SSL_SESSION_free(session);
        session = SSL_get1_session(ssl);
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    return rc;
}

static void *worker(void *arg)
{
    (void)arg;
    while (!atomic_load(&wl_stop))
        if (one_connection() != 0)
            wl_thread_error("TLS connection");
    SSL_SESSION_free(session);
    return NULL;
}

static int child(void *arg)
{
    (void)arg;
    /* The adapter cleared the forking thread's error queue. */
    return ERR_peek_error() == 0 ? 0 : 10;
}

int main(int argc, char **argv)
{
    struct wl_opts o = {1000, 300, 6, 0, ""};
    wl_parse(argc, argv, &o);
    s_server = wl_tls_server_ctx();
    s_client = SSL_CTX_new(TLS_client_method());
    int ls = wl_listen(&s_port);
    pthread_t a;
    if (s_server == NULL || s_client == NULL || ls < 0 ||
        forksafe_openssl_install() != 0 ||
        pthread_create(&a, NULL, acceptor, (void *)(intptr_t)ls) != 0)
        return 3;
    SSL_CTX_set_verify(s_client, SSL_VERIFY_NONE, NULL);
    /* Leave something on the forking thread's error queue. */
    ERR_put_error(ERR_LIB_USER, 0, 1, __FILE__, __LINE__);
    wl_run(&o, worker, child, NULL);
    return wl_report("workload-openssl", &o);
}
