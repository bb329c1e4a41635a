/* SPDX-License-Identifier: MIT */
/* tests/adapters/wl-tls.h: what the curl and OpenSSL workloads share. */
#ifndef FORKSAFE_TESTS_WL_TLS_H
#define FORKSAFE_TESTS_WL_TLS_H

#include <openssl/ssl.h>

/* A server context with a P-256 key and a self-signed certificate for
   "localhost", made in memory; NULL on failure. */
SSL_CTX *wl_tls_server_ctx(void);

/* A listening TCP socket on 127.0.0.1 (ephemeral port in *port), or -1. */
int wl_listen(int *port);

#endif
