/* SPDX-License-Identifier: MIT */
/*
 * fs-plugin-tail.c: a shared object whose registration functions only call
 * forksafe, so that an optimising compiler turns them into tail calls (a
 * jmp: forksafe then sees the plugin's caller as its caller). Built at -O0
 * and at -O2 for test-dlclose.c, which calls them from the test program,
 * unloads the plugin and forks.
 */
#include "forksafe.h"

#include <unistd.h>

static pthread_mutex_t tail_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t foreign_lock = PTHREAD_MUTEX_INITIALIZER;
static int tail_ctx;

static void tail_child(void *ctx)
{
    (void)ctx;
    _exit(43); /* test-dlclose checks that this ran while loaded */
}

static const struct forksafe_ops tail_ops = {NULL, NULL, tail_child};

#define API __attribute__((visibility("default")))

API int plugin_register_lock(void);
API int plugin_register_ops(void);
API void *plugin_lock_address(void);
API void *plugin_foreign_lock(void);
API void *plugin_ops_context(void);

int plugin_register_lock(void)
{
    return forksafe_register_mutex(&tail_lock, "tail lock",
                                   FORKSAFE_RANK_LIBRARY);
}

int plugin_register_ops(void)
{
    return forksafe_register_ops(&tail_ctx, "tail ops",
                                 FORKSAFE_RANK_LIBRARY + 1, &tail_ops);
}

void *plugin_lock_address(void)
{
    return &tail_lock;
}

/* A lock the plugin never registers: the test program registers it. */
void *plugin_foreign_lock(void)
{
    return &foreign_lock;
}

/* The context of its callback set (test-dlclose unregisters it where the
   plugin cannot be unloaded). */
void *plugin_ops_context(void)
{
    return &tail_ctx;
}
