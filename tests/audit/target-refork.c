/* SPDX-License-Identifier: MIT */
/* target-refork.c: the same fork call site reached in a process and then
   in its child. The process forks there with a thread alive (one
   fork-with-threads finding), stops the thread, and forks again from
   elsewhere, single-threaded (nothing to report). That child starts a
   thread of its own and forks from the first site: its own
   fork-with-threads finding, which it must not take as already made (each
   process reports once per site, so a child forgets its parent's
   "reported" marks). Prints "refork: 0" (the statuses). */
#include "target-util.h"

#include <stdio.h>

static __attribute__((noinline)) int fork_here(void)
{
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    return target_wait(pid, 5000);
}

int main(void)
{
    target_parked_start();
    int st = fork_here();
    target_parked_stop();
    pid_t pid = fork();
    if (pid == 0) {
        target_parked_start();
        int s = fork_here();
        target_parked_stop();
        _exit(s == 0 ? 0 : 3);
    }
    int st2 = target_wait(pid, 10000);
    printf("refork: %d\n", st | st2);
    return st == 0 && st2 == 0 ? 0 : 2;
}
