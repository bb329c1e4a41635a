/* SPDX-License-Identifier: MIT */
/*
 * bench-adopt.c: what adopting forksafe costs a program, measured the way a
 * user would compare: two separate programs (adopt-worker.c), one with a
 * hand-written lock-all pthread_atfork handler and no forksafe, one linked
 * with libforksafe and the same mutexes registered, each with one idle extra
 * thread. Batches of 20 fork+exit+wait are alternated in lockstep between
 * the processes, so the noisy machine's drift falls on all; each method runs
 * in its own process, so every batch follows one of another process, each
 * batch starts with two uncounted forks, and the order of the processes is
 * shuffled every round (a fixed seed), so each takes every position and
 * follows every other equally often (with a rotation the control always ran
 * just after the hand-written program and came out at 1.01, with an interval
 * that excluded 1). Each round gives a ratio against its hand batch, and the
 * medians of those per-round ratios are printed, for N = 0, 1,024 and 16,384
 * mutexes, with a second copy of the hand-written program as a control (the
 * ratio a method with no difference gets). The ratios are of CPU time (the
 * forking thread's and the child's, the median fork of each batch: see
 * adopt-worker.c), with the 95% confidence interval of each median from
 * order statistics (distribution-free: see median_ci()), and, on the line
 * below, of the wall clock (mean per batch), which on a machine shared
 * with other work moves with it. A goal is
 * met when the interval's upper end is below it, missed when its lower end
 * is above it. Also printed, as where the time goes: minor faults per fork
 * in the parent and in the child (copy-on-write and first-touch faults), and
 * each program's mappings and resident anonymous memory, which fork()
 * duplicates (one page-table entry per page); and the same with libforksafe
 * linked statically (adopt-static). One more program is the hand-written
 * one linked with a do-nothing shared library with libforksafe's segments
 * (adopt-hand-dso, adopt-empty.c): what any shared library costs a fork of
 * this size, and the last column compares forksafe_fork with it, which is
 * forksafe's own cost beyond being a shared library.
 */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
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
    double us, flt_parent, flt_child, cpu;
};

static int run(struct worker *w, char cmd, struct batch *b)
{
    if (fputc(cmd, w->in) == EOF || fflush(w->in))
        return -1;
    return fscanf(w->out, "%lf %lf %lf %lf", &b->us, &b->flt_parent,
                  &b->flt_child, &b->cpu) == 4
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

/* Counted rounds per set of worker processes. Each process has its own
   address layout (ASLR) and physical pages, which shift its fork cost by
   a few per cent for as long as it lives: with one process per program the
   control came out at 1.02 with a confidence interval that excluded 1.
   New processes every SESSION rounds turn that bias into noise that the
   median averages out. */
#define SESSION 5

enum { S_HAND, S_CONTROL, S_DSO, S_FORK, S_PLAIN, S_STATIC, S_COUNT };

/* The median of v[0..n) and its 95% confidence interval [*lo, *hi] from
   order statistics: the median lies between the sorted values of ranks
   j = floor(n/2 - 0.98 sqrt(n)) and n + 1 - j (1-based) with probability
   at least about 0.95, whatever the distribution (the normal
   approximation of the binomial; 75 ratios: ranks 29 and 47). Sorts v. */
static double median_ci(double *v, int n, double *lo, double *hi)
{
    double m = bench_median(v, n);
    int k = (int)floor(n / 2.0 - 0.98 * sqrt((double)n)) - 1; /* j - 1 */
    if (k < 0)
        k = 0;
    *lo = v[k];
    *hi = v[n - 1 - k];
    return m;
}

/* What the kernel copies at each fork: the process's mappings, and its
   resident anonymous memory (one page-table entry per page). */
static void footprint(pid_t pid, int *maps, long *anon_kb)
{
    char path[64], line[512];
    *maps = 0;
    *anon_kb = 0;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            ++*maps;
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Anonymous: %ld kB", anon_kb) == 1)
                break;
        fclose(f);
    }
}

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
    int rounds = 5 * bench_rounds();
    unsigned seed = 1;
    static const int sizes[] = {0, 1024, 16384};
    static const char *const prog[S_COUNT] = {
        "adopt-hand",     "adopt-hand",     "adopt-hand-dso",
        "adopt-forksafe", "adopt-forksafe", "adopt-static"};
    static const char cmd[S_COUNT] = {'p', 'p', 'p', 'f', 'p', 'f'};
    printf("bench-adopt: separate programs, one idle extra thread each, "
           "batches of 20 fork+exit+wait in lockstep, the order shuffled "
           "every round; medians of %d per-round ratios against the "
           "hand-written lock-all handler, CPU time of the forking thread "
           "and the child (each batch's median fork), the 95%% confidence "
           "interval of the median in brackets; below it the wall clock's "
           "ratios. control: a second copy of the hand-written program "
           "(what the method itself is off by); empty .so: the hand-written "
           "program linked with a do-nothing shared library that has "
           "libforksafe's segments (what any shared library costs); the last "
           "column: forksafe_fork against that\n",
           rounds);
    printf("  %6s %9s |", "N", "hand us");
    static const char *const col[] = {"control",        "empty .so",
                                      "forksafe_fork",  "fork()+forksafe",
                                      "static archive", "forksafe_fork/.so"};
    for (size_t k = 0; k < sizeof col / sizeof col[0]; k++)
        printf(" %-19s |", col[k]);
    printf("\n");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        struct worker w[S_COUNT];
        static double cpu[S_COUNT][5000], ratio[S_COUNT][5000],
            cratio[S_COUNT + 1][5000];
        double flt[S_COUNT][2] = {{0}};
        int maps[S_COUNT];
        long anon[S_COUNT];
        for (int base = 0; base < rounds; base += SESSION) {
            /* A fresh set of processes: see SESSION. */
            for (int k = 0; k < S_COUNT; k++)
                if (start(&w[k], prog[k], sizes[s])) {
                    perror("bench-adopt: start");
                    return 1;
                }
            int end = base + SESSION < rounds ? base + SESSION : rounds;
            for (int r = base - 2; r < end; r++) { /* two warm-up rounds */
                struct batch b[S_COUNT];
                int order[S_COUNT];
                for (int j = 0; j < S_COUNT; j++) {
                    int i = (int)(rand_r(&seed) % (unsigned)(j + 1));
                    order[j] = order[i];
                    order[i] = j;
                }
                for (int j = 0; j < S_COUNT; j++) {
                    int k = order[j];
                    if (run(&w[k], cmd[k], &b[k])) {
                        fprintf(stderr, "bench-adopt: a worker failed\n");
                        return 1;
                    }
                }
                if (r < base)
                    continue;
                for (int k = 0; k < S_COUNT; k++) {
                    cpu[k][r] = b[k].cpu;
                    ratio[k][r] = b[k].us / b[S_HAND].us;
                    cratio[k][r] =
                        b[S_HAND].cpu > 0 ? b[k].cpu / b[S_HAND].cpu : 1;
                    flt[k][0] += b[k].flt_parent;
                    flt[k][1] += b[k].flt_child;
                }
                cratio[S_COUNT][r] =
                    b[S_DSO].cpu > 0 ? b[S_FORK].cpu / b[S_DSO].cpu : 1;
            }
            for (int k = 0; k < S_COUNT; k++) {
                footprint(w[k].pid, &maps[k], &anon[k]);
                stop(&w[k]);
            }
        }
        double m[S_COUNT], q[S_COUNT], c[S_COUNT + 1], lo[S_COUNT + 1],
            hi[S_COUNT + 1];
        for (int k = 0; k < S_COUNT; k++) {
            m[k] = bench_median(cpu[k], rounds);
            q[k] = bench_median(ratio[k], rounds);
            c[k] = median_ci(cratio[k], rounds, &lo[k], &hi[k]);
        }
        c[S_COUNT] =
            median_ci(cratio[S_COUNT], rounds, &lo[S_COUNT], &hi[S_COUNT]);
        printf("  %6d %9.1f |", sizes[s], m[S_HAND]);
        for (int k = S_CONTROL; k <= S_COUNT; k++)
            printf(" %5.3f [%5.3f-%5.3f] |", c[k], lo[k], hi[k]);
        printf("\n  %6s %9s |", "wall", "");
        for (int k = S_CONTROL; k < S_COUNT; k++)
            printf(" %5.3f %13s |", q[k], "");
        printf("\n");
        printf("  %6s per fork: minor faults parent+child: hand %.1f+%.1f, "
               "forksafe %.1f+%.1f, static %.1f+%.1f; mappings: hand %d, "
               "empty .so %d, forksafe %d, static %d; anonymous KiB: hand %ld, "
               "forksafe %ld, static %ld\n",
               "", flt[S_HAND][0] / rounds, flt[S_HAND][1] / rounds,
               flt[S_PLAIN][0] / rounds, flt[S_PLAIN][1] / rounds,
               flt[S_STATIC][0] / rounds, flt[S_STATIC][1] / rounds,
               maps[S_HAND], maps[S_DSO], maps[S_PLAIN], maps[S_STATIC],
               anon[S_HAND], anon[S_PLAIN], anon[S_STATIC]);
        fflush(stdout);
    }
    return 0;
}
