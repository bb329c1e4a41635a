/* SPDX-License-Identifier: MIT */
/*
 * child.c: what the audit does in the child of a multi-threaded fork. The
 * first call of a function that is not async-signal-safe from each call
 * site is reported (unsafe-call-in-child), and a lock that another thread
 * held at the fork is waited for only for the grace period, after which
 * the child is ended with a child-deadlock finding instead of hanging.
 */
#include "audit.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* glibc exports these; they are not declared in any public header. */
void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);

/* ------------------------------------------------------------ child */

long forksafe__audit_grace_ms = 2000;

/* Report fn as called from site in a child of a multi-threaded parent,
   once per call site. */
void forksafe__audit_note_unsafe(const char *fn, void *site)
{
    if (!LOAD(&forksafe__audit_fk.child_mt) || forksafe__in_hook ||
        forksafe__in_resolve)
        return;
    if (!forksafe__audit_once_first(&forksafe__audit_fk.once_unsafe,
                                    (uintptr_t)site))
        return;
    int saved = errno;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (r) {
        forksafe__audit_rec_common(r, "unsafe-call-in-child", "warning");
        forksafe__rec_str(r, "function", fn);
        forksafe__rec_frame(r, "call", forksafe__gettid(), NULL, site);
        forksafe__rec_end_batched(r);
    }
    if (errno != saved)
        errno = saved;
}

#define CHECK_CHILD(fn)                                                        \
    do {                                                                       \
        if (UNLIKELY(LOAD(&forksafe__audit_fk.child_mt)))                      \
            forksafe__audit_note_unsafe(fn, __builtin_return_address(0));      \
    } while (0)

/* Write a child-deadlock finding for lock m and end the process with
   FORKSAFE_AUDIT_DEADLOCK_STATUS. */
static void __attribute__((noreturn))
deadlock_exit(void *m, int kind, void *site, int holder, void *holder_site)
{
    forksafe__rec_make_room(); /* frames need /proc/self/maps */
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (r) {
        forksafe__audit_rec_common(r, "child-deadlock", "error");
        forksafe__rec_hex(r, "lock", (uintptr_t)m);
        forksafe__rec_str(r, "lock_kind", kind_name(kind));
        forksafe__rec_int(r, "holder_tid", holder);
        forksafe__rec_int(r, "grace_ms", forksafe__audit_grace_ms);
        forksafe__rec_int(r, "exit_status", FORKSAFE_AUDIT_DEADLOCK_STATUS);
        forksafe__rec_frame(r, "lock-call", forksafe__gettid(), NULL, site);
        if (holder_site)
            forksafe__rec_frame(r, "lock-taken", holder, NULL, holder_site);
        forksafe__rec_end_final(r);
    }
    _exit(FORKSAFE_AUDIT_DEADLOCK_STATUS);
}

/* Now + the grace period, on CLOCK_MONOTONIC. */
static void grace_deadline(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += forksafe__audit_grace_ms / 1000;
    ts->tv_nsec += (forksafe__audit_grace_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* The snapshot's holder of lock, if another thread held it at the fork. */
static int snap_holder(const void *lock, void **site)
{
    int holder = 0;
    *site = NULL;
    for (int i = 0; i < forksafe__audit_fk.nsnap && i < SNAP_MAX; i++)
        if (forksafe__audit_fk.snap[i].lock == lock) {
            holder = forksafe__audit_fk.snap[i].holder;
            *site = forksafe__audit_fk.snap[i].site;
        }
    return holder;
}

/* In a child of a multi-threaded fork, a lock that another thread held at
   the fork can never be released: wait for it for the grace period only.
   Without a record directory the interposer changes nothing, not even a
   hanging child; process-shared locks can be released by another process,
   and are left alone. */
static int child_mutex_lock(pthread_mutex_t *m, void *site)
{
    forksafe__audit_note_unsafe("pthread_mutex_lock", site);
    /* A process-shared mutex, or one the platform cannot describe, may be
       released by another process: never ended. */
    if (LOAD(&forksafe__audit_fk.child_has_threads) ||
        !forksafe__out_enabled() || forksafe__mutex_pshared(m) != 0)
        return FORKSAFE_POLICY_PASS;
    void *holder_site;
    int holder = snap_holder(m, &holder_site);
    int r = REAL(pthread_mutex_trylock)(m);
    if (r != EBUSY)
        return r;
    /* Busy in a single-threaded child: the holder is a thread that did not
       survive the fork, unless it is this thread itself (a relock). glibc
       keeps the holder's TID for every mutex type. */
    int owner = (int)forksafe__mutex_owner(m);
    if (!holder && owner != 0 && owner != (int)forksafe__gettid())
        holder = owner;
    if (!holder)
        return FORKSAFE_POLICY_PASS;
    struct timespec ts;
    grace_deadline(&ts);
    r = REAL(pthread_mutex_clocklock)(m, CLOCK_MONOTONIC, &ts);
    if (r == ETIMEDOUT)
        deadlock_exit(m, KIND_MUTEX, site, holder, holder_site);
    return r;
}

static int child_sem_wait(sem_t *s, void *site)
{
    forksafe__audit_note_unsafe("sem_wait", site);
    void *holder_site;
    int holder = snap_holder(s, &holder_site);
    int v;
    if (!holder || LOAD(&forksafe__audit_fk.child_has_threads) ||
        !forksafe__out_enabled() || forksafe__sem_pshared(s) != 0 ||
        sem_getvalue(s, &v) != 0 || v != 0)
        return FORKSAFE_POLICY_PASS;
    struct timespec ts;
    grace_deadline(&ts);
    int r = REAL(sem_clockwait)(s, CLOCK_MONOTONIC, &ts);
    if (r != 0 && errno == ETIMEDOUT)
        deadlock_exit(s, KIND_SEMAPHORE, site, holder, holder_site);
    return r;
}

int forksafe__policy_acquire(void *lock, int op, void *site)
{
    if (!LOAD(&forksafe__audit_fk.child_mt))
        return FORKSAFE_POLICY_PASS;
    return op == FORKSAFE_OP_MUTEX_LOCK ? child_mutex_lock(lock, site)
                                        : child_sem_wait(lock, site);
}

void forksafe__policy_thread_created(void)
{
    if (LOAD(&forksafe__audit_fk.child_mt) &&
        !LOAD(&forksafe__audit_fk.child_has_threads))
        STORE(&forksafe__audit_fk.child_has_threads, 1);
}

/* ------------------------------------------------------------ child calls */

/* Calls that are not async-signal-safe: in a child of a multi-threaded
   fork the first call from each call site is reported, then the real
   function runs (the program is never stopped here). Elsewhere they only
   forward. malloc and calloc go straight to glibc while dlsym resolves the
   real functions, since dlsym itself may allocate. */

EXPORT void *malloc(size_t n)
{
    if (UNLIKELY(forksafe__in_resolve))
        return __libc_malloc(n);
    CHECK_CHILD("malloc");
    return REAL(malloc)(n);
}

EXPORT void *calloc(size_t n, size_t size)
{
    if (UNLIKELY(forksafe__in_resolve))
        return __libc_calloc(n, size);
    CHECK_CHILD("calloc");
    return REAL(calloc)(n, size);
}

EXPORT void *realloc(void *p, size_t n)
{
    CHECK_CHILD("realloc");
    return REAL(realloc)(p, n);
}

EXPORT void free(void *p)
{
    if (UNLIKELY(forksafe__in_resolve)) {
        __libc_free(p);
        return;
    }
    CHECK_CHILD("free");
    REAL(free)(p);
}

EXPORT int printf(const char *fmt, ...)
{
    CHECK_CHILD("printf");
    va_list ap;
    va_start(ap, fmt);
    int r = REAL(vprintf)(fmt, ap);
    va_end(ap);
    return r;
}

EXPORT int fprintf(FILE *f, const char *fmt, ...)
{
    CHECK_CHILD("fprintf");
    va_list ap;
    va_start(ap, fmt);
    int r = REAL(vfprintf)(f, fmt, ap);
    va_end(ap);
    return r;
}

EXPORT int puts(const char *s)
{
    CHECK_CHILD("puts");
    return REAL(puts)(s);
}

EXPORT int fputs(const char *s, FILE *f)
{
    CHECK_CHILD("fputs");
    return REAL(fputs)(s, f);
}

EXPORT size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    CHECK_CHILD("fwrite");
    return REAL(fwrite)(p, size, n, f);
}

EXPORT int fflush(FILE *f)
{
    CHECK_CHILD("fflush");
    return REAL(fflush)(f);
}

/* _exit() and _Exit(): what the child collected is written first (exit()
   does it through the exit report). */
EXPORT void _exit(int status)
{
    forksafe__rec_flush();
    void (*real)(int) = (void (*)(int))REAL(_exit);
    real(status);
    __builtin_unreachable();
}

EXPORT void _Exit(int status)
{
    forksafe__rec_flush();
    void (*real)(int) = (void (*)(int))REAL(_exit);
    real(status);
    __builtin_unreachable();
}
