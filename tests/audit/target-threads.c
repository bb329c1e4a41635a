/* SPDX-License-Identifier: MIT */
/* target-threads.c: fork-with-threads only. A parked thread (started from
   target_parked_main) is alive at fork; the child runs on (takes a lock
   of its own) and leaves with _exit. With argv[1] == "exit-only" the
   child only calls _exit: a fork whose child does not run on, which the
   audit does not report. */
#include "target-util.h"

#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

static volatile long parked_tid;

static void *announce_main(void *arg)
{
    parked_tid = syscall(SYS_gettid);
    return target_parked_main(arg);
}

int main(int argc, char **argv)
{
    int exit_only = argc > 1 && strcmp(argv[1], "exit-only") == 0;
    if (pipe(target_pipe) != 0 ||
        pthread_create(&target_thread, NULL, announce_main, NULL) != 0)
        return 1;
    while (!__atomic_load_n(&parked_tid, __ATOMIC_ACQUIRE))
        sched_yield();
    /* The tests compare this TID with the one in the report. */
    printf("%ld\n", parked_tid);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (exit_only)
            _exit(0);
        target_run_on_exit(0);
    }
    int st = target_wait(pid, 5000);
    target_parked_stop();
    return st == 0 ? 0 : 2;
}
