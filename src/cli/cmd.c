/* SPDX-License-Identifier: MIT */
/* cmd.c: see cmd.h. */
#include "cmd.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
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
