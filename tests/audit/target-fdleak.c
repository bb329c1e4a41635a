/* SPDX-License-Identifier: MIT */
/* target-fdleak.c: fd-leak-on-exec only. A temporary file is opened
   without close-on-exec; a single-threaded child then execs /bin/true,
   which inherits it. */
#include "target-util.h"

#include <stdio.h>

int main(void)
{
    char path[] = "/tmp/fsaudit-leak-XXXXXX";
    int fd = mkstemp(path); /* no O_CLOEXEC */
    if (fd < 0)
        return 1;
    unlink(path);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int st = target_wait(pid, 5000);
    close(fd);
    return st == 0 ? 0 : 2;
}
