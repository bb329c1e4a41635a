/* SPDX-License-Identifier: MIT */
/*
 * setup.c: the real functions behind every hook of libforksafe-audit.so,
 * found with dlsym(RTLD_NEXT) in the constructor, and lazily (REAL()) if a
 * hook runs before it (another library's constructor). The constructor also
 * reads the audit's settings and scans the descriptors inherited by exec.
 */
#include "audit.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

/* ------------------------------------------------------------ real calls */

int (*forksafe__audit_real_pthread_mutex_lock)(pthread_mutex_t *);
int (*forksafe__audit_real_pthread_mutex_trylock)(pthread_mutex_t *);
int (*forksafe__audit_real_pthread_mutex_timedlock)(pthread_mutex_t *,
                                                    const struct timespec *);
int (*forksafe__audit_real_pthread_mutex_clocklock)(pthread_mutex_t *,
                                                    clockid_t,
                                                    const struct timespec *);
int (*forksafe__audit_real_pthread_mutex_unlock)(pthread_mutex_t *);
int (*forksafe__audit_real_pthread_mutex_destroy)(pthread_mutex_t *);
int (*forksafe__audit_real_pthread_rwlock_rdlock)(pthread_rwlock_t *);
int (*forksafe__audit_real_pthread_rwlock_wrlock)(pthread_rwlock_t *);
int (*forksafe__audit_real_pthread_rwlock_tryrdlock)(pthread_rwlock_t *);
int (*forksafe__audit_real_pthread_rwlock_trywrlock)(pthread_rwlock_t *);
int (*forksafe__audit_real_pthread_rwlock_unlock)(pthread_rwlock_t *);
int (*forksafe__audit_real_pthread_create)(pthread_t *, const pthread_attr_t *,
                                           void *(*)(void *), void *);
int (*forksafe__audit_real_pthread_cond_wait)(pthread_cond_t *,
                                              pthread_mutex_t *);
int (*forksafe__audit_real_pthread_cond_timedwait)(pthread_cond_t *,
                                                   pthread_mutex_t *,
                                                   const struct timespec *);
int (*forksafe__audit_real_pthread_cond_clockwait)(pthread_cond_t *,
                                                   pthread_mutex_t *, clockid_t,
                                                   const struct timespec *);
int (*forksafe__audit_real_sem_wait)(sem_t *);
int (*forksafe__audit_real_sem_trywait)(sem_t *);
int (*forksafe__audit_real_sem_timedwait)(sem_t *, const struct timespec *);
int (*forksafe__audit_real_sem_clockwait)(sem_t *, clockid_t,
                                          const struct timespec *);
int (*forksafe__audit_real_sem_post)(sem_t *);
int (*forksafe__audit_real_sem_destroy)(sem_t *);
pid_t (*forksafe__audit_real_fork)(void);
pid_t (*forksafe__audit_real__Fork)(void);
int (*forksafe__audit_real___register_atfork)(void (*)(void), void (*)(void),
                                              void (*)(void), void *);
void *(*forksafe__audit_real_malloc)(size_t);
void *(*forksafe__audit_real_calloc)(size_t, size_t);
void *(*forksafe__audit_real_realloc)(void *, size_t);
void (*forksafe__audit_real_free)(void *);
int (*forksafe__audit_real_vprintf)(const char *, va_list);
int (*forksafe__audit_real_vfprintf)(FILE *, const char *, va_list);
int (*forksafe__audit_real_puts)(const char *);
int (*forksafe__audit_real_fputs)(const char *, FILE *);
size_t (*forksafe__audit_real_fwrite)(const void *, size_t, size_t, FILE *);
int (*forksafe__audit_real_fflush)(FILE *);

/* Set while dlsym runs, so that an allocation it makes goes straight to
   glibc instead of into a hook whose real function is not known yet. */
TLS int forksafe__audit_in_resolve;
/* Set while the audit itself calls into the program's libraries (registry
   lookups at exit), so those calls are not audited. */
TLS int forksafe__audit_in_hook;

void *forksafe__audit_resolve(const char *name)
{
    forksafe__audit_in_resolve++;
    void *p = dlsym(RTLD_NEXT, name);
    forksafe__audit_in_resolve--;
    return p;
}

/* ------------------------------------------------------------ setup */

__attribute__((constructor)) static void audit_init(void)
{
    int saved = errno;
    forksafe__out_init();
    REAL(pthread_mutex_lock);
    REAL(pthread_mutex_unlock);
    REAL(pthread_mutex_trylock);
    REAL(pthread_mutex_clocklock);
    REAL(fork);
    REAL(malloc);
    REAL(free);
    REAL(calloc);
    REAL(realloc);
    forksafe__audit_thread_key_init();
    /* A fallback for programs whose main() we did not see start; see
       main_wrapper (report.c) for why that one is preferred. */
    atexit(forksafe__audit_exit_late);
    forksafe__audit_self();
    const char *g = getenv("FORKSAFE_AUDIT_GRACE_MS");
    if (g && *g >= '0' && *g <= '9')
        forksafe__audit_grace_ms = strtol(g, NULL, 10);
    if (!forksafe__out_enabled()) {
        if (errno != saved)
            errno = saved;
        return;
    }
    /* The descriptor scan comes first, before our own record file is
       opened. */
    const char *root = getenv("FORKSAFE_AUDIT_ROOT");
    if (root && strtol(root, NULL, 10) != forksafe__getpid())
        forksafe__audit_report_inherited_fds();
    if (errno != saved)
        errno = saved;
}
