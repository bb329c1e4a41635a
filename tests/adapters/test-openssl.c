/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-openssl.c: the OpenSSL 3 adapter against the real
 * libssl and libcrypto, over real TLS connections on 127.0.0.1 (ephemeral
 * ports), with a key and self-signed certificate made in memory. Each
 * scenario runs in its own process (forked from this single-threaded test
 * program), with another thread alive, so the same scenario can run with
 * and without the adapter; it prints its findings into a pipe that this
 * process checks.
 */
#include "common.h"

#include "adapter-test.h"

#include <forksafe/openssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

enum mode { WITHOUT, WITH };

/* At each fork of the handshake scenario the load threads are parked
   between handshakes: see handshake_scenario(). */

#define FAIL(code)                                                             \
    do {                                                                       \
        fprintf(stderr, "%s:%d: scenario step failed\n", __FILE__, __LINE__);  \
        ERR_print_errors_fp(stderr);                                           \
        return (code);                                                         \
    } while (0)

/* ------------------------------------------------------------- TLS kit */

static SSL_CTX *s_server_ctx, *s_client_ctx;

/* A P-256 key and a self-signed certificate for "localhost", in memory;
   the client trusts exactly that certificate. */
static int make_contexts(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    if (key == NULL || cert == NULL)
        return -1;
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(cert, name);
    if (X509_sign(cert, key, EVP_sha256()) <= 0)
        return -1;
    s_server_ctx = SSL_CTX_new(TLS_server_method());
    s_client_ctx = SSL_CTX_new(TLS_client_method());
    if (s_server_ctx == NULL || s_client_ctx == NULL ||
        SSL_CTX_use_certificate(s_server_ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(s_server_ctx, key) != 1 ||
        X509_STORE_add_cert(SSL_CTX_get_cert_store(s_client_ctx), cert) != 1)
        return -1;
    SSL_CTX_set_verify(s_client_ctx, SSL_VERIFY_PEER, NULL);
    X509_free(cert);
    EVP_PKEY_free(key);
    return 0;
}

/* A listening socket on 127.0.0.1, ephemeral port stored in *port. */
static int listen_loopback(unsigned short *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(s, 64) != 0 || getsockname(s, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return s;
}

/* Give socket s a receive and send timeout, so no test waits forever. */
static void time_limit(int s, int seconds)
{
    struct timeval tv = {seconds, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int connect_loopback(unsigned short port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        if (s >= 0)
            close(s);
        return -1;
    }
    time_limit(s, 3);
    return s;
}

/* A client connection over fd, handshake done, or NULL. */
static SSL *client_on(int fd)
{
    SSL *ssl = SSL_new(s_client_ctx);
    if (ssl == NULL)
        return NULL;
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* Read exactly want (as a string) from ssl: 1 if that is what came. */
static int read_is(SSL *ssl, const char *want)
{
    char buf[64];
    size_t n = strlen(want), got = 0;
    while (got < n) {
        int r = SSL_read(ssl, buf + got, (int)(n - got));
        if (r <= 0)
            return 0;
        got += (size_t)r;
    }
    return memcmp(buf, want, n) == 0;
}

/* ---------------------------------------------------------------------- */

#define N_RAND_CHILDREN 32

/* 32 children and the parent each draw 16 bytes from RAND_bytes(): all 33
   draws differ. OpenSSL 3 does this itself (its DRBGs reseed on a new
   PID), so this passes without the adapter as well: it pins down the
   fact the adapter relies on to do nothing about RAND. */
static int rand_scenario(int m, int fd)
{
    fs_idle_start();
    if (m == WITH && forksafe_openssl_install() != 0)
        FAIL(3);
    unsigned char warm[16];
    if (RAND_bytes(warm, sizeof warm) != 1)
        FAIL(4);
    unsigned char got[N_RAND_CHILDREN + 1][16];
    for (int k = 0; k < N_RAND_CHILDREN; k++) {
        int p[2];
        if (pipe(p) != 0)
            FAIL(5);
        pid_t pid = forksafe_fork(NULL);
        if (pid < 0)
            FAIL(5);
        if (pid == 0) {
            unsigned char b[16];
            _exit(RAND_bytes(b, sizeof b) == 1 &&
                          write(p[1], b, sizeof b) == (ssize_t)sizeof b
                      ? 0
                      : 1);
        }
        close(p[1]);
        ssize_t r = read(p[0], got[k], 16);
        close(p[0]);
        int code;
        if (fs_wait(pid, 5000, &code) != FS_EXITED || code != 0 || r != 16)
            FAIL(6);
    }
    if (RAND_bytes(got[N_RAND_CHILDREN], 16) != 1)
        FAIL(7);
    int same = 0;
    for (int i = 0; i <= N_RAND_CHILDREN; i++)
        for (int j = 0; j < i; j++)
            same += memcmp(got[i], got[j], 16) == 0;
    dprintf(fd, "equal_pairs=%d\n", same);
    return 0;
}

static void test_openssl_rand_children_distinct(void **state)
{
    (void)state;
    fs_expect_scenario(rand_scenario, WITH, "equal_pairs=0\n");
}

/* ---------------------------------------------------------------------- */

/* An error is queued on the forking thread just before the fork (a real
   failing call). With the adapter the child starts with an empty queue;
   without it the child sees the parent's error, and SSL_get_error() would
   blame the child's next non-blocking call on it. The parent keeps it. */
static int errqueue_scenario(int m, int fd)
{
    fs_idle_start();
    if (m == WITH && forksafe_openssl_install() != 0)
        FAIL(3);
    ERR_clear_error();
    if (BIO_new_file("/nonexistent/forksafe-test", "r") != NULL)
        FAIL(4);
    if (ERR_peek_error() == 0)
        FAIL(5);
    pid_t pid = fork();
    if (pid < 0)
        FAIL(6);
    if (pid == 0)
        _exit(ERR_peek_error() == 0 ? 0 : 1);
    int code;
    if (fs_wait(pid, 5000, &code) != FS_EXITED)
        FAIL(7);
    dprintf(fd, "child_clean=%d parent_kept=%d\n", code == 0,
            ERR_peek_error() != 0);
    return 0;
}

static void test_openssl_error_queue_cleared(void **state)
{
    (void)state;
    fs_expect_scenario(errqueue_scenario, WITH,
                       "child_clean=1 parent_kept=1\n");
}

static void test_openssl_error_queue_inherited_without(void **state)
{
    (void)state;
    fs_expect_scenario(errqueue_scenario, WITHOUT,
                       "child_clean=0 parent_kept=1\n");
}

/* ---------------------------------------------------------------------- */

static int s_listen_fd;
static atomic_bool s_stop;
static atomic_int s_served, s_load_done;
static atomic_bool s_park;  /* asks the load threads to wait */
static atomic_int s_parked; /* how many are waiting */

/* The load thread parks between handshakes; the server parks only once
   the load thread has (then no handshake is half done on either side). */
static void park_point(bool server)
{
    if (!atomic_load(&s_park) || (server && atomic_load(&s_parked) < 1))
        return;
    atomic_fetch_add(&s_parked, 1);
    while (atomic_load(&s_park))
        sched_yield();
    atomic_fetch_sub(&s_parked, 1);
}

/* Serves each connection in turn: handshake, "hello", close_notify. */
static void *server_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&s_stop)) {
        park_point(true);
        struct pollfd pfd = {s_listen_fd, POLLIN, 0};
        if (poll(&pfd, 1, 10) != 1)
            continue;
        int c = accept4(s_listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        time_limit(c, 2);
        SSL *ssl = SSL_new(s_server_ctx);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1 && SSL_write(ssl, "hello", 5) == 5) {
            SSL_shutdown(ssl);
            atomic_fetch_add(&s_served, 1);
        }
        SSL_free(ssl);
        close(c);
    }
    return NULL;
}

static unsigned short s_port;

/* Handshakes in a loop, the load that is running when the parent forks. */
static void *load_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&s_stop)) {
        park_point(false);
        int fd = connect_loopback(s_port);
        SSL *ssl = fd >= 0 ? client_on(fd) : NULL;
        if (ssl != NULL && read_is(ssl, "hello")) {
            SSL_shutdown(ssl);
            atomic_fetch_add(&s_load_done, 1);
        }
        SSL_free(ssl);
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

#define N_HANDSHAKE_CHILDREN 8

/* While a thread runs TLS handshakes over loopback against a server
   thread, the parent, which holds a tracked live connection, forks; each
   child makes its own new connection with the inherited SSL_CTX and must
   finish the handshake and read the greeting within 5 s. A new connection
   in the child needs nothing from OpenSSL's side, so this cannot fail for
   want of the adapter; it shows that the adapter's child handler (queue
   cleared, tracked connection cut off) leaves the child's TLS working,
   under load. At each fork the load and server threads are parked between
   handshakes, as docs/adapters/openssl.md tells applications to do:
   OpenSSL's internal locks cannot be taken from outside, and a child
   forked mid-handshake can inherit one held (seen: a child blocked for
   good in CRYPTO_THREAD_write_lock on an rwlock the load thread held at
   the fork, 1 run in 6 under forksafe-audit). Parking also keeps ASan's
   allocator, which is not fork-safe, out of the fork. */
static int handshake_scenario(int m, int fd)
{
    if (make_contexts() != 0)
        FAIL(2);
    s_listen_fd = listen_loopback(&s_port);
    if (s_listen_fd < 0)
        FAIL(2);
    pthread_t srv, load;
    if (pthread_create(&srv, NULL, server_loop, NULL) != 0)
        FAIL(3);
    int keep_fd = connect_loopback(s_port);
    SSL *keep = keep_fd >= 0 ? client_on(keep_fd) : NULL;
    if (keep == NULL || !read_is(keep, "hello"))
        FAIL(4);
    if (m == WITH && forksafe_openssl_track(keep) != 0)
        FAIL(5);
    if (pthread_create(&load, NULL, load_loop, NULL) != 0)
        FAIL(6);
    int ok = 0;
    for (int k = 0; k < N_HANDSHAKE_CHILDREN; k++) {
        int seen = atomic_load(&s_load_done);
        while (atomic_load(&s_load_done) == seen)
            sched_yield();
        atomic_store(&s_park, true);
        while (atomic_load(&s_parked) != 2)
            sched_yield();
        pid_t pid = forksafe_fork(NULL);
        atomic_store(&s_park, false);
        if (pid < 0)
            FAIL(7);
        if (pid == 0) {
            uint64_t t0 = fs_now_ms();
            int c = connect_loopback(s_port);
            if (c < 0)
                _exit(2);
            SSL *ssl = client_on(c);
            if (ssl == NULL)
                _exit(3);
            if (!read_is(ssl, "hello"))
                _exit(4);
            SSL_shutdown(ssl);
            _exit(fs_now_ms() - t0 < 5000 ? 0 : 5);
        }
        int code;
        enum fs_wait_result wr = fs_wait(pid, 5000, &code);
        if (wr == FS_EXITED && code == 0)
            ok++;
        else
            fprintf(stderr, "handshake child %d: %s %d\n", k,
                    wr == FS_HUNG ? "hung" : "failed", code);
    }
    atomic_store(&s_stop, true);
    pthread_join(load, NULL);
    /* Wake the server from accept(), then close the kept connection. */
    int poke = connect_loopback(s_port);
    if (poke >= 0)
        close(poke);
    pthread_join(srv, NULL);
    if (m == WITH)
        forksafe_openssl_untrack(keep);
    SSL_free(keep);
    close(keep_fd);
    dprintf(fd, "children_ok=%d load=%d\n", ok, atomic_load(&s_load_done) > 0);
    return 0;
}

static void test_openssl_child_handshake_under_load(void **state)
{
    (void)state;
    fs_expect_scenario(handshake_scenario, WITH, "children_ok=8 load=1\n");
}

/* ---------------------------------------------------------------------- */

static SSL *s_accepted;
static int s_accepted_fd;

static void *accept_one(void *arg)
{
    (void)arg;
    s_accepted_fd = accept4(s_listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (s_accepted_fd < 0)
        return NULL;
    time_limit(s_accepted_fd, 3);
    s_accepted = SSL_new(s_server_ctx);
    SSL_set_fd(s_accepted, s_accepted_fd);
    if (SSL_accept(s_accepted) != 1) {
        SSL_free(s_accepted);
        s_accepted = NULL;
    }
    return NULL;
}

/* A TLS session between a client and a server in this process; the
   child, holding a copy of the client's SSL, writes, shuts down and frees
   it, as a child cleaning up after itself would. With the adapter
   (client tracked) the child's write fails, not one byte reaches the
   server's socket, and the parent's session goes on. Without it the
   child's record and close_notify arrive on the server as if the parent
   had sent them, and the session is broken. */
static int silent_scenario(int m, int fd)
{
    if (make_contexts() != 0)
        FAIL(2);
    unsigned short port;
    s_listen_fd = listen_loopback(&port);
    if (s_listen_fd < 0)
        FAIL(2);
    pthread_t t;
    if (pthread_create(&t, NULL, accept_one, NULL) != 0)
        FAIL(3);
    int cfd = connect_loopback(port);
    SSL *cli = cfd >= 0 ? client_on(cfd) : NULL;
    pthread_join(t, NULL);
    if (cli == NULL || s_accepted == NULL)
        FAIL(4);
    /* One exchange each way (this also takes in TLS 1.3 tickets). */
    if (SSL_write(cli, "hello", 5) != 5 || !read_is(s_accepted, "hello") ||
        SSL_write(s_accepted, "world", 5) != 5 || !read_is(cli, "world"))
        FAIL(5);
    if (m == WITH && forksafe_openssl_track(cli) != 0)
        FAIL(6);
    fs_idle_start();
    pid_t pid = forksafe_fork(NULL);
    if (pid < 0)
        FAIL(7);
    if (pid == 0) {
        int wrote = SSL_write(cli, "child", 5) > 0;
        SSL_shutdown(cli);
        SSL_free(cli);
        _exit(wrote);
    }
    int child_wrote;
    if (fs_wait(pid, 5000, &child_wrote) != FS_EXITED)
        FAIL(8);
    struct pollfd pfd = {s_accepted_fd, POLLIN, 0};
    int leaked = poll(&pfd, 1, 200) > 0;
    int session_ok =
        SSL_write(cli, "ping", 4) == 4 && read_is(s_accepted, "ping") &&
        SSL_write(s_accepted, "pong", 4) == 4 && read_is(cli, "pong");
    if (m == WITH && forksafe_openssl_untrack(cli) != 0)
        FAIL(9);
    SSL_free(cli);
    SSL_free(s_accepted);
    close(cfd);
    close(s_accepted_fd);
    dprintf(fd, "child_wrote=%d leaked=%d session_ok=%d\n", child_wrote, leaked,
            session_ok);
    return 0;
}

static void test_openssl_tracked_ssl_silent_in_child(void **state)
{
    (void)state;
    fs_expect_scenario(silent_scenario, WITH,
                       "child_wrote=0 leaked=0 session_ok=1\n");
}

static void test_openssl_child_corrupts_session_without(void **state)
{
    (void)state;
    fs_expect_scenario(silent_scenario, WITHOUT,
                       "child_wrote=1 leaked=1 session_ok=0\n");
}

/* ---------------------------------------------------------------------- */

static int api_scenario(int m, int fd)
{
    (void)m;
    (void)fd;
    if (make_contexts() != 0)
        FAIL(2);
    SSL *a = SSL_new(s_client_ctx), *b = SSL_new(s_client_ctx);
    if (a == NULL || b == NULL)
        FAIL(2);
    if (forksafe_adapter_installed("openssl") != 0)
        return 10;
    if (forksafe_openssl_uninstall() != ENOENT)
        return 11;
    if (forksafe_openssl_install() != 0 || forksafe_openssl_install() != 0)
        return 12;
    if (forksafe_adapter_installed("openssl") != 1)
        return 13;
    if (forksafe_openssl_track(NULL) != EINVAL ||
        forksafe_openssl_untrack(NULL) != EINVAL)
        return 14;
    if (forksafe_openssl_track(a) != 0 || forksafe_openssl_track(a) != EEXIST ||
        forksafe_openssl_track(b) != 0)
        return 15;
    if (forksafe_openssl_uninstall() != EBUSY)
        return 16;
    /* The adapter's reference keeps a alive after the caller's free. */
    SSL_free(a);
    if (forksafe_openssl_untrack(a) != 0 ||
        forksafe_openssl_untrack(a) != ENOENT)
        return 17;
    if (forksafe_openssl_untrack(b) != 0 || forksafe_openssl_uninstall() != 0)
        return 18;
    SSL_free(b);
    SSL_CTX_free(s_client_ctx);
    SSL_CTX_free(s_server_ctx);
    /* The install contract every adapter shares: nothing is tracked any
       more. */
    int shape =
        fs_adapter_shape(forksafe_openssl_install, forksafe_openssl_uninstall,
                         "openssl", "openssl", FORKSAFE_OPENSSL_RANK);
    if (shape != 0)
        return 40 + shape;
    return 0;
}

static void test_openssl_track_api(void **state)
{
    (void)state;
    fs_assert_scenario(api_scenario, WITH);
}

int main(void)
{
    fs_watchdog(150);
    fs_adapter_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openssl_track_api),
        cmocka_unit_test(test_openssl_rand_children_distinct),
        cmocka_unit_test(test_openssl_error_queue_cleared),
        cmocka_unit_test(test_openssl_error_queue_inherited_without),
        cmocka_unit_test(test_openssl_child_handshake_under_load),
        cmocka_unit_test(test_openssl_tracked_ssl_silent_in_child),
        cmocka_unit_test(test_openssl_child_corrupts_session_without),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
