/* SPDX-License-Identifier: MIT */
/*
 * target-output.c: a program whose output and end the forksafe-run suite
 * compares with and without forksafe-run.
 *
 *   target-output exit N     write to stdout and stderr (also from a
 *                            forked child, with a thread alive), exit N
 *   target-output abort      the same, then abort()
 *   target-output ppid       print the parent's pid
 *   target-output env        print the environment variables whose name
 *                            starts with FORKSAFE or is LD_PRELOAD
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

static void *idle(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
        usleep(1000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ppid") == 0) {
        printf("%ld\n", (long)getppid());
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "env") == 0) {
        for (char **e = environ; *e; e++)
            if (strncmp(*e, "FORKSAFE", 8) == 0 ||
                strncmp(*e, "LD_PRELOAD=", 11) == 0)
                printf("%s\n", *e);
        return 0;
    }
    pthread_t t;
    pthread_create(&t, NULL, idle, NULL);
    printf("out: line 1\n");
    fprintf(stderr, "err: line 1\n");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_lock(&m);
        printf("out: from the child\n");
        fflush(stdout);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    printf("out: line 2\n");
    fprintf(stderr, "err: line 2\n");
    fflush(NULL);
    if (argc >= 2 && strcmp(argv[1], "abort") == 0)
        abort();
    return argc >= 3 ? atoi(argv[2]) : 0;
}
