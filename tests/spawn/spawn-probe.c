/* SPDX-License-Identifier: MIT */
/*
 * spawn-probe.c: a tiny program that test-spawn starts with forksafe_spawn
 * and that reports, on stdout, what it inherited: open descriptors, signal
 * mask and dispositions, working directory, environment, process ids; or
 * leaves a mark that it ran.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Under ASan, LeakSanitizer would fail the probe's exit where /proc is
   missing (a scenario unmounts it), and ASAN_OPTIONS cannot turn it off
   there: the runtime reads it from /proc/self/environ. The probe
   allocates nothing worth checking. */
#if defined(__SANITIZE_ADDRESS__)
#define PROBE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PROBE_ASAN 1
#endif
#endif
#ifdef PROBE_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}
#endif

/* Open descriptors, ascending, excluding the one opendir() uses. */
static void report_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        /* No /proc (a scenario unmounts it): ask each number. */
        for (int fd = 0; fd < 1024; fd++)
            if (fcntl(fd, F_GETFD) >= 0)
                printf("%d ", fd);
        printf("\n");
        return;
    }
    int self = dirfd(d), seen[1024] = {0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != self && fd < 1024)
            seen[fd] = 1;
    }
    closedir(d);
    for (int fd = 0; fd < 1024; fd++)
        if (seen[fd])
            printf("%d ", fd);
    printf("\n");
}

/* "blocked: N N ... ignored: N N ..." over the classic signals. */
static void report_signals(void)
{
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    printf("blocked:");
    for (int s = 1; s < 32; s++)
        if (sigismember(&cur, s))
            printf(" %d", s);
    printf(" ignored:");
    for (int s = 1; s < 32; s++) {
        struct sigaction sa;
        if (s != SIGKILL && s != SIGSTOP && sigaction(s, NULL, &sa) == 0 &&
            sa.sa_handler == SIG_IGN)
            printf(" %d", s);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    if (strcmp(mode, "fds") == 0) {
        report_fds();
    } else if (strcmp(mode, "sig") == 0) {
        report_signals();
    } else if (strcmp(mode, "cwd") == 0) {
        char buf[4096];
        if (getcwd(buf, sizeof buf) == NULL)
            return 2;
        printf("%s\n", buf);
    } else if (strcmp(mode, "env") == 0 && argc == 3) {
        const char *v = getenv(argv[2]);
        printf("%s\n", v != NULL ? v : "(unset)");
    } else if (strcmp(mode, "ids") == 0) {
        printf("%d %d %d\n", (int)getpid(), (int)getpgrp(), (int)getsid(0));
    } else if (strcmp(mode, "mark") == 0) {
        /* Write each descriptor's own number into it. */
        for (int i = 2; i < argc; i++) {
            int fd = atoi(argv[i]);
            char b[16];
            int n = snprintf(b, sizeof b, "%d", fd);
            if (write(fd, b, (size_t)n) != n)
                return 3;
        }
    } else if (strcmp(mode, "touch") == 0 && argc == 3) {
        /* Proof that the program ran: create the file argv[2]. */
        FILE *f = fopen(argv[2], "w");
        return f != NULL && fclose(f) == 0 ? 0 : 3;
    } else if (strcmp(mode, "exit") == 0 && argc == 3) {
        return atoi(argv[2]);
    } else {
        return 2;
    }
    return fflush(stdout) == 0 ? 0 : 4;
}
