/* SPDX-License-Identifier: MIT */
/* target-stdio.c: stdio-unflushed-at-fork only. Output is pending in the
   stdout buffer at fork; the child leaves with _exit (so it is written
   once, by the parent: no hazard), or with argv[1] == "exit" with exit(),
   which writes it a second time. */
#include "target-util.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    int run_on = argc > 1 && strcmp(argv[1], "exit") == 0;
    /* Fully buffered whatever stdout is, so the bytes are still pending. */
    static char buf[4096];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    fputs("pending", stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (run_on)
            exit(0);
        _exit(0);
    }
    return target_wait(pid, 5000) == 0 ? 0 : 2;
}
