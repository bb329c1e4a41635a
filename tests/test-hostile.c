/* SPDX-License-Identifier: MIT */
/*
 * test-hostile.c: attempts to break the fork path's promises the way a
 * hostile program would. Each case runs in its own process (a hang ends it
 * with SIGALRM) unless it is cheap and self-contained:
 *  - threads nesting one rank's locks against their registration order,
 *    in every pair, while forks of both kinds run (the rank set); and
 *    with short-lived holders that sleep, spin or wait on a condition,
 *    and a signal interrupting the forker every 200 us;
 *  - two threads that each hold a lock the other's fork needs: both forks
 *    end within their deadlines (the yield must not live-lock);
 *  - plugins loaded, registering (through a tail call) and unloaded in a
 *    loop in one thread while another forks;
 *  - raw pthread_atfork() handlers that register more handlers, or call
 *    the registry, from inside the fork; and more raw handlers than the
 *    capture table holds;
 *  - registration when mmap() fails (RLIMIT_AS): ENOMEM, registry intact;
 *  - a fork from a signal handler that interrupted a registry call on the
 *    same thread: bounded by the default deadline, not a self-deadlock.
 */
#include "common.h"

#include "forksafe.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static char dir[PATH_MAX - 64];

/* Fork once with fork() or forksafe_fork(); the child exits with check().
   Returns 0, or what went wrong. */
static int fork_check(int wrapper, unsigned timeout_ms, int (*check)(void))
{
    struct forksafe_fork_opts o = {.timeout_ms = timeout_ms};
    pid_t pid = wrapper ? forksafe_fork(&o) : fork();
    if (pid == 0)
        _exit(check ? check() : 0);
    if (pid < 0)
        return 100;
    int code = -1;
    if (fs_wait(pid, 3000, &code) != FS_EXITED)
        return 101;
    return code;
}

/* ---- one rank, nested in every pair against registration order ---- */

#define SET_N 6
static pthread_mutex_t set[SET_N];
static volatile int stop;

static void *nest_pairs(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!stop) {
        /* Always the higher index first: consistent among threads (no
           deadlock between them), the reverse of registration order. */
        int i = (int)(rand_r(&seed) % SET_N), j = (int)(rand_r(&seed) % SET_N);
        if (i == j)
            continue;
        int hi = i > j ? i : j, lo = i > j ? j : i;
        pthread_mutex_lock(&set[hi]);
        pthread_mutex_lock(&set[lo]);
        for (volatile int spin = 0; spin < 500; spin++)
            ;
        pthread_mutex_unlock(&set[lo]);
        pthread_mutex_unlock(&set[hi]);
    }
    return NULL;
}

static int all_set_free(void)
{
    for (int i = 0; i < SET_N; i++)
        if (pthread_mutex_trylock(&set[i]) != 0)
            return 1;
    return 0;
}

static int rank_set_scenario(int mode, int fd)
{
    (void)mode;
    alarm(60);
    for (int i = 0; i < SET_N; i++) {
        pthread_mutex_init(&set[i], NULL);
        if (forksafe_register_mutex(&set[i], "set", 500))
            return 10;
    }
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, nest_pairs, (void *)(i + 1));
    int bad = 0;
    for (int n = 0; n < 150 && !bad; n++) {
        bad = fork_check(n % 2, 2000, all_set_free);
        if (bad)
            dprintf(fd, "fork %d (%s): %d %s\n", n, n % 2 ? "wrapper" : "plain",
                    bad, forksafe_last_error());
    }
    stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return bad;
}

static void test_rank_set_under_traffic(void **state)
{
    (void)state;
    fs_assert_scenario(rank_set_scenario, 0);
}

/* ---- the same rank, with holders that come and go, and signals ----

   What a fork looks at while it waits for a busy lock of a rank (the
   holder's TID, /proc/self/task/TID/syscall) changes under it: holders
   that exit right after they let go (TIDs come and go), holders that
   sleep, spin or wait on a condition variable while holding, and a
   signal interrupting the forking thread every 200 us. Every fork must
   succeed and every child find the rank free. */
static pthread_mutex_t churn_cv_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t churn_cv = PTHREAD_COND_INITIALIZER;
static pthread_t churn_main;

static void *short_holder(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    pthread_mutex_t *m = &set[rand_r(&seed) % SET_N];
    pthread_mutex_lock(m);
    switch (rand_r(&seed) % 3) {
    case 0: {
        struct timespec d = {0, 300 * 1000};
        nanosleep(&d, NULL);
        break;
    }
    case 1:
        for (volatile int spin = 0; spin < 20000; spin++)
            ;
        break;
    default: {
        /* Waits on a condition (unseen by the fork) that times out. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 300 * 1000;
        if (until.tv_nsec >= 1000000000l) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000l;
        }
        pthread_mutex_lock(&churn_cv_mu);
        pthread_cond_timedwait(&churn_cv, &churn_cv_mu, &until);
        pthread_mutex_unlock(&churn_cv_mu);
    }
    }
    pthread_mutex_unlock(m);
    return NULL;
}

static void *spawner(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    while (!stop) {
        pthread_t t;
        if (pthread_create(&t, NULL, short_holder,
                           (void *)(uintptr_t)rand_r(&seed)) == 0)
            pthread_join(t, NULL);
    }
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
}

static void *signaller(void *arg)
{
    (void)arg;
    while (!stop) {
        pthread_kill(churn_main, SIGUSR1);
        struct timespec d = {0, 200 * 1000};
        nanosleep(&d, NULL);
    }
    return NULL;
}

static int holder_churn_scenario(int mode, int fd)
{
    alarm(60);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = mode ? SA_RESTART : 0;
    sigaction(SIGUSR1, &sa, NULL);
    churn_main = pthread_self();
    for (int i = 0; i < SET_N; i++) {
        pthread_mutex_init(&set[i], NULL);
        if (forksafe_register_mutex(&set[i], "set", 500))
            return 10;
    }
    pthread_t t[5];
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, nest_pairs, (void *)(i + 1));
    for (long i = 2; i < 4; i++)
        pthread_create(&t[i], NULL, spawner, (void *)(i + 1));
    pthread_create(&t[4], NULL, signaller, NULL);
    int bad = 0;
    for (int n = 0; n < 100 && !bad; n++) {
        bad = fork_check(n % 2, 2000, all_set_free);
        if (bad)
            dprintf(fd, "fork %d (%s): %d %s\n", n, n % 2 ? "wrapper" : "plain",
                    bad, forksafe_last_error());
    }
    stop = 1;
    for (int i = 0; i < 5; i++)
        pthread_join(t[i], NULL);
    return bad;
}

static void test_rank_set_holders_come_and_go(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        char out[1024];
        int code =
            fs_run_scenario(holder_churn_scenario, mode, out, sizeof out);
        if (code != 0)
            fail_msg("%s: exit %d: %s", mode ? "SA_RESTART" : "no SA_RESTART",
                     code, out);
    }
}

/* ---- two forkers, each holding what the other needs ---- */

static pthread_mutex_t cross[2];

struct crosser {
    int me;
    int err;
    uint64_t took;
    pthread_barrier_t *go;
};

static void *hold_and_fork(void *arg)
{
    struct crosser *c = arg;
    pthread_mutex_lock(&cross[c->me]);
    pthread_barrier_wait(c->go);
    uint64_t t0 = fs_now_ms();
    struct forksafe_fork_opts o = {.timeout_ms = 600};
    pid_t pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(0);
    c->err = pid < 0 ? errno : 0;
    c->took = fs_now_ms() - t0;
    if (pid > 0) {
        int code;
        fs_wait(pid, 3000, &code);
    }
    pthread_mutex_unlock(&cross[c->me]);
    return NULL;
}

static int cross_scenario(int mode, int fd)
{
    (void)mode;
    alarm(10);
    for (int i = 0; i < 2; i++) {
        pthread_mutex_init(&cross[i], NULL);
        if (forksafe_register_mutex(&cross[i], "cross", 100 + (unsigned)i))
            return 10;
    }
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    struct crosser c[2] = {{0, -1, 0, &go}, {1, -1, 0, &go}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, hold_and_fork, &c[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    dprintf(fd, "%d %d %llu %llu", c[0].err, c[1].err,
            (unsigned long long)c[0].took, (unsigned long long)c[1].took);
    /* A real deadlock of the application: both end within their
       deadline (plus slack), at least one of them with ETIMEDOUT; the
       other may get in once the first gave up and released its lock. */
    int timeouts = 0;
    for (int i = 0; i < 2; i++) {
        if ((c[i].err != 0 && c[i].err != ETIMEDOUT) || c[i].took > 3000)
            return 11 + i;
        timeouts += c[i].err == ETIMEDOUT;
    }
    return timeouts >= 1 ? 0 : 13;
}

static void test_crossed_forkers_end_in_time(void **state)
{
    (void)state;
    fs_assert_scenario(cross_scenario, 0);
}

/* ---- plugins come and go while another thread forks ---- */

static volatile int churning;

static void *dl_churn(void *arg)
{
    const char *path = arg;
    while (churning) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h)
            abort();
        int (*reg_lock)(void) = (int (*)(void))dlsym(h, "plugin_register_lock");
        int (*reg_ops)(void) = (int (*)(void))dlsym(h, "plugin_register_ops");
        /* Where dlclose() does not unload (musl), the first round's
           entries are still there: EEXIST. */
        int r1 = reg_lock(), r2 = reg_ops();
        if ((r1 && r1 != EEXIST) || (r2 && r2 != EEXIST))
            abort();
        dlclose(h);
        void *still = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (!still && (r1 || r2))
            abort(); /* EEXIST from an object that was unloaded */
        if (still)
            dlclose(still);
    }
    return NULL;
}

static int churn_scenario(int mode, int fd)
{
    (void)mode;
    alarm(60);
    /* The children only _exit (no allocation), so ASan's allocator, which
       takes no locks around fork(), needs no gate here. */
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fs-plugin-tail-O2.so", dir);
    churning = 1;
    pthread_t t;
    pthread_create(&t, NULL, dl_churn, path);
    int bad = 0;
    for (int n = 0; n < 200 && !bad; n++) {
        /* The plugin's child callback exits 43 while it is loaded. */
        int r = fork_check(n % 2, 2000, NULL);
        bad = r != 0 && r != 43 ? r : 0;
        if (bad)
            dprintf(fd, "fork %d: %d %s\n", n, bad, forksafe_last_error());
    }
    churning = 0;
    pthread_join(t, NULL);
    return bad;
}

static void test_plugins_churn_while_forking(void **state)
{
    (void)state;
    fs_assert_scenario(churn_scenario, 0);
}

/* ---- raw handlers that misbehave ---- */

static int late_ran, registry_result = -1;

static void late_prepare(void)
{
    late_ran++;
}

/* Registers another raw handler during the fork (glibc: it does not run
   for this fork), and tries the registry (EDEADLK: the fork holds it). */
static void meddling_prepare(void)
{
    static int once;
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
#ifdef __GLIBC__
    /* Not on musl: its pthread_atfork() takes the lock musl holds across
       the whole fork, and would wait for ever (musl's own behaviour). */
    if (!once++)
        pthread_atfork(late_prepare, NULL, NULL);
#else
    (void)once;
    (void)late_prepare;
#endif
    registry_result = forksafe_register_mutex(&m, "from a raw handler", 1);
}

static int counted;
static void count_prepare(void)
{
    counted++;
}

static int meddling_scenario(int mode, int fd)
{
    (void)mode;
    alarm(10);
    fs_idle_start();
    pthread_atfork(meddling_prepare, NULL, NULL);
    /* More raw handlers than forksafe's table holds: the rest stay with
       glibc, and every one still runs. */
    for (int i = 0; i < 100; i++)
        if (pthread_atfork(count_prepare, NULL, NULL))
            return 10;
    for (int n = 0; n < 4; n++) {
        int before = counted;
        int r = fork_check(n % 2, 2000, NULL);
        if (r)
            return 11;
        if (counted - before != 100) {
            dprintf(fd, "ran %d of 100 raw handlers", counted - before);
            return 12;
        }
    }
    dprintf(fd, "late %d registry %d", late_ran, registry_result);
#ifdef __GLIBC__
    if (late_ran < 1 || late_ran > 3)
        return 13; /* not in the fork it was registered in, then each */
#endif
    if (registry_result != EDEADLK)
        return 14;
    return 0;
}

static void test_meddling_raw_handlers(void **state)
{
    (void)state;
    fs_assert_scenario(meddling_scenario, 0);
}

/* ---- out of address space ---- */

static int enomem_scenario(int mode, int fd)
{
    (void)mode;
    alarm(20);
    /* Map what is needed first, then cap the address space at it. */
    enum { N = 100000 };
    pthread_mutex_t *ms = calloc(N, sizeof *ms);
    if (!ms)
        return 10;
    for (int i = 0; i < 10; i++)
        if (forksafe_register_mutex(&ms[i], "kept", 10))
            return 11;
    int posix = fs_layer_is("posix"); /* it writes a report: not later */
    struct rlimit rl = {0, 0};
    FILE *st = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!st || fscanf(st, "%lu", &pages) != 1)
        return 12;
    fclose(st);
    rl.rlim_cur = rl.rlim_max = (pages * 4096ul) + (1ul << 20);
    if (setrlimit(RLIMIT_AS, &rl))
        return 13;
    int i, err = 0;
    for (i = 10; i < N; i++)
        if ((err = forksafe_register_mutex(&ms[i], "more", 20)) != 0)
            break;
    dprintf(fd, "%d registered, then %d", i, err);
    if (err != ENOMEM)
        return 14;
    /* Everything registered so far is intact and forks still work. */
    for (int k = 0; k < i; k++)
        if (forksafe_lookup(&ms[k], NULL) != 0)
            return 15;
    if (forksafe_lookup(&ms[i], NULL) != ENOENT)
        return 16;
    if (fork_check(0, 2000, NULL))
        return 17;
    if (posix) {
        /* The POSIX layer learns whether the child can release a normal
           mutex from a helper thread, once per registered mutex, and no
           thread can start now: forksafe_fork() refuses with EAGAIN
           (docs/platforms.md) and leaves every lock free; the plain
           fork() above skipped them. */
        struct forksafe_fork_opts o = {.timeout_ms = 2000};
        pid_t pid = forksafe_fork(&o);
        if (pid == 0)
            _exit(0);
        if (pid != -1 || errno != EAGAIN ||
            !strstr(forksafe_last_error(), "could not check")) {
            dprintf(fd, "; forksafe_fork: %d, %s", (int)pid,
                    forksafe_last_error());
            return 18;
        }
        for (int k = 0; k < i; k++) {
            if (pthread_mutex_trylock(&ms[k]) != 0)
                return 19;
            pthread_mutex_unlock(&ms[k]);
        }
        return 0;
    }
    if (fork_check(1, 2000, NULL))
        return 17;
    return 0;
}

static void test_enomem_from_the_arena(void **state)
{
    (void)state;
    if (FS_ASAN)
        skip(); /* ASan reserves far more address space than it uses */
    fs_assert_scenario(enomem_scenario, 0);
}

/* ---- fork from a signal handler during a registry call ---- */

static volatile int sig_forked = -1;
static pthread_mutex_t sig_m[512];

static void on_alarm(int sig)
{
    (void)sig;
    int saved = errno;
    pid_t pid = fork(); /* not async-signal-safe, but programs do it */
    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        int code;
        fs_wait(pid, 3000, &code);
    }
    sig_forked = pid > 0;
    errno = saved;
}

static int signal_scenario(int mode, int fd)
{
    (void)mode;
    alarm(20);
    fs_idle_start();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGUSR1, &sa, NULL);
    /* Interrupt registration calls at random points with a forking signal
       handler: when it lands while this thread holds the registry lock,
       the fork must not wait for ever for a lock its own thread holds. */
    uint64_t worst = 0;
    for (int round = 0; round < 20; round++) {
        uint64_t t0 = fs_now_ms();
        for (int i = 0; i < 512; i++) {
            pthread_mutex_init(&sig_m[i], NULL);
            forksafe_register_mutex(&sig_m[i], "sig", (unsigned)i);
            if (i == 100 + round * 13)
                raise(SIGUSR1);
        }
        for (int i = 0; i < 512; i++)
            forksafe_unregister(&sig_m[i]);
        uint64_t took = fs_now_ms() - t0;
        if (took > worst)
            worst = took;
        if (sig_forked != 1)
            return 10;
    }
    dprintf(fd, "worst round %llu ms", (unsigned long long)worst);
    return worst < 5000 ? 0 : 11;
}

static void test_fork_from_signal_handler(void **state)
{
    (void)state;
    fs_assert_scenario(signal_scenario, 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* Short default deadline: a plain fork() that meets trouble shows. */
    if (!getenv("FORKSAFE_TIMEOUT_MS")) {
        setenv("FORKSAFE_TIMEOUT_MS", "1000", 1);
        execv("/proc/self/exe", argv);
        return 2;
    }
    fs_watchdog(300);
    snprintf(dir, sizeof dir, "%s", argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_set_under_traffic),
        cmocka_unit_test(test_rank_set_holders_come_and_go),
        cmocka_unit_test(test_crossed_forkers_end_in_time),
        cmocka_unit_test(test_plugins_churn_while_forking),
        cmocka_unit_test(test_meddling_raw_handlers),
        cmocka_unit_test(test_enomem_from_the_arena),
        cmocka_unit_test(test_fork_from_signal_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
