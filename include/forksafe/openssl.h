/* SPDX-License-Identifier: MIT */
/*
 * forksafe/openssl.h: the OpenSSL 3 adapter (libforksafe-openssl). It
 * clears the error queue the child inherits, and makes tracked SSL
 * connections safe for the child to abandon: the child can never write a
 * TLS record (close_notify, alert, data) on the socket it shares with the
 * parent, nor read the parent's records from it.
 *
 * What OpenSSL says about fork. OPENSSL_fork_prepare(3) (OpenSSL 3.0):
 * OPENSSL_fork_prepare(), OPENSSL_fork_parent() and OPENSSL_fork_child()
 * "are currently unused" (they are empty functions, crypto/threads_lib.c).
 * Its DRBGs reseed when they see a changed process ID
 * (providers/implementations/rands/drbg.c compares a fork ID on every
 * generate call), so children draw distinct random bytes without help;
 * test-openssl checks that. Nothing else is reset: each thread's error
 * queue (ERR_get_error(3)) and every SSL object are copied into the child
 * as they are, and an SSL object shares its socket with the parent's
 * copy. A record written by the child uses the parent's keys and sequence
 * numbers, so the peer accepts it as the parent's and the parent's next
 * record then fails; SSL_shutdown(3) in the child sends close_notify for
 * the parent.
 *
 * What the adapter does.
 *   prepare: take the adapter's list lock (no thread is tracking or
 *            untracking at the fork). OpenSSL's own locks are not
 *            reachable through its API and are not taken.
 *   parent:  release it.
 *   child:   ERR_clear_error() for the (only) thread; then for each tracked
 *            SSL: SSL_set_quiet_shutdown(ssl, 1) and SSL_set_shutdown(ssl,
 *            SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN), so SSL_shutdown()
 *            sends nothing, SSL_write() fails and SSL_read() reports the
 *            end of the connection; and its BIOs are replaced by a BIO,
 *            made at track time, on which every read and write fails, so
 *            no path can reach the socket. The old BIOs are kept alive (a
 *            reference is added), so nothing is freed or closed in the
 *            child handler; the child's copy of the socket stays open
 *            until the child closes it or exits.
 *
 * Rank: FORKSAFE_RANK_LIBRARY + 500. The adapter's only lock is its own
 * list lock, taken by nothing that holds another lock; OpenSSL sits in the
 * library band and below application locks.
 *
 * What the application must still do. Track every SSL object whose
 * connection the parent keeps using (forksafe_openssl_track), before the
 * fork; the adapter holds a reference to it (SSL_up_ref) until it is
 * untracked. Open new connections in the child; an inherited SSL_CTX can
 * be used for them. Another thread that is inside OpenSSL at the fork may
 * leave one of OpenSSL's internal locks held in the child: the adapter
 * cannot prevent that (OpenSSL offers no way to take them), so keep
 * threads out of OpenSSL at the fork, or exec. The first use of the error
 * queue on a thread allocates it: a child forked by a thread that never
 * used OpenSSL allocates in the child handler.
 */
#ifndef FORKSAFE_OPENSSL_H
#define FORKSAFE_OPENSSL_H

#include <openssl/ssl.h>

#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The rank of the adapter's entry (see "Rank" above). */
#define FORKSAFE_OPENSSL_RANK (FORKSAFE_RANK_LIBRARY + 500u)

/* Install the adapter: register its fork callbacks (entry name "openssl")
   and record the adapter as "openssl" for forksafe_audit_write().
   Idempotent and thread-safe: a second call returns 0 and changes nothing.
   Returns 0, ENOMEM or EDEADLK (called from a forksafe callback). */
FORKSAFE_API int forksafe_openssl_install(void);

/* Undo forksafe_openssl_install(). Returns 0, ENOENT (not installed),
   EBUSY (SSL objects are still tracked) or EDEADLK. */
FORKSAFE_API int forksafe_openssl_uninstall(void);

/* Track ssl: in every child forked from now on, ssl's copy can neither
   write nor read on the shared connection (see above); the parent's ssl is
   not changed. Installs the adapter if needed and takes a reference to
   ssl until it is untracked.
   Returns 0, EINVAL (ssl NULL), EEXIST (already tracked), ENOMEM or
   EDEADLK. */
FORKSAFE_API int forksafe_openssl_track(SSL *ssl);

/* Stop tracking ssl and drop the adapter's reference to it.
   Returns 0, EINVAL (ssl NULL) or ENOENT (not tracked). */
FORKSAFE_API int forksafe_openssl_untrack(SSL *ssl);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_OPENSSL_H */
