/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/workload-curl.c: libcurl as its users use it, while the
 * main thread forks (see workload.h). One share handle shares DNS,
 * CONNECT, SSL_SESSION and COOKIE; threads with tracked easy handles on it
 * fetch http:// and https:// URLs from "localhost" (IPv4 only) on two
 * loopback keep-alive servers of this program (one thread per connection;
 * the TLS one with a key and self-signed certificate made in memory), and
 * the server sets a cookie. Each child makes one http:// request through
 * a new easy handle on the same share (--mode tls: https://, which can
 * hang the child in OpenSSL; see docs/adapters/openssl.md).
 */
#include "workload.h"
#include "wl-tls.h"

#include <forksafe/curl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static SSL_CTX *s_tls;
static int s_port[2]; /* http, https */
static CURLSH *s_share;

struct client {
    int fd;
    SSL *ssl;
};

static int c_read(struct client *c, char *buf, int len)
{
    return c->ssl ? SSL_read(c->ssl, buf, len)
                  : (int)recv(c->fd, buf, (size_t)len, 0);
}

static int c_write(struct client *c, const char *buf, int len)
{
    return c->ssl ? SSL_write(c->ssl, buf, len)
                  : (int)send(c->fd, buf, (size_t)len, MSG_NOSIGNAL);
}

/* Serve keep-alive GETs on one connection until the peer closes. */
static void *serve(void *arg)
{
    struct client c = *(struct client *)arg;
    free(arg);
    struct timeval tv = {5, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (c.ssl != NULL &&
        (SSL_set_fd(c.ssl, c.fd) != 1 || SSL_accept(c.ssl) != 1))
        goto out;
    char buf[8192];
    int len = 0;
    for (;;) {
        int r = c_read(&c, buf + len, (int)sizeof buf - len - 1);
        if (r <= 0)
            break;
        len += r;
        buf[len] = '\0';
        char *end;
        while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            static const char resp[] =
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                "Set-Cookie: seen=1\r\n\r\nok";
            if (c_write(&c, resp, (int)sizeof resp - 1) <= 0)
                goto out;
            int used = (int)(end + 4 - buf);
            memmove(buf, buf + used, (size_t)(len - used + 1));
            len -= used;
        }
        if (len >= (int)sizeof buf - 1)
            break;
    }
out:
    if (c.ssl)
        SSL_free(c.ssl);
    close(c.fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    int ls = (int)(intptr_t)arg, tls = ls < 0;
    if (tls)
        ls = -ls;
    for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct client *c = calloc(1, sizeof *c);
        pthread_t t;
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->ssl = tls ? SSL_new(s_tls) : NULL;
        if (pthread_create(&t, NULL, serve, c) == 0)
            pthread_detach(t);
        else {
            close(fd);
            free(c);
        }
    }
    return NULL;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static CURL *new_handle(void)
{
    CURL *h = curl_easy_init();
    if (h == NULL)
        return NULL;
    curl_easy_setopt(h, CURLOPT_SHARE, s_share);
    curl_easy_setopt(h, CURLOPT_COOKIEFILE, "");
    curl_easy_setopt(h, CURLOPT_IPRESOLVE, (long)CURL_IPRESOLVE_V4);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    return h;
}

static int get(CURL *h, int tls, int n)
{
    char url[128];
    snprintf(url, sizeof url, "%s://localhost:%d/%d", tls ? "https" : "http",
             s_port[tls], n);
    curl_easy_setopt(h, CURLOPT_URL, url);
    return curl_easy_perform(h) == CURLE_OK ? 0 : -1;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    CURL *h = new_handle();
    if (h == NULL || forksafe_curl_track(h) != 0) {
        wl_thread_error("easy handle");
        return NULL;
    }
    for (int n = 0; !atomic_load(&wl_stop); n++) {
        /* Half the threads mostly HTTPS (sessions shared), all some. */
        if (get(h, (id % 2 == 0) ? n % 4 != 0 : n % 4 == 0, n) != 0)
            wl_thread_error("transfer");
        if (n % 32 == 31) { /* a fresh handle now and then, as clients do */
            forksafe_curl_untrack(h);
            curl_easy_cleanup(h);
            h = new_handle();
            if (h == NULL || forksafe_curl_track(h) != 0) {
                wl_thread_error("easy handle");
                return NULL;
            }
        }
    }
    forksafe_curl_untrack(h);
    curl_easy_cleanup(h);
    return NULL;
}

static int child(void *arg)
{
    (void)arg;
    CURL *h = new_handle();
    if (h == NULL)
        return 10;
    int rc = get(h, strcmp((const char *)arg, "tls") == 0, 0) == 0 ? 0 : 11;
    curl_easy_cleanup(h);
    return rc;
}

int main(int argc, char **argv)
{
    struct wl_opts o = {1000, 300, 6, 0, ""};
    wl_parse(argc, argv, &o);
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK ||
        (s_tls = wl_tls_server_ctx()) == NULL)
        return 3;
    int ls = wl_listen(&s_port[0]), lt = wl_listen(&s_port[1]);
    pthread_t a1, a2;
    if (ls < 0 || lt < 0 ||
        pthread_create(&a1, NULL, acceptor, (void *)(intptr_t)ls) != 0 ||
        pthread_create(&a2, NULL, acceptor, (void *)(intptr_t)-lt) != 0)
        return 3;
    s_share = curl_share_init();
    if (s_share == NULL || forksafe_curl_share(s_share) != 0 ||
        curl_share_setopt(s_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
        curl_share_setopt(s_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) ||
        curl_share_setopt(s_share, CURLSHOPT_SHARE,
                          CURL_LOCK_DATA_SSL_SESSION) ||
        curl_share_setopt(s_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE))
        return 3;
    wl_run(&o, worker, child, (void *)o.mode);
    /* The acceptors and servers stay: the process ends here. */
    return wl_report("workload-curl", &o);
}
