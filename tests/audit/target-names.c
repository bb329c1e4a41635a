/* SPDX-License-Identifier: MIT */
/* target-names.c: fork-with-threads with a thread whose name is not
   UTF-8 (bytes 0xff 0xfe, a backslash, a quote and a tab), so that the
   report has to carry names it cannot write as they are. */
#include "target-util.h"

int main(void)
{
    target_parked_start();
    if (pthread_setname_np(target_thread, "bad\xff\xfe\\\"\t") != 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int st = target_wait(pid, 5000);
    target_parked_stop();
    return st == 0 ? 0 : 2;
}
