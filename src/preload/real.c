/* SPDX-License-Identifier: MIT */
/*
 * real.c: the real functions behind every hook, found with
 * dlsym(RTLD_NEXT) by the library's constructor (forksafe__resolve_all),
 * or lazily through REAL() when a hook runs before it (another library's
 * constructor).
 */
#include "interpose.h"

#include <dlfcn.h>

#define FORKSAFE_REAL_DEFINE(ret, name, params)                                \
    HOT ret(*forksafe__real_##name) params;
FORKSAFE_REAL_LIST(FORKSAFE_REAL_DEFINE)
#undef FORKSAFE_REAL_DEFINE

/* Set while dlsym runs, so that an allocation it makes goes straight to
   glibc instead of into a hook whose real function is not known yet. */
TLS int forksafe__in_resolve;
/* Set while the library itself calls into the program's libraries
   (registry lookups at exit), so those calls are not audited. */
TLS int forksafe__in_hook;

void *forksafe__resolve(const char *name)
{
    forksafe__in_resolve++;
    void *p = dlsym(RTLD_NEXT, name);
    forksafe__in_resolve--;
    return p;
}

/* Resolving costs about half a microsecond per name, and every program
   start pays it, so only the functions that may first be called where
   dlsym must not run (a signal handler: fork, _Fork, sem_post, execve; a
   vfork child: execve, _exit) and the allocator (whose hooks must not
   recurse into dlsym) are resolved up front; the rest resolve on first
   use. */
void forksafe__resolve_early(void)
{
    (void)REAL(sem_post);
    (void)REAL(fork);
    (void)REAL(_Fork);
    (void)REAL(execve);
    (void)REAL(_exit);
    (void)REAL(malloc);
    (void)REAL(free);
}
