/* SPDX-License-Identifier: MIT */
/*
 * hostile-root.c: the adversary's (round 23) chroot helper for
 * test-audit-hostile-wait.c. "hostile-root HOW ROOT PROG ARGS...":
 * chroot(ROOT) (HOW "lib": through the C library's chroot(); "raw":
 * syscall(SYS_chroot), which no interposer sees, as programs that make
 * their own system calls do), chdir("/"), then execv(PROG, ARGS); if the
 * exec fails, prints why and exits 0.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    int raw = strcmp(argv[1], "raw") == 0;
    int r = raw ? (int)syscall(SYS_chroot, argv[2]) : chroot(argv[2]);
    if (r != 0 || chdir("/") != 0) {
        perror("chroot");
        return 1;
    }
    fflush(stdout);
    execv(argv[3], argv + 3);
    printf("exec %s failed: %s\n", argv[3], strerror(errno));
    return 0;
}
