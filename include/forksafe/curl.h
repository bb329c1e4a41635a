/* SPDX-License-Identifier: MIT */
/*
 * forksafe/curl.h: the libcurl adapter, libforksafe-curl.
 *
 * What libcurl says about fork: nothing it promises. It has no fork API,
 * and its documentation gives no fork rule (curl issue #6968 and PR #22630
 * are about documenting that libcurl is not fork-safe). What a child
 * inherits is the connection cache with the parent's sockets, so a child
 * reusing a handle sends its request on the parent's keep-alive connection
 * and may read the parent's response (typhoeus PR #426 describes requests
 * interleaved that way), and with the OpenSSL backend a TLS connection
 * closed in the child writes a close_notify into the parent's session. Share
 * handles lock through the application's callbacks (CURLSHOPT_LOCKFUNC /
 * CURLSHOPT_UNLOCKFUNC), one lock per curl_lock_data; one held by another
 * thread at the fork stays held in the child.
 *
 * What the adapter does:
 *  - forksafe_curl_install(): registers the adapter's callback entry
 *    ("curl: tracked sockets") and records the adapter "curl";
 *    forksafe_curl_share() and forksafe_curl_track() call it.
 *  - forksafe_curl_share(): gives the share one pthread mutex per
 *    curl_lock_data, all registered with the core at one rank,
 *    FORKSAFE_CURL_RANK_SHARE. No order among them is assumed: libcurl
 *    nests them in no documented order (7.88 takes DNS while holding
 *    CONNECT), and the core acquires the entries of one rank as a set,
 *    without assuming any order among them. The rank lies after the
 *    application band (applications call into libcurl holding their own
 *    locks); the core preserves the mutexes across fork.
 *  - forksafe_curl_track(): installs CURLOPT_OPENSOCKETFUNCTION and
 *    CURLOPT_CLOSESOCKETFUNCTION on the handle, so the adapter knows every
 *    socket libcurl opens for it, wherever the connection is cached (the
 *    handle's own cache, a multi handle's or a share's), and for handles
 *    copied from it with curl_easy_duphandle().
 *  - prepare: takes the adapter's socket-list lock (rank
 *    FORKSAFE_CURL_RANK: libcurl may open or close a socket while holding
 *    a share lock, never the reverse), so no socket is half-recorded;
 *    parent: releases it;
 *    child: replaces every recorded descriptor, with dup3(), by one dead
 *    socket (a socketpair end whose peer was closed at install), then
 *    re-creates the lock. Nothing is closed, written or reset: the
 *    handles keep all their options, libcurl's liveness check sees each
 *    inherited connection as closed and opens a fresh one on next use, and
 *    whatever libcurl later writes or closes there (a TLS close_notify, a
 *    shutdown) goes to the dead socket, never to the parent's peer. Only
 *    dup3() runs in the child handler: async-signal-safe.
 *
 * What the application must still do: track every easy handle (before its
 * first transfer) whose connections a child may reuse; call
 * forksafe_curl_share() before adding handles to the share, and
 * forksafe_curl_unshare() before curl_share_cleanup(). The adapter replaces
 * any open/close socket callbacks and share lock callbacks of the
 * application. A handle that another thread is using in a transfer at the
 * fork must not be used in the child (libcurl handles are not thread-safe;
 * its state there is mid-transfer). Sockets libcurl gets by accept() (FTP
 * active mode) are not recorded. The adapter creates the sockets it records
 * close-on-exec, so an exec'd program never inherits them.
 */
#ifndef FORKSAFE_CURL_H
#define FORKSAFE_CURL_H

#include <curl/curl.h>
#include <forksafe.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ranks the adapter registers at (see above): every share mutex at
   FORKSAFE_CURL_RANK_SHARE, the callback entry at FORKSAFE_CURL_RANK. */
#define FORKSAFE_CURL_RANK_SHARE (FORKSAFE_RANK_LIBRARY + 350u)
#define FORKSAFE_CURL_RANK       (FORKSAFE_RANK_LIBRARY + 390u)

/* Install the adapter: register its callback entry (name "curl: tracked
   sockets", made with the dead socket it hands to children) and record
   the adapter as "curl" for forksafe_audit_write(). forksafe_curl_share()
   and forksafe_curl_track() call it. Idempotent and thread-safe: a second
   call returns 0 and changes nothing. Returns 0, ENOMEM, EMFILE or ENFILE
   (no descriptor for the dead socket), or EDEADLK (called from a forksafe
   callback); on error nothing changed. */
FORKSAFE_API int forksafe_curl_install(void);

/* Undo forksafe_curl_install(). Returns 0, ENOENT (not installed), EBUSY
   (easy handles are still tracked or shares still set up) or EDEADLK. */
FORKSAFE_API int forksafe_curl_uninstall(void);

/* Give share handle sh fork-safe lock callbacks (CURLSHOPT_LOCKFUNC,
   CURLSHOPT_UNLOCKFUNC, CURLSHOPT_USERDATA), one registered mutex per
   curl_lock_data. Call it before any easy handle uses the share.
   Installs the adapter if needed.
   Returns 0, EINVAL (sh NULL or not a share handle), EEXIST (already
   done), EBUSY (the share is in use), ENOMEM, or EDEADLK (called from a
   forksafe callback). On error nothing is changed. */
FORKSAFE_API int forksafe_curl_share(CURLSH *sh);

/* Undo forksafe_curl_share(): remove the lock callbacks and unregister the
   mutexes. Call it before curl_share_cleanup(), once no easy handle uses
   the share. Returns 0, EINVAL (sh NULL), ENOENT (not set up), EBUSY (the
   share is in use), EDEADLK (called from a forksafe callback) or, rarely,
   ENOMEM (in use, and one of its locks could not be registered again: the
   share keeps working, that lock is no longer taken at forks). Except for
   ENOMEM, nothing changed on error. */
FORKSAFE_API int forksafe_curl_unshare(CURLSH *sh);

/* Track easy handle easy: every socket libcurl opens for it from now on is
   recorded, and replaced by a dead socket in every child forked while it
   is open, so no child ever reuses (or writes on) a connection of its
   parent. Tracking a tracked handle again is a no-op. Installs the
   adapter if needed. Returns 0, EINVAL (easy NULL or the options were
   refused), ENOMEM, EMFILE or ENFILE (no descriptor for the adapter's
   dead socket, when this call installs it) or EDEADLK. */
FORKSAFE_API int forksafe_curl_track(CURL *easy);

/* Stop tracking easy: its socket callbacks are reset to libcurl's
   defaults. Connections it opened while tracked stay recorded until
   libcurl closes them. Returns 0, EINVAL (easy NULL) or ENOENT (not
   tracked). */
FORKSAFE_API int forksafe_curl_untrack(CURL *easy);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_CURL_H */
