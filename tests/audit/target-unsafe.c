/* SPDX-License-Identifier: MIT */
/* target-unsafe.c: unsafe-call-in-child (with its prerequisite,
   fork-with-threads). The child of a multi-threaded parent calls malloc()
   in child_work() before _exit. */
#include "target-util.h"

#include <string.h>

static void *(*volatile alloc)(size_t) = malloc;

__attribute__((noinline)) static int child_work(void)
{
    char *p = alloc(64);
    if (!p)
        return 1;
    memset(p, 0, 64);
    return p[3];
}

int main(void)
{
    target_parked_start();
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_work());
    int st = target_wait(pid, 5000);
    target_parked_stop();
    return st == 0 ? 0 : 2;
}
