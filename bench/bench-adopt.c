/* SPDX-License-Identifier: MIT */
/*
 * bench-adopt.c: what adopting forksafe costs a program, measured the way a
 * user would compare: two separate programs (adopt-worker.c), one with a
 * hand-written lock-all pthread_atfork handler and no forksafe, one linked
 * with libforksafe and the same mutexes registered, each with one idle
 * extra thread. Batches of 20 fork+wait are alternated in lockstep between
 * the two processes (hand, forksafe_fork, plain fork, hand), so the noisy
 * machine's drift falls on both; each round gives a ratio against the mean
 * of its two hand batches, and the medians of those per-round ratios are
 * printed, for N = 0, 1,024 and 16,384 mutexes. Also printed: minor faults
 * per fork in the parent and in the child (copy-on-write and first-touch
 * faults, the main cost forksafe can add), and, for reference, the same
 * with libforksafe linked statically (adopt-static).
 */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct worker {
    pid_t pid;
    FILE *in, *out;
};

static char dir[PATH_MAX];

static int start(struct worker *w, const char *name, int n)
{
    char path[PATH_MAX + 64], arg[32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(arg, sizeof arg, "%d", n);
    int to[2], from[2];
    if (pipe(to) || pipe(from))
        return -1;
    w->pid = fork();
    if (w->pid < 0)
        return -1;
    if (w->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]), close(to[1]), close(from[0]), close(from[1]);
        execl(path, path, arg, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    w->in = fdopen(to[1], "w");
    w->out = fdopen(from[0], "r");
    return w->in && w->out ? 0 : -1;
}

struct batch {
    double us, flt_parent, flt_child;
};

static int run(struct worker *w, char cmd, struct batch *b)
{
    if (fputc(cmd, w->in) == EOF || fflush(w->in))
        return -1;
    return fscanf(w->out, "%lf %lf %lf", &b->us, &b->flt_parent,
                  &b->flt_child) == 3
               ? 0
               : -1;
}

static void stop(struct worker *w)
{
    fputc('q', w->in);
    fclose(w->in);
    fclose(w->out);
    waitpid(w->pid, NULL, 0);
}

enum { S_HAND, S_FORK, S_PLAIN, S_STATIC, S_COUNT };

int main(int argc, char **argv)
{
    (void)argc;
    snprintf(dir, sizeof dir, "%s", argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    signal(SIGPIPE, SIG_IGN);
    int rounds = 3 * bench_rounds();
    static const int sizes[] = {0, 1024, 16384};
    printf("bench-adopt: two separate programs, lockstep batches of 20 "
           "fork+wait, one idle extra thread; medians of %d per-round "
           "ratios against the hand-written lock-all handler\n",
           rounds);
    printf("  %6s %11s %14s %7s %16s %7s %10s %7s   faults/fork "
           "parent+child: hand, forksafe_fork, fork()\n",
           "N", "hand (us)", "forksafe_fork", "ratio", "fork()+forksafe",
           "ratio", "static", "ratio");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        struct worker w[S_COUNT];
        static const char *const prog[S_COUNT] = {
            "adopt-hand", "adopt-forksafe", NULL, "adopt-static"};
        for (int k = 0; k < S_COUNT; k++)
            if (prog[k] && start(&w[k], prog[k], sizes[s])) {
                perror("bench-adopt: start");
                return 1;
            }
        static double t[S_COUNT][3000], ratio[S_COUNT][3000];
        double flt[S_COUNT][2] = {{0}};
        for (int r = -2; r < rounds; r++) {
            struct batch a1, a2, b[S_COUNT];
            if (run(&w[S_HAND], 'p', &a1) || run(&w[S_FORK], 'f', &b[S_FORK]) ||
                run(&w[S_FORK], 'p', &b[S_PLAIN]) ||
                run(&w[S_STATIC], 'f', &b[S_STATIC]) ||
                run(&w[S_HAND], 'p', &a2)) {
                fprintf(stderr, "bench-adopt: a worker failed\n");
                return 1;
            }
            if (r < 0)
                continue; /* warm-up */
            double a = (a1.us + a2.us) / 2;
            b[S_HAND] = a1;
            t[S_HAND][r] = a;
            for (int k = 0; k < S_COUNT; k++) {
                if (k != S_HAND) {
                    t[k][r] = b[k].us;
                    ratio[k][r] = b[k].us / a;
                }
                flt[k][0] += b[k].flt_parent;
                flt[k][1] += b[k].flt_child;
            }
        }
        double m[S_COUNT], q[S_COUNT];
        for (int k = 0; k < S_COUNT; k++) {
            m[k] = bench_median(t[k], rounds);
            q[k] = k == S_HAND ? 1.0 : bench_median(ratio[k], rounds);
        }
        printf("  %6d %11.1f %14.1f %7.3f %16.1f %7.3f %10.1f %7.3f   "
               "%.1f+%.1f, %.1f+%.1f, %.1f+%.1f\n",
               sizes[s], m[S_HAND], m[S_FORK], q[S_FORK], m[S_PLAIN],
               q[S_PLAIN], m[S_STATIC], q[S_STATIC], flt[S_HAND][0] / rounds,
               flt[S_HAND][1] / rounds, flt[S_FORK][0] / rounds,
               flt[S_FORK][1] / rounds, flt[S_PLAIN][0] / rounds,
               flt[S_PLAIN][1] / rounds);
        fflush(stdout);
        for (int k = 0; k < S_COUNT; k++)
            if (prog[k])
                stop(&w[k]);
    }
    return 0;
}
