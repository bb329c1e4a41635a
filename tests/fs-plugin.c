/* SPDX-License-Identifier: MIT */
/*
 * fs-plugin.c: a shared object that registers a mutex and a callback set
 * when it is loaded and never unregisters them, for test-dlclose.c.
 */
#include "forksafe.h"

#include <unistd.h>

static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;
static int plugin_ctx;

static void plugin_child(void *ctx)
{
    (void)ctx;
    /* Proves the callback ran: test-dlclose checks this exit code. */
    _exit(42);
}

static const struct forksafe_ops ops = {NULL, NULL, plugin_child};

int plugin_registered;
void *plugin_lock_address(void);
void *plugin_ops_context(void);

__attribute__((constructor)) static void plugin_init(void)
{
    plugin_registered =
        forksafe_register_mutex(&plugin_lock, "plugin lock",
                                FORKSAFE_RANK_LIBRARY) == 0 &&
        forksafe_register_ops(&plugin_ctx, "plugin ops",
                              FORKSAFE_RANK_LIBRARY + 1, &ops) == 0;
}

__attribute__((visibility("default"))) void *plugin_lock_address(void)
{
    return &plugin_lock;
}

/* Where the plugin cannot be unloaded (musl), test-dlclose unregisters
   its entries itself. */
__attribute__((visibility("default"))) void *plugin_ops_context(void)
{
    return &plugin_ctx;
}
