/* SPDX-License-Identifier: MIT */
/* rules-plugin.c: a plugin that registers its lock with forksafe when it
   is loaded (and so loses the registration when it is unloaded), for
   target-rules held-plugin: a lock registered at the fork, by a library
   that is gone at exit. */
#include <forksafe.h>

static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((constructor)) static void plugin_init(void)
{
    forksafe_register_mutex(&plugin_lock, "plugin.lock", FORKSAFE_RANK_LIBRARY);
}

pthread_mutex_t *rules_plugin_lock(void);
pthread_mutex_t *rules_plugin_lock(void)
{
    return &plugin_lock;
}
