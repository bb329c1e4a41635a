/* SPDX-License-Identifier: MIT */
/*
 * fs-plugin-peer.c: a plugin linked with its own libforksafe (the shared
 * library, or a copy built with another peer interface version), loaded by
 * test-peer.c, a program that links libforksafe.a: two copies of the
 * library in one process. It registers a mutex and a callback set when it
 * is loaded, and offers the test a few calls made from its side.
 */
#include "forksafe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define API __attribute__((visibility("default")))

static pthread_mutex_t plugin_mu = PTHREAD_MUTEX_INITIALIZER;
static int plugin_ctx;

API char plugin_trace[64];
API int plugin_result; /* what registering at load returned */
API char plugin_error[512];

static void note(const char *s)
{
    strncat(plugin_trace, s, sizeof plugin_trace - strlen(plugin_trace) - 1);
}

static int on_prepare(void *c, const struct timespec *d)
{
    (void)c;
    (void)d;
    note("p200");
    return 0;
}

static void on_parent(void *c)
{
    (void)c;
    note("P200");
}

static const struct forksafe_ops ops = {on_prepare, on_parent, NULL};

__attribute__((constructor)) static void plugin_init(void)
{
    plugin_result = forksafe_register_mutex(&plugin_mu, "plugin mutex", 200);
    if (plugin_result == 0)
        plugin_result =
            forksafe_register_ops(&plugin_ctx, "plugin ops", 200, &ops);
    snprintf(plugin_error, sizeof plugin_error, "%s", forksafe_last_error());
}

API void *plugin_mutex(void);
API int plugin_lookup(const void *key);
API int plugin_register_null(void);
API const char *plugin_last_error(void);
API int plugin_report(int fd);

void *plugin_mutex(void)
{
    return &plugin_mu;
}

int plugin_lookup(const void *key)
{
    return forksafe_lookup(key, NULL);
}

int plugin_register_null(void)
{
    return forksafe_register_mutex(NULL, "null", 1);
}

const char *plugin_last_error(void)
{
    return forksafe_last_error();
}

int plugin_report(int fd)
{
    return forksafe_audit_write(fd, 0);
}
