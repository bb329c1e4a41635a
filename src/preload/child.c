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
    if (!LOAD(&forksafe__audit_fk.child_mt) || forksafe__audit_in_hook ||
        forksafe__audit_in_resolve)
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
        forksafe__rec_end(r);
    }
    if (errno != saved)
        errno = saved;
}

#define CHECK_CHILD(fn)                                                        \
    do {                                                                       \
        if (UNLIKELY(LOAD(&forksafe__audit_fk.child_mt)))                      \
            forksafe__audit_note_unsafe(fn, __builtin_return_address(0));      \
    } while (0)

void forksafe__audit_deadlock_exit(void *m, int kind, void *site, int holder,
                                   void *holder_site)
{
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (r) {
        forksafe__audit_rec_common(r, "child-deadlock", "error");
        forksafe__rec_hex(r, "lock", (uintptr_t)m);
        forksafe__rec_str(r, "lock_kind", kind_name(kind));
        forksafe__rec_int(r, "holder_tid", holder);
        forksafe__rec_int(r, "forksafe__audit_grace_ms",
                          forksafe__audit_grace_ms);
        forksafe__rec_int(r, "exit_status", FORKSAFE_AUDIT_DEADLOCK_STATUS);
        forksafe__rec_frame(r, "lock-call", forksafe__gettid(), NULL, site);
        if (holder_site)
            forksafe__rec_frame(r, "lock-taken", holder, NULL, holder_site);
        forksafe__rec_end(r);
    }
    _exit(FORKSAFE_AUDIT_DEADLOCK_STATUS);
}

/* Process-shared locks can be released by another process (or by the
   parent's threads, through shared memory): a child waiting on one is not
   stuck, and is never ended. glibc 2.36 (x86_64) marks them with bit 128:
   in a mutex's __kind (PTHREAD_MUTEX_PSHARED_BIT) and in the int after a
   semaphore's 64-bit value word; both checked on this machine with
   pthread_mutexattr_setpshared and sem_init(s, 1, v). */
static int mutex_pshared(const pthread_mutex_t *m)
{
    return (m->__data.__kind & 128) != 0;
}

int forksafe__audit_sem_pshared(const sem_t *s)
{
    return (((const int *)(const void *)s)[2] & 128) != 0;
}

/* Now + the grace period, on CLOCK_MONOTONIC. */
void forksafe__audit_grace_deadline(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += forksafe__audit_grace_ms / 1000;
    ts->tv_nsec += (forksafe__audit_grace_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* In a child of a multi-threaded fork, a lock that another thread held at
   the fork can never be released: wait for it for the grace period only.
   Returns the lock result, or -1 to take the normal path. */
int forksafe__audit_child_lock(pthread_mutex_t *m, void *site)
{
    forksafe__audit_note_unsafe("pthread_mutex_lock", site);
    /* Without a record directory the interposer changes nothing, not even
       a hanging child. */
    if (LOAD(&forksafe__audit_fk.child_has_threads) ||
        !forksafe__out_enabled() || mutex_pshared(m))
        return -1;
    int holder = 0;
    void *holder_site = NULL;
    for (int i = 0; i < forksafe__audit_fk.nsnap; i++)
        if (forksafe__audit_fk.snap[i].lock == m) {
            holder = forksafe__audit_fk.snap[i].holder;
            holder_site = forksafe__audit_fk.snap[i].site;
        }
    int r = REAL(pthread_mutex_trylock)(m);
    if (r != EBUSY)
        return r;
    /* Busy in a single-threaded child: the holder is a thread that did not
       survive the fork, unless it is this thread itself (a relock). glibc
       keeps the holder's TID in __owner for every mutex type. */
    int owner = m->__data.__owner;
    if (!holder && owner != 0 && owner != (int)forksafe__gettid())
        holder = owner;
    if (!holder)
        return -1;
    struct timespec ts;
    forksafe__audit_grace_deadline(&ts);
    r = REAL(pthread_mutex_clocklock)(m, CLOCK_MONOTONIC, &ts);
    if (r == ETIMEDOUT)
        forksafe__audit_deadlock_exit(m, KIND_MUTEX, site, holder, holder_site);
    return r;
}

/* ------------------------------------------------------------ child calls */

/* Calls that are not async-signal-safe: in a child of a multi-threaded
   fork the first call from each call site is reported, then the real
   function runs (the program is never stopped here). Elsewhere they only
   forward. malloc and calloc go straight to glibc while dlsym resolves the
   real functions, since dlsym itself may allocate. */

EXPORT void *malloc(size_t n)
{
    if (UNLIKELY(forksafe__audit_in_resolve))
        return __libc_malloc(n);
    CHECK_CHILD("malloc");
    return REAL(malloc)(n);
}

EXPORT void *calloc(size_t n, size_t size)
{
    if (UNLIKELY(forksafe__audit_in_resolve))
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
    if (UNLIKELY(forksafe__audit_in_resolve)) {
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
