/* SPDX-License-Identifier: MIT */
/* target-forker.c: forks once while another thread is alive (the child
   runs on) and prints "forked: 0" (the child's status). Built as it is, statically linked
   (target-forker-static) and, where the compiler can, as a 32-bit program
   (target-forker32): the audit must say when it could not see it. */
#include "target-util.h"

#include <stdio.h>

int main(void)
{
    target_parked_start();
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int st = target_wait(pid, 5000);
    target_parked_stop();
    printf("forked: %d\n", st);
    return st == 0 ? 0 : 2;
}
