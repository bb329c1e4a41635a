/* SPDX-License-Identifier: MIT */
/* target-wait.c: forks once with a thread alive (so there is a finding to
   report), prints "ready" and waits for a signal: the signal tests send
   one to forksafe-audit and check that it reaches this program. With
   argv[1] == "trap" it catches SIGTERM, SIGHUP and SIGQUIT, prints which
   one came and exits 0; otherwise they kill it. With "daemon" it starts a
   daemon (a grandchild in its own session) that outlives it by 2 seconds
   and then forks with a thread once more, and exits at once. */
#include "target-util.h"

#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t got;

static void on_signal(int sig)
{
    got = sig;
}

static int fork_once(void)
{
    target_parked_start();
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int st = target_wait(pid, 5000);
    target_parked_stop();
    return st;
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    if (strcmp(m, "daemon") == 0) {
        pid_t d = fork();
        if (d == 0) {
            setsid();
            if (fork() != 0)
                _exit(0);
            struct timespec t = {2, 0};
            nanosleep(&t, NULL);
            _exit(fork_once() == 0 ? 0 : 1);
        }
        int st = target_wait(d, 5000);
        printf("daemon started\n");
        return st == 0 ? 0 : 4;
    }
    if (strcmp(m, "trap") == 0) {
        signal(SIGTERM, on_signal);
        signal(SIGHUP, on_signal);
        signal(SIGQUIT, on_signal);
    }
    if (fork_once() != 0)
        return 3;
    printf("ready\n");
    fflush(stdout);
    while (!got)
        pause();
    printf("got %s\n", got == SIGTERM  ? "TERM"
                       : got == SIGHUP ? "HUP"
                                       : "QUIT");
    return 0;
}
