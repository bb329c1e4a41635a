/* SPDX-License-Identifier: MIT */
/* target-threads.c: fork-with-threads only. A parked thread (started from
   target_parked_main) is alive at fork; the child only calls _exit. */
#include "target-util.h"

#include <stdio.h>
#include <sys/syscall.h>

static volatile long parked_tid;

static void *announce_main(void *arg)
{
    parked_tid = syscall(SYS_gettid);
    return target_parked_main(arg);
}

int main(void)
{
    if (pipe(target_pipe) != 0 ||
        pthread_create(&target_thread, NULL, announce_main, NULL) != 0)
        return 1;
    while (!__atomic_load_n(&parked_tid, __ATOMIC_ACQUIRE))
        sched_yield();
    /* The tests compare this TID with the one in the report. */
    printf("%ld\n", parked_tid);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int st = target_wait(pid, 5000);
    target_parked_stop();
    return st == 0 ? 0 : 2;
}
