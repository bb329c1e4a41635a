/* SPDX-License-Identifier: MIT */
/*
 * hostile-root.c: the adversary's (round 23) chroot helper for
 * test-audit-hostile-wait.c. "hostile-root HOW ROOT PROG ARGS...":
 * chroot(ROOT) and chdir("/"), then start PROG:
 *
 *   lib     chroot() through the C library, then execv(PROG, ARGS)
 *   raw     syscall(SYS_chroot), which no interposer sees (as programs
 *           that make their own system calls do), then execv
 *   spawn   chroot(), then posix_spawn(PROG, ARGS) and wait for it
 *   system  chroot(), then system(PROG) (ROOT needs /bin/sh)
 *   escape  a descriptor of the old root kept, chroot(ROOT), then
 *           fchdir() to it and chroot("."): back at the old root, execv
 *
 * If the exec fails, prints why and exits 0; spawn and system print
 * nothing else and exit 0 when PROG exited 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    const char *how = argv[1];
    int old = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = strcmp(how, "raw") == 0 ? (int)syscall(SYS_chroot, argv[2])
                                    : chroot(argv[2]);
    if (r != 0 || chdir("/") != 0) {
        perror("chroot");
        return 1;
    }
    if (strcmp(how, "escape") == 0 &&
        (old < 0 || fchdir(old) != 0 || chroot(".") != 0 || chdir("/") != 0)) {
        perror("escape");
        return 1;
    }
    fflush(stdout);
    if (strcmp(how, "spawn") == 0) {
        pid_t p;
        int st;
        if (posix_spawn(&p, argv[3], NULL, NULL, argv + 3, environ) != 0 ||
            waitpid(p, &st, 0) != p)
            return 1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    if (strcmp(how, "system") == 0) {
        int st = system(argv[3]);
        return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    }
    execv(argv[3], argv + 3);
    printf("exec %s failed: %s\n", argv[3], strerror(errno));
    return 0;
}
