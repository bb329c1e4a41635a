/* SPDX-License-Identifier: MIT */
/*
 * fs-plugin-atfork.c: a shared object that registers raw pthread_atfork()
 * handlers when it is loaded and never removes them, for test-atfork.c:
 * after dlclose() no fork may call them.
 */
#include <pthread.h>

__attribute__((visibility("default"))) int plugin_atfork_ran;

static void on_prepare(void)
{
    plugin_atfork_ran = 1;
}

static void on_parent(void)
{
    plugin_atfork_ran++;
}

static void on_child(void)
{
    plugin_atfork_ran += 2;
}

__attribute__((constructor)) static void plugin_init(void)
{
    pthread_atfork(on_prepare, on_parent, on_child);
}
