/* SPDX-License-Identifier: MIT */
/*
 * adapters/stdio/stdio.c: the stdio adapter. One callback entry flushes
 * every output stream before fork and holds the locks of stdout, stderr
 * and the tracked streams across it, so buffers are empty and no locked
 * record is half-written at the fork point.
 *
 * DESIGN. Tracked streams live in one array guarded by the adapter's list
 * lock, which prepare takes first and the parent releases (a single
 * registry entry, not one per stream: the streams must be locked in one
 * fixed order under glibc's list lock, which only one callback can
 * guarantee). The entry, the list lock and install/uninstall are the
 * common adapter helper's (adapters/common/adapter.h).
 */
#include <forksafe/stdio.h>

#include "../common/adapter.h"

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

static struct forksafe__list s_streams = FORKSAFE__LIST_INIT(FILE *, FILE *);

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
    return i < 2 ? s_locked[i] : *(FILE **)forksafe__list_at(&s_streams, i - 2);
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

static int stdio_prepare(const struct timespec *deadline)
{
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
    size_t total = 2 + s_streams.n;
    for (size_t i = 0; i < total; i++) {
        FILE *fp = stream_at(i);
        int rc = lock_stream(fp, deadline);
        if (rc != 0) {
            release(i);
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

static void stdio_parent(void)
{
    release(s_n_locked);
    s_n_locked = 0;
}

static void stdio_child(void)
{
    /* glibc reset the stream locks and the list lock already (see the
       header); the helper re-creates the adapter's own list lock. */
    if (CHILD_UNLOCKS_FILES)
        release(s_n_locked);
    s_n_locked = 0;
    s_list_locked = false;
}

static const struct forksafe__adapter_hooks hooks = {
    .prepare = stdio_prepare,
    .parent = stdio_parent,
    .child = stdio_child,
};
FORKSAFE__ADAPTER_DEFINE(stdio, "stdio", FORKSAFE_STDIO_RANK, &hooks)

/* Contract in forksafe/stdio.h. The tracking order is the locking
   order. */
int forksafe_stdio_track(FILE *fp)
{
    if (fp == NULL)
        return EINVAL;
    if (fp == stdout || fp == stderr)
        return EEXIST;
    int rc = forksafe__adapter_enter(&ad, fp);
    if (rc != 0)
        return rc;
    rc = forksafe__adapter_add(&ad, &s_streams, &fp);
    forksafe__adapter_leave(&ad);
    return rc;
}

/* Contract in forksafe/stdio.h. Waits for a fork in progress (prepare
   holds the list lock until the parent handler). */
int forksafe_stdio_untrack(FILE *fp)
{
    if (fp == NULL)
        return EINVAL;
    forksafe__adapter_enter_plain(&ad);
    int rc = forksafe__adapter_remove(&ad, &s_streams, &fp, NULL);
    forksafe__adapter_leave(&ad);
    return rc;
}
