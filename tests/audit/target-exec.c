/* SPDX-License-Identifier: MIT */
/* target-exec.c: start PROGRAM (argv[2], with the arguments after it)
   after emptying or rewriting the environment, the way real programs do:
     clearenv   clearenv() then execv()
     empty      execve() with an empty environment
     null       execve() with a NULL environment (Linux: empty)
     execl      clearenv() then execl()
     execle     execle() with an empty environment
     execvpe    execvpe() with an empty environment
     fexecve    fexecve() on an open descriptor, empty environment
     unset      unsetenv("LD_PRELOAD") then execv()
     rewrite    setenv("LD_PRELOAD", "") then execv()
     spawn      posix_spawn() with an empty environment
     system     clearenv() then system("PROGRAM ARGS")
     popen      clearenv() then popen("PROGRAM ARGS"), copying its output
   The exec modes never return; the others exit with PROGRAM's status. */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int status_of(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *m = argv[1];
    char **prog = argv + 2;
    char *empty[] = {NULL};
    char cmd[4096] = "";
    for (char **a = prog; *a; a++) {
        strncat(cmd, *a, sizeof cmd - strlen(cmd) - 2);
        strcat(cmd, " ");
    }
    if (strcmp(m, "clearenv") == 0) {
        clearenv();
        execv(prog[0], prog);
    } else if (strcmp(m, "empty") == 0) {
        execve(prog[0], prog, empty);
    } else if (strcmp(m, "null") == 0) {
        execve(prog[0], prog, NULL);
    } else if (strcmp(m, "execl") == 0) {
        clearenv();
        execl(prog[0], prog[0], prog[1], (char *)NULL);
    } else if (strcmp(m, "execle") == 0) {
        execle(prog[0], prog[0], prog[1], (char *)NULL, empty);
    } else if (strcmp(m, "execvpe") == 0) {
        execvpe(prog[0], prog, empty);
    } else if (strcmp(m, "fexecve") == 0) {
        int fd = open(prog[0], O_RDONLY | O_CLOEXEC);
        fexecve(fd, prog, empty);
    } else if (strcmp(m, "unset") == 0) {
        unsetenv("LD_PRELOAD");
        execv(prog[0], prog);
    } else if (strcmp(m, "rewrite") == 0) {
        setenv("LD_PRELOAD", "", 1);
        execv(prog[0], prog);
    } else if (strcmp(m, "spawn") == 0) {
        pid_t pid;
        int st;
        if (posix_spawn(&pid, prog[0], NULL, NULL, prog, empty) != 0 ||
            waitpid(pid, &st, 0) != pid)
            return 120;
        return status_of(st);
    } else if (strcmp(m, "system") == 0) {
        clearenv();
        int st = system(cmd);
        return st < 0 ? 121 : status_of(st);
    } else if (strcmp(m, "popen") == 0) {
        clearenv();
        FILE *f = popen(cmd, "r");
        if (!f)
            return 122;
        char buf[512];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, n, stdout);
        int st = pclose(f);
        return st < 0 ? 123 : status_of(st);
    } else {
        return 2;
    }
    perror("exec");
    return 127;
}
