/* SPDX-License-Identifier: MIT */
/*
 * bench-run.c: what forksafe-run fixes and what it costs an unmodified
 * program. Each workload runs in a fresh process with and without
 * libforksafe-run.so preloaded, in interleaved rounds:
 *
 *   hang:   tests/run/target-hang (4 threads take 8 mutexes at random
 *           while main forks 200 times; each child takes every mutex and
 *           calls malloc under a 400 ms watchdog), normal, errorcheck and
 *           recursive mutexes, with and without the forking thread holding
 *           one: children hung without and under it      (goal: ~95%, 0),
 *           and children that found the forking thread's mutex not held
 *           with its type and depth ("wrong"; a recursive mutex the forker
 *           held cannot be unlocked in a plain child: EPERM)
 *   sqlite: python3, a thread using sqlite3 while multiprocessing forks
 *           12 workers: workers hung without and under it  (goal: >0, 0)
 *   mutex:  lock+unlock pairs from 4 threads, own mutex each   <= 1.3x
 *           (CPU time per pair, each mutex on its own cache line:
 *           with 4 threads on fewer cores, or a shared machine, wall
 *           time is mostly how the scheduler shared the cores)
 *   fork:   fork + _exit + waitpid, 4 idle threads alive       <= 1.5x
 *   hooks:  the lock and unlock hooks alone, measured in one process
 *           (hooks_ratio(): finer than two processes can be)
 *
 * and the extra wait at a fork as forksafe-run --report gives it (median,
 * percentiles, maximum), for the hang workload and for the idle one.
 * Without FORKSAFE_RUN_PRELOAD (built outside scons) it says so and exits
 * 0. BENCH_RUN_ONLY=cost skips the hang and sqlite rounds; BENCH_ROUNDS
 * sets the rounds (bench.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "workload.h"

#define THREADS    4
#define PAIRS      2000000L
#define FORKS      300
#define HANG_FORKS 200

/* ------------------------------------------------------------ driver */

/* Run argv in a fresh process, with LD_PRELOAD=preload (or none); returns
   its standard output's last line in out (size n). Exits on failure. */
static void run_capture(char *const argv[], const char *preload, char *out,
                        size_t n)
{
    int fd[2];
    if (pipe(fd) != 0)
        exit(7);
    pid_t p = fork();
    if (p == 0) {
        dup2(fd[1], 1);
        close_range(3, ~0U, 0);
        unsetenv("LD_PRELOAD");
        unsetenv("FORKSAFE_RUN_TIMEOUT_MS");
        if (preload)
            setenv("LD_PRELOAD", preload, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    char buf[4096] = {0};
    size_t len = 0;
    ssize_t got;
    while ((got = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0 ||
           (got < 0 && errno == EINTR))
        if (got > 0 && (len += (size_t)got) >= sizeof buf - 1)
            len = 0; /* keep reading; only the tail matters */
    buf[len] = '\0';
    close(fd[0]);
    int st;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || len == 0) {
        fprintf(stderr, "bench-run: %s failed (status 0x%x, output '%s')\n",
                argv[0], st, buf);
        exit(1);
    }
    char *last = buf;
    for (char *c = buf; *c; c++)
        if (*c == '\n' && c[1])
            last = c + 1;
    snprintf(out, n, "%s", last);
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = '\0';
}

static double measure(char *const argv[], const char *preload)
{
    char line[256];
    run_capture(argv, preload, line, sizeof line);
    return strtod(line, NULL);
}

/* "hung H of N, wrong W" or "sqlite: hung H of N": H (N added to *total,
   W, children that found a lock in the wrong state, to *wrong). */
static int hung_of(char *const argv[], const char *preload, int *total,
                   int *wrong)
{
    char line[256];
    run_capture(argv, preload, line, sizeof line);
    char *h = strstr(line, "hung ");
    int hung = -1, n = 0, w = 0;
    if (!h || sscanf(h, "hung %d of %d, wrong %d", &hung, &n, &w) < 2) {
        fprintf(stderr, "bench-run: %s printed '%s'\n", argv[0], line);
        exit(1);
    }
    *total += n;
    *wrong += w;
    return hung;
}

/* Run argv under `cli --report FILE` and print the report's wait line. */
static void wait_line(const char *cli, const char *what, char *const argv[])
{
    char report[] = "/tmp/bench-run-report-XXXXXX";
    int fd = mkstemp(report);
    if (fd < 0)
        exit(8);
    close(fd);
    char *full[16] = {(char *)cli, "--report", report, "--"};
    int k = 4;
    for (int i = 0; argv[i] && k < 15; i++)
        full[k++] = argv[i];
    full[k] = NULL;
    char line[256];
    run_capture(full, NULL, line, sizeof line);
    FILE *f = fopen(report, "r");
    char buf[512];
    int found = 0;
    while (f && fgets(buf, sizeof buf, f)) {
        char *w = strstr(buf, "wait at a fork with threads: ");
        if (w) {
            printf("  wait   %-46s %s", what,
                   w + strlen("wait at a fork with threads: "));
            found = 1;
        }
    }
    if (f)
        fclose(f);
    unlink(report);
    if (!found)
        printf("  wait   %-46s (no fork with threads reported)\n", what);
    fflush(stdout);
}

/* ------------------------------------------------------------ hooks */

/* The hooks alone, in one process: each of 4 threads alternates blocks of
   lock+unlock pairs called straight into glibc (its functions found with
   dlsym on libc.so.6, past any interposer) with blocks of the program's
   own calls (the hooks, when the library is preloaded), and takes each
   pair of blocks' CPU-time ratio. Load that comes and goes moves both
   blocks of a pair; without the library the ratio is that of a call
   through a pointer against one through the PLT (about 1). */
#define HOOK_BLOCKS 201
#define HOOK_PAIRS  20000L

struct hook_thread {
    pthread_mutex_t m;
    double ratio[HOOK_BLOCKS];
} __attribute__((aligned(64)));

static int (*libc_lock)(pthread_mutex_t *);
static int (*libc_unlock)(pthread_mutex_t *);

static void *hook_blocks(void *arg)
{
    struct hook_thread *h = arg;
    for (int b = 0; b < HOOK_BLOCKS; b++) {
        double t0 = bench_thread_cpu_ns();
        for (long i = 0; i < HOOK_PAIRS; i++) {
            libc_lock(&h->m);
            libc_unlock(&h->m);
        }
        double t1 = bench_thread_cpu_ns();
        for (long i = 0; i < HOOK_PAIRS; i++) {
            pthread_mutex_lock(&h->m);
            pthread_mutex_unlock(&h->m);
        }
        double t2 = bench_thread_cpu_ns();
        h->ratio[b] = t1 > t0 ? (t2 - t1) / (t1 - t0) : 0;
    }
    return NULL;
}

/* The median ratio over every thread's blocks. */
static double hooks_ratio(void)
{
    void *libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (!libc)
        exit(3);
    libc_lock = (int (*)(pthread_mutex_t *))dlsym(libc, "pthread_mutex_lock");
    libc_unlock =
        (int (*)(pthread_mutex_t *))dlsym(libc, "pthread_mutex_unlock");
    if (!libc_lock || !libc_unlock)
        exit(3);
    static struct hook_thread h[THREADS];
    static double all[THREADS * HOOK_BLOCKS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        pthread_mutex_init(&h[i].m, NULL);
        if (pthread_create(&t[i], NULL, hook_blocks, &h[i]) != 0)
            exit(3);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        memcpy(all + i * HOOK_BLOCKS, h[i].ratio, sizeof h[i].ratio);
    }
    return bench_median(all, THREADS * HOOK_BLOCKS);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0) {
        double v = strcmp(argv[2], "mutex") == 0
                       ? bench_mutex_pairs_cpu(THREADS, PAIRS)
                   : strcmp(argv[2], "hooks") == 0
                       ? hooks_ratio()
                       : bench_fork_wait(THREADS, FORKS, NULL);
        printf("%.3f\n", v);
        return 0;
    }
    const char *preload = getenv("FORKSAFE_RUN_PRELOAD");
    const char *cli = getenv("FORKSAFE_RUN_CLI");
    const char *hang = getenv("FORKSAFE_RUN_HANG");
    const char *pysqlite = getenv("FORKSAFE_RUN_PYSQLITE");
    if (!preload || !*preload || !cli || !hang) {
        printf("bench-run: FORKSAFE_RUN_PRELOAD, FORKSAFE_RUN_CLI and "
               "FORKSAFE_RUN_HANG are not set (run it through `scons "
               "bench`); skipped\n");
        return 0;
    }
    int rounds = bench_rounds();
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return 1;
    self[sl] = '\0';

    /* BENCH_RUN_ONLY=cost: only what it costs (the hang rounds take
       minutes). */
    const char *only = getenv("BENCH_RUN_ONLY");
    int cost_only = only && strcmp(only, "cost") == 0;

    /* What it fixes: children hung, without and under it. */
    int hang_rounds = rounds < 5 ? rounds : 5;
    char forks[16];
    snprintf(forks, sizeof forks, "%d", HANG_FORKS);
    if (cost_only)
        goto cost;
    printf("bench-run: children hung (goal ~95%% without, 0 under) or that "
           "found the forker's lock wrong (goal 0 under), without / under "
           "libforksafe-run.so, %d rounds of %d forks\n",
           hang_rounds, HANG_FORKS);
    static const char *types[] = {"normal", "errorcheck", "recursive"};
    for (int holds = 0; holds < 2; holds++) {
        for (int t = 0; t < 3; t++) {
            char *argv_h[] = {(char *)hang, (char *)types[t],
                              holds ? "forker-holds" : forks,
                              holds ? forks : NULL, NULL};
            int plain = 0, under = 0, np = 0, nu = 0, wp = 0, wu = 0;
            for (int r = 0; r < hang_rounds; r++) {
                plain += hung_of(argv_h, NULL, &np, &wp);
                under += hung_of(argv_h, preload, &nu, &wu);
            }
            char what[64];
            snprintf(what, sizeof what, "%s%s", types[t],
                     holds ? ", forking thread holds one" : "");
            printf("  hang   %-38s without %5.1f%% hung, %4d wrong  under "
                   "%5.1f%% hung, %d wrong (of %d)\n",
                   what, 100.0 * plain / np, wp, 100.0 * under / nu, wu, nu);
            fflush(stdout);
        }
    }
    if (pysqlite && *pysqlite && access("/usr/bin/python3", X_OK) == 0) {
        char *argv_p[] = {"/usr/bin/python3", (char *)pysqlite, "12", NULL};
        int np = 0, nu = 0, w = 0;
        int plain = hung_of(argv_p, NULL, &np, &w);
        int under = hung_of(argv_p, preload, &nu, &w);
        printf("  sqlite %-46s without %d of %d  under %d of %d  (goal >0, "
               "0)\n",
               "python3 sqlite3 thread + multiprocessing fork", plain, np,
               under, nu);
        fflush(stdout);
    }

cost:;
    /* What it costs. */
    char *fork_argv[] = {self, "--child", "fork", NULL};
    char *mutex_argv[] = {self, "--child", "mutex", NULL};
    static const struct {
        const char *name, *unit, *what;
        double goal;
    } w[] = {
        {"mutex", "ns", "lock+unlock pair, 4 threads, own mutex, CPU", 1.3},
        {"fork", "us", "fork + _exit + waitpid, 4 idle threads alive", 1.5},
    };
    char *const *args[] = {mutex_argv, fork_argv};
    printf("bench-run: %d interleaved rounds, medians; ratio = under "
           "libforksafe-run.so / plain\n",
           rounds);
    for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
        double *plain = calloc((size_t)rounds, sizeof *plain);
        double *under = calloc((size_t)rounds, sizeof *under);
        if (!plain || !under)
            return 1;
        for (int r = 0; r < rounds; r++) {
            /* Alternate which goes first, so drift hits both equally. */
            if (r % 2) {
                under[r] = measure(args[k], preload);
                plain[r] = measure(args[k], NULL);
            } else {
                plain[r] = measure(args[k], NULL);
                under[r] = measure(args[k], preload);
            }
        }
        /* The ratio of each round's pair of runs, made one right after
           the other: load that comes and goes moves both. */
        double *ratio = calloc((size_t)rounds, sizeof *ratio);
        if (!ratio)
            return 1;
        for (int r = 0; r < rounds; r++)
            ratio[r] = plain[r] > 0 ? under[r] / plain[r] : 0;
        double mp = bench_median(plain, rounds);
        double mu = bench_median(under, rounds);
        double mr = bench_median(ratio, rounds);
        printf("  %-6s %-46s plain %8.2f %s  under %8.2f %s  ratio %.2fx "
               "(goal <= %.1fx; per round: median %.2fx, %.2f-%.2fx)\n",
               w[k].name, w[k].what, mp, w[k].unit, mu, w[k].unit, mu / mp,
               w[k].goal, mr, ratio[0], ratio[rounds - 1]);
        free(ratio);
        fflush(stdout);
        free(plain);
        free(under);
    }

    /* The hooks alone (see hooks_ratio()), each round a fresh process
       without and one with the library. */
    int hook_rounds = rounds < 5 ? rounds : 5;
    char *hooks_argv[] = {self, "--child", "hooks", NULL};
    double *hp = calloc((size_t)hook_rounds, sizeof *hp);
    double *hu = calloc((size_t)hook_rounds, sizeof *hu);
    if (!hp || !hu)
        return 1;
    for (int r = 0; r < hook_rounds; r++) {
        hp[r] = measure(hooks_argv, NULL);
        hu[r] = measure(hooks_argv, preload);
    }
    printf("bench-run: the hooks alone, in one process (4 threads alternate "
           "blocks of pairs straight into glibc and through the program's "
           "calls; CPU time), median of %d rounds\n",
           hook_rounds);
    printf("  hooks  %-46s without the library %.2fx  under %.2fx\n",
           "lock+unlock pair, program's call / glibc's",
           bench_median(hp, hook_rounds), bench_median(hu, hook_rounds));
    fflush(stdout);
    free(hp);
    free(hu);

    /* The extra wait at a fork, as the report gives it. */
    printf("bench-run: the wait at a fork with threads (forksafe-run "
           "--report)\n");
    char *argv_busy[] = {(char *)hang, "normal", forks, NULL};
    wait_line(cli, "target-hang normal (4 busy threads)", argv_busy);
    wait_line(cli, "fork + waitpid, 4 idle threads", fork_argv);
    return 0;
}
