/* SPDX-License-Identifier: MIT */
/*
 * platform/select.c: which platform layer this process uses. The build
 * compiles one libc's layer (FORKSAFE_PLATFORM_GLIBC, _MUSL or _POSIX);
 * the first call to forksafe__platform() picks it.
 */
#include "platform.h"

#include <stdio.h>
#include <string.h>

#ifdef __GLIBC__
#include <gnu/libc-version.h>
#endif

#if defined(FORKSAFE_PLATFORM_GLIBC)
#define BUILD_LAYER (&forksafe__platform_glibc)
#elif defined(FORKSAFE_PLATFORM_MUSL)
#define BUILD_LAYER (&forksafe__platform_musl)
#elif defined(FORKSAFE_PLATFORM_POSIX)
#define BUILD_LAYER (&forksafe__platform_posix)
#else
#error "the build selects no platform layer (FORKSAFE_PLATFORM_*)"
#endif

void (*forksafe__platform_check_hook)(const char *step, void *lock);

static const struct forksafe_platform *chosen;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char libc_name[64];
static char fallback[384];

static void choose(void)
{
#ifdef __GLIBC__
    snprintf(libc_name, sizeof libc_name, "glibc %s", gnu_get_libc_version());
#elif defined(FORKSAFE_LIBC_MUSL)
    snprintf(libc_name, sizeof libc_name, "musl");
#else
    snprintf(libc_name, sizeof libc_name, "unknown");
#endif
    const struct forksafe_platform *p = BUILD_LAYER;
    char why[256] = "";
    if (p->check && p->check(why, sizeof why) != 0) {
        /* Reading fields whose meaning changed would corrupt locks; the
           POSIX layer reads none. */
        snprintf(fallback, sizeof fallback,
                 "the %s layer's self-check failed (%s), so the POSIX layer "
                 "is used",
                 p->name, why);
        p = &forksafe__platform_posix;
    }
    __atomic_store_n(&chosen, p, __ATOMIC_RELEASE);
}

void *forksafe__check_look(struct forksafe_check *c, const char *step,
                           const void *lock, void *copy, size_t size)
{
    c->step = step;
    memcpy(copy, lock, size);
    if (forksafe__platform_check_hook)
        forksafe__platform_check_hook(step, copy);
    return copy;
}

FS_CHILD_PATH const struct forksafe_platform *forksafe__platform(void)
{
    const struct forksafe_platform *p =
        __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (p)
        return p;
    pthread_once(&once, choose);
    return chosen;
}

void forksafe__platform_info(struct forksafe_platform_info *info)
{
    info->layer = forksafe__platform()->name;
    info->libc = libc_name;
#if defined(__x86_64__)
    info->arch = "x86_64";
#elif defined(__i386__)
    info->arch = "i386";
#elif defined(__aarch64__)
    info->arch = "aarch64";
#else
    info->arch = "unknown";
#endif
    info->fallback = fallback;
}
