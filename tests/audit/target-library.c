/* SPDX-License-Identifier: MIT */
/* target-library.c: library-without-adapter only. Loads SQLite with
   dlopen() after start (exit 77 if it is not installed) and forks once,
   single-threaded; the child only calls _exit. */
#include "target-util.h"

#include <dlfcn.h>

int main(void)
{
    void *h = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 77;
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    return target_wait(pid, 5000) == 0 ? 0 : 2;
}
