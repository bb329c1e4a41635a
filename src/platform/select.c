/* SPDX-License-Identifier: MIT */
/*
 * platform/select.c: which platform layer this process uses. The build
 * compiles one libc's layer (FORKSAFE_PLATFORM_GLIBC, _MUSL or _POSIX);
 * the first call to forksafe__platform() picks it.
 */
#include "platform.h"

#include <stdio.h>

#ifdef __GLIBC__
#include <gnu/libc-version.h>
#endif

#if defined(FORKSAFE_PLATFORM_GLIBC)
#define BUILD_LAYER (&forksafe__platform_glibc)
#else
#error "the build selects no platform layer (FORKSAFE_PLATFORM_*)"
#endif

static const struct forksafe_platform *chosen;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char libc_name[64];

static void choose(void)
{
#ifdef __GLIBC__
    snprintf(libc_name, sizeof libc_name, "glibc %s", gnu_get_libc_version());
#else
    snprintf(libc_name, sizeof libc_name, "unknown");
#endif
    __atomic_store_n(&chosen, BUILD_LAYER, __ATOMIC_RELEASE);
}

const struct forksafe_platform *forksafe__platform(void)
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
    info->fallback = "";
}
