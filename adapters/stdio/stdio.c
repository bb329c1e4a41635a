/* SPDX-License-Identifier: MIT */
/*
 * adapters/stdio/stdio.c: the stdio adapter. One callback entry flushes
 * every output stream before fork and holds the locks of stdout, stderr
 * and the tracked streams across it, so buffers are empty and no locked
 * record is half-written at the fork point.
 *
 * DESIGN. Tracked streams live in one array guarded by s_list_mu, which
 * prepare takes first and the parent releases (a single registry entry,
 * not one per stream: the streams must be locked in one fixed order under
 * glibc's list lock, which only one callback can guarantee). Registration
 * calls are never made while s_list_mu is held, because prepare takes
 * s_list_mu while the core holds its registry lock.
 */
#include <forksafe/stdio.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#ifdef __GLIBC__
#include <sys/single_threaded.h>
/* Exported by glibc since 2.2.5 (libio/genops.c) and taken by its own
   fork(); weak so that the adapter still links where they are absent. The
   lock is recursive, which is what lets fork() take it again after us. */
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));
/* glibc resets every stream lock in the child of a multi-threaded fork. */
#define SINGLE_THREADED()   __libc_single_threaded
#define CHILD_UNLOCKS_FILES 0
#else
/* Elsewhere (musl) nothing says the process has one thread, and the child
   keeps stream locks as they were, recording the parent thread's TID:
   the child releases them itself (musl's funlockfile checks no owner). */
#define SINGLE_THREADED()   0
#define CHILD_UNLOCKS_FILES 1
#endif

static pthread_mutex_t s_install_mu = PTHREAD_MUTEX_INITIALIZER;
static bool s_installed;
static char s_key; /* the registry key of the adapter's entry */

static pthread_mutex_t s_list_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE **s_streams; /* tracked streams, in tracking order */
static size_t s_n, s_cap;

/* State of one fork, written by prepare and read by parent. Forks are
   serialised by the core, so one copy suffices. */
static FILE *s_locked[2];  /* stdout, stderr as locked by prepare */
static size_t s_n_locked;  /* how many of the locked streams to release */
static bool s_list_locked; /* whether glibc's list lock is held */

static bool past(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Lock fp, waiting at most until deadline (forever if NULL). */
static int lock_stream(FILE *fp, const struct timespec *deadline)
{
    if (deadline == NULL) {
        flockfile(fp);
        return 0;
    }
    while (ftrylockfile(fp) != 0) {
        if (past(deadline))
            return ETIMEDOUT;
        struct timespec pause = {0, 100 * 1000};
        nanosleep(&pause, NULL);
    }
    return 0;
}

static FILE *stream_at(size_t i)
{
    return i < 2 ? s_locked[i] : s_streams[i - 2];
}

static void release(size_t n_locked)
{
    while (n_locked > 0)
        funlockfile(stream_at(--n_locked));
#ifdef __GLIBC__
    if (s_list_locked)
        _IO_list_unlock();
#endif
    s_list_locked = false;
}

static int stdio_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    pthread_mutex_lock(&s_list_mu);
    s_n_locked = 0;
    s_list_locked = false;
    /* With one thread nobody else can be inside a stream, and glibc does
       not reset stream locks in the child of a single-threaded process
       (posix/fork.c resets them only when the parent had threads), so
       locking here would leave them held in the child. */
    if (SINGLE_THREADED()) {
        fflush(NULL);
        return 0;
    }
#ifdef __GLIBC__
    if (_IO_list_lock != NULL && _IO_list_unlock != NULL) {
        _IO_list_lock();
        s_list_locked = true;
    }
#endif
    /* Without the list lock (musl), fflush(NULL) must not run while we
       hold stream locks (it takes the list first), and before them it
       would wait without a deadline for any stream another thread holds:
       only the streams locked below are flushed, each once it is locked
       (docs/adapters/stdio.md). */
    s_locked[0] = stdout;
    s_locked[1] = stderr;
    size_t total = 2 + s_n;
    for (size_t i = 0; i < total; i++) {
        FILE *fp = stream_at(i);
        int rc = lock_stream(fp, deadline);
        if (rc != 0) {
            release(i);
            pthread_mutex_unlock(&s_list_mu);
            return rc;
        }
        if (!s_list_locked)
            fflush(fp);
    }
    s_n_locked = total;
    /* Under the list lock, flush every output stream. The streams we hold
       are re-entered (their locks are recursive) and come out empty; an
       untracked stream whose lock another thread holds is waited for
       without a deadline: glibc has no timed flush. */
    if (s_list_locked)
        fflush(NULL);
    return 0;
}

static void stdio_parent(void *ctx)
{
    (void)ctx;
    release(s_n_locked);
    s_n_locked = 0;
    pthread_mutex_unlock(&s_list_mu);
}

static void stdio_child(void *ctx)
{
    (void)ctx;
    /* glibc reset the stream locks and the list lock already (see the
       header); only our own list mutex, a normal mutex that the forking
       thread holds, is released. */
    if (CHILD_UNLOCKS_FILES)
        release(s_n_locked);
    s_n_locked = 0;
    s_list_locked = false;
    pthread_mutex_unlock(&s_list_mu);
}

/* Contract in forksafe/stdio.h. Serialised by s_install_mu, which no fork
   callback takes, so the registry may be called while it is held. */
int forksafe_stdio_install(void)
{
    static const struct forksafe_ops ops = {stdio_prepare, stdio_parent,
                                            stdio_child};
    int rc = 0;
    pthread_mutex_lock(&s_install_mu);
    if (!s_installed) {
        rc = forksafe_register_ops(&s_key, "stdio", FORKSAFE_STDIO_RANK, &ops);
        if (rc == 0) {
            rc = forksafe_register_adapter("stdio");
            if (rc != 0)
                forksafe_unregister(&s_key);
            else
                s_installed = true;
        }
    }
    pthread_mutex_unlock(&s_install_mu);
    return rc;
}

/* Contract in forksafe/stdio.h. Tracked streams are kept for a later
   install. */
int forksafe_stdio_uninstall(void)
{
    int rc = ENOENT;
    pthread_mutex_lock(&s_install_mu);
    if (s_installed) {
        rc = forksafe_unregister(&s_key);
        if (rc == 0)
            s_installed = false;
    }
    pthread_mutex_unlock(&s_install_mu);
    return rc;
}

/* Contract in forksafe/stdio.h. Installs first (outside s_list_mu), then
   appends under s_list_mu: the tracking order is the locking order. */
int forksafe_stdio_track(FILE *fp)
{
    if (fp == NULL)
        return EINVAL;
    if (fp == stdout || fp == stderr)
        return EEXIST;
    int rc = forksafe_stdio_install();
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&s_list_mu);
    for (size_t i = 0; i < s_n; i++) {
        if (s_streams[i] == fp) {
            pthread_mutex_unlock(&s_list_mu);
            return EEXIST;
        }
    }
    if (s_n == s_cap) {
        size_t cap = s_cap ? 2 * s_cap : 8;
        FILE **grown = realloc(s_streams, cap * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&s_list_mu);
            return ENOMEM;
        }
        s_streams = grown;
        s_cap = cap;
    }
    s_streams[s_n++] = fp;
    pthread_mutex_unlock(&s_list_mu);
    return 0;
}

/* Contract in forksafe/stdio.h. Waits for a fork in progress (prepare
   holds s_list_mu until the parent handler). */
int forksafe_stdio_untrack(FILE *fp)
{
    if (fp == NULL)
        return EINVAL;
    int rc = ENOENT;
    pthread_mutex_lock(&s_list_mu);
    for (size_t i = 0; i < s_n; i++) {
        if (s_streams[i] == fp) {
            /* Keep the tracking order: it is the lock order. */
            for (size_t j = i + 1; j < s_n; j++)
                s_streams[j - 1] = s_streams[j];
            s_n--;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&s_list_mu);
    return rc;
}
