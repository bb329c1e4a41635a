/* SPDX-License-Identifier: MIT */
/* cmd.c: see cmd.h. */
#include "cmd.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void forksafe__cmd_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

long long forksafe__cmd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int readable(const char *p)
{
    return access(p, R_OK) == 0;
}

/* out = what, made absolute if it can be. */
static void absolute(char *out, size_t len, const char *what)
{
    char abs[PATH_MAX];
    snprintf(out, len, "%s", realpath(what, abs) ? abs : what);
}

int forksafe__cmd_find_preload(const struct forksafe_cmd_preload *p, char *out,
                               size_t len)
{
    const char *env = getenv(p->env);
    char try[PATH_MAX];
    if (env && *env) {
        if (!readable(env)) {
            fprintf(stderr, "%s: %s=%s: %s\n", p->cmd, p->env, env,
                    strerror(errno));
            return -1;
        }
        absolute(out, len, env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        int w = snprintf(try, sizeof try, "%s/%s/%s", exe, p->build_dir,
                         p->name);
        if (w > 0 && (size_t)w < sizeof try && readable(try)) {
            absolute(out, len, try);
            return 0;
        }
        w = snprintf(try, sizeof try, "%s/../%s/forksafe/%s", exe, p->libdir,
                     p->name);
        if (w > 0 && (size_t)w < sizeof try && readable(try)) {
            absolute(out, len, try);
            return 0;
        }
    }
    if (readable(p->installed)) {
        snprintf(out, len, "%s", p->installed);
        return 0;
    }
    fprintf(stderr,
            "%s: cannot find %s (looked next to this program and in %s); "
            "set %s\n",
            p->cmd, p->name, p->installed, p->env);
    return -1;
}
