/* SPDX-License-Identifier: MIT */
/*
 * bench-audit.c: what libforksafe-audit.so costs an unmodified program.
 * Each workload runs in a fresh process with and without the interposer
 * (LD_PRELOAD from FORKSAFE_AUDIT_PRELOAD, records going to a fresh
 * directory with a run page, exactly as under forksafe-audit), in
 * interleaved rounds; the median per operation and the ratio
 * audited/plain are printed, with the goal beside each:
 *   exec:   bash running /bin/true 300 times (ms per 300)      <= 1.2x
 *           (wall time; also printed: the CPU time of the process tree,
 *           and both under an empty preload library, from
 *           FORKSAFE_EMPTY_PRELOAD: the loader's floor for any preload)
 *   fork:   fork + child _exit + waitpid, one other thread      <= 1.3x
 *           (wall time, and the CPU time of the forking process and its
 *           children, measured in the workload around its loop:
 *           bench_fork_wait() in workload.c)
 *   pyfork: the same from python3 (os.fork, os._exit, waitpid)  <= 1.3x
 *   mutex:  lock+unlock pairs from 4 threads, own mutex each    <= 1.3x
 *           (CPU time of the threads: see bench_mutex_pairs_cpu())
 * Without FORKSAFE_AUDIT_PRELOAD (built outside scons) it says so and
 * exits 0. BENCH_AUDIT_ONLY=NAME runs only that workload.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "workload.h"
#include "preload/runpage.h"

#define THREADS 4
#define PAIRS   2000000L
#define FORKS   300
#define EXECS   300

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The python workload prints its own figure (µs per fork+wait, measured
   inside the interpreter, so its start-up is not counted). */
static const char pyfork[] =
    "import os, threading, time\n"
    "r, w = os.pipe()\n"
    "t = threading.Thread(target=os.read, args=(r, 1)); t.start()\n"
    "n = 200\n"
    "t0 = time.perf_counter()\n"
    "for i in range(n):\n"
    "    pid = os.fork()\n"
    "    if pid == 0:\n"
    "        os._exit(0)\n"
    "    os.waitpid(pid, 0)\n"
    "us = (time.perf_counter() - t0) / n * 1e6\n"
    "os.write(w, b'x'); t.join()\n"
    "print('%.3f' % us)\n";

/* ------------------------------------------------------------ driver */

/* A fresh record directory with a run page, as forksafe-audit makes. */
static void fresh_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    if (system(cmd) != 0)
        exit(6);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, FORKSAFE_RUNPAGE_NAME);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    struct forksafe_runpage head = {
        FORKSAFE_RUNPAGE_MAGIC, FORKSAFE_RUNPAGE_SIZE, 0, 0, 0, 0};
    if (fd < 0 || ftruncate(fd, FORKSAFE_RUNPAGE_SIZE) != 0 ||
        pwrite(fd, &head, sizeof head, 0) != (ssize_t)sizeof head)
        exit(6);
    close(fd);
}

/* Run argv in a fresh process, with the interposer (audit), with another
   preload library (!audit: only LD_PRELOAD is set) or without; returns
   the figure it prints on stdout (and in *cpu_ms a second figure on the
   same line, when there is one), or, when time_it, the wall time in ms
   (and in *cpu_ms the CPU time, user and system, of the process and every
   descendant it waited for: less moved by other jobs on a shared machine
   than the wall time). */
static double measure(char *const argv[], const char *preload, int audit,
                      const char *dir, int time_it, double *cpu_ms)
{
    int fd[2];
    if (pipe(fd) != 0)
        exit(7);
    if (preload && audit)
        fresh_dir(dir);
    double t0 = now_ns();
    pid_t p = fork();
    if (p == 0) {
        dup2(fd[1], 1);
        /* A clean start, as from a login shell: descriptors the bench
           inherited would be reported (fd-leak-on-exec) by every
           program the workload execs, which is not the cost measured. */
        close_range(3, ~0U, 0);
        unsetenv("LD_PRELOAD");
        unsetenv("FORKSAFE_AUDIT_DIR");
        unsetenv("FORKSAFE_AUDIT_ROOT");
        if (preload)
            setenv("LD_PRELOAD", preload, 1);
        if (preload && audit) {
            char root[32];
            snprintf(root, sizeof root, "%ld", (long)getpid());
            setenv("FORKSAFE_AUDIT_DIR", dir, 1);
            setenv("FORKSAFE_AUDIT_ROOT", root, 1);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    /* Everything it prints, to the end: the figure is the last line. */
    char buf[256] = {0};
    size_t n = 0;
    ssize_t got;
    while ((got = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0 ||
           (got < 0 && errno == EINTR))
        if (got > 0 && (n += (size_t)got) >= sizeof buf - 1)
            n = 0; /* keep reading; only the tail matters */
    buf[n] = '\0';
    close(fd[0]);
    int st;
    struct rusage ru;
    wait4(p, &st, 0, &ru);
    double ms = (now_ns() - t0) / 1e6;
    if (cpu_ms)
        *cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                  (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    if ((!time_it && n == 0) || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench-audit: %s failed (status 0x%x, output '%s')\n",
                argv[0], st, buf);
        exit(1);
    }
    char *last = buf;
    for (char *c = buf; *c; c++)
        if (*c == '\n' && c[1])
            last = c + 1;
    if (time_it)
        return ms;
    char *end;
    double v = strtod(last, &end);
    if (cpu_ms)
        *cpu_ms = strtod(end, NULL);
    return v;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0) {
        if (strcmp(argv[2], "fork") == 0) {
            /* One other thread alive; "wall_us cpu_us" per fork. */
            double cpu, wall = bench_fork_wait(1, FORKS, &cpu);
            printf("%.3f %.3f\n", wall, cpu);
        } else
            printf("%.3f\n", bench_mutex_pairs_cpu(THREADS, PAIRS));
        return 0;
    }
    const char *preload = getenv("FORKSAFE_AUDIT_PRELOAD");
    if (!preload || !*preload) {
        printf("bench-audit: FORKSAFE_AUDIT_PRELOAD is not set (run it "
               "through `scons bench`); skipped\n");
        return 0;
    }
    int rounds = bench_rounds();
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return 1;
    self[sl] = '\0';
    char dir[] = "/tmp/bench-audit-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char recdir[sizeof dir + 8];
    snprintf(recdir, sizeof recdir, "%s/r", dir);

    char loop[128];
    snprintf(loop, sizeof loop,
             "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done", EXECS);
    char *exec_argv[] = {"/bin/bash", "-c", loop, NULL};
    char *fork_argv[] = {self, "--child", "fork", NULL};
    char *mutex_argv[] = {self, "--child", "mutex", NULL};
    char *py_argv[] = {"/usr/bin/python3", "-c", (char *)pyfork, NULL};
    int have_py = access(py_argv[0], X_OK) == 0;

    static const struct {
        const char *name, *unit, *what;
        double goal;
    } w[] = {
        {"exec", "ms", "bash running /bin/true 300 times", 1.2},
        {"fork", "us", "fork + _exit + waitpid, 1 other thread alive", 1.3},
        {"pyfork", "us", "python3 os.fork + waitpid, 1 other thread", 1.3},
        {"mutex", "ns", "lock+unlock pair, 4 threads, own mutex, CPU", 1.3},
    };
    char *const *args[] = {exec_argv, fork_argv, py_argv, mutex_argv};
    const char *empty = getenv("FORKSAFE_EMPTY_PRELOAD");
    if (empty && (!*empty || access(empty, R_OK) != 0))
        empty = NULL;
    const char *only = getenv("BENCH_AUDIT_ONLY");
    printf("bench-audit: %d interleaved rounds, medians; ratio = audited / "
           "plain\n",
           rounds);
    for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
        if (k == 2 && !have_py)
            continue;
        if (only && *only && strcmp(only, w[k].name) != 0)
            continue;
        /* The arms: plain, audited and, for the exec loop, the empty
           preload library. */
        int time_it = k == 0;
        int arms = time_it && empty ? 3 : 2;
        double *v = calloc((size_t)rounds * 6, sizeof *v);
        if (!v)
            return 1;
        double *val[3] = {v, v + rounds, v + 2 * rounds};
        double *cpu[3] = {v + 3 * rounds, v + 4 * rounds, v + 5 * rounds};
        for (int r = 0; r < rounds; r++) {
            /* Rotate which goes first, so drift hits every arm alike. */
            for (int i = 0; i < arms; i++) {
                int a = (r + i) % arms;
                const char *pl = a == 0 ? NULL : a == 1 ? preload : empty;
                val[a][r] =
                    measure(args[k], pl, a == 1, recdir, time_it, &cpu[a][r]);
            }
        }
        double mp = bench_median(val[0], rounds);
        double ma = bench_median(val[1], rounds);
        printf("  %-6s %-46s plain %8.2f %s  audited %8.2f %s  ratio %.2fx "
               "(goal <= %.1fx)\n",
               w[k].name, w[k].what, mp, w[k].unit, ma, w[k].unit, ma / mp,
               w[k].goal);
        if (time_it || k == 1) {
            /* The same runs in CPU time: what the audit costs the
               machine, whatever else runs on it (the fork workload
               measures its own around its loop). */
            double cp = bench_median(cpu[0], rounds);
            double ca = bench_median(cpu[1], rounds);
            printf("  %-6s %-46s plain %8.2f %s  audited %8.2f %s  ratio "
                   "%.2fx\n",
                   "",
                   time_it ? "(the same, CPU time of the process tree)"
                           : "(the same, CPU time of parent and children)",
                   cp, w[k].unit, ca, w[k].unit, ca / cp);
            if (arms == 3) {
                /* The floor: what any preload library costs. */
                double me = bench_median(val[2], rounds);
                double ce = bench_median(cpu[2], rounds);
                printf("  %-6s %-46s plain %8.2f ms  empty   %8.2f ms  ratio "
                       "%.2fx  audited/empty %.2fx\n",
                       "", "(empty preload library, wall time)", mp, me,
                       me / mp, ma / me);
                printf("  %-6s %-46s plain %8.2f ms  empty   %8.2f ms  ratio "
                       "%.2fx  audited/empty %.2fx\n",
                       "", "(empty preload library, CPU time)", cp, ce, ce / cp,
                       ca / ce);
            }
        }
        fflush(stdout);
        free(v);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}
