/* SPDX-License-Identifier: MIT */
/*
 * hostile-wait.c: the adversary's (round 23) programs for the child guard
 * after its last changes (a condition in shared memory is never cut short;
 * whether a lock is process-shared is asked only of a busy one) and for
 * the spare descriptor of a child out of descriptors. Each mode prints
 * what its child did ("child status N", -1 when it still waited after
 * 3 s and was killed) and "MODE: done".
 *
 *   privcond-shared  a condition variable with the default (private)
 *                    attribute in MAP_SHARED memory, a private mutex a
 *                    thread used before the fork; the child waits on the
 *                    condition. A private condition's futex is keyed by
 *                    the waiter's mm: no other process can wake it (the
 *                    parent broadcasts it every 50 ms from 1 s on, to
 *                    show it). The child hangs for good.
 *   emfile-cond      a private condition and mutex in static memory, the
 *                    mutex used by a thread before the fork; the child
 *                    sets soft = hard RLIMIT_NOFILE, uses every
 *                    descriptor, and waits on the condition: it hangs for
 *                    good.
 *   emfile-mutex     the same, but a thread holds the mutex at the fork
 *                    and the child locks it: it hangs for good.
 *   emfile-spare     soft RLIMIT_NOFILE below the hard one; a thread runs
 *                    at the fork (it used the mutex); the child uses every
 *                    descriptor, sets errno to 4242 and locks and unlocks
 *                    the mutex (the audit records an unsafe call in the
 *                    child through a spare descriptor), then checks that
 *                    errno, the limit, the lowest free descriptor are as
 *                    before: prints "spare: errno ..." and exits 0.
 *   count-term       no fork: counts the SIGTERMs it is sent (a handler),
 *                    from the first on for 500 ms, prints "SIGTERM xN"
 *                    and exits 0 (a program whose second SIGTERM means
 *                    "stop now" tells them apart)
 *   tick             no fork: prints "tick" every 50 ms, 30 times
 *   pi-held          a thread holds a (non-robust) priority-inheritance
 *                    mutex at the fork; the child locks it. With "exits"
 *                    the thread unlocks it and exits 1 s later, else it
 *                    keeps it
 *   ranon HOW        a thread holds a mutex at the fork; the child runs on
 *                    (takes a lock of its own, writes "x" to stdout), then
 *                    ends: HOW "exit" _exit(0), "abort" abort(), "kill"
 *                    raise(SIGKILL) (as a parent or a watchdog kills a
 *                    child that hung); prints "child status N"
 *   unblock-term     no fork: unblocks SIGTERM (a program that sets its
 *                    own mask, as daemons and shells do), sleeps 2 s,
 *                    prints "ran to end"
 *   emfile-spawn PROG [mt]  (with "mt" a thread runs) soft RLIMIT_NOFILE
 *                    64 below the hard limit, every descriptor used
 *                    (close-on-exec), then posix_spawn(PROG) and
 *                    vfork()+execv(PROG), each waited for; prints their
 *                    exit statuses. PROG static: it needs no descriptor
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int go[2];

static void *user(void *a)
{
    (void)a;
    pthread_mutex_lock(&m);
    pthread_mutex_unlock(&m);
    for (;;)
        pause();
    return NULL;
}

static void *holder(void *a)
{
    (void)a;
    pthread_mutex_lock(&m);
    if (write(go[1], "x", 1) != 1)
        _exit(1);
    for (;;)
        pause();
    return NULL;
}

static void nap_ms(long ms)
{
    struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

/* Use every descriptor, with soft = hard when equal is set. */
static void fill_fds(int equal)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    if (equal)
        rl.rlim_max = 64;
    else if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= 64)
        _exit(3);
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(3);
    while (open("/dev/null", O_RDONLY) >= 0)
        ;
    if (errno != EMFILE)
        _exit(3);
}

/* Wait up to 3 s for the child, broadcasting *bc every 50 ms from 1 s on
   when bc is not NULL; kill it if it still waits. */
static int reap(pid_t p, pthread_cond_t *bc)
{
    int st = -1;
    for (int i = 0; i < 60 && st == -1; i++) {
        if (bc && i >= 20)
            pthread_cond_broadcast(bc);
        if (waitpid(p, &st, WNOHANG) != p)
            st = -1;
        if (st == -1)
            nap_ms(50);
    }
    if (st == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static volatile sig_atomic_t terms;

static void on_term(int sig)
{
    (void)sig;
    terms++;
}

static int count_term(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    while (terms == 0)
        pause();
    struct timespec d = {0, 500 * 1000 * 1000L};
    while (nanosleep(&d, &d) != 0)
        ;
    printf("SIGTERM x%d\n", (int)terms);
    return 0;
}

static pthread_mutex_t pim;
static int pi_exits;

static void *pi_holder(void *a)
{
    (void)a;
    pthread_mutex_lock(&pim);
    if (write(go[1], "x", 1) != 1)
        _exit(1);
    if (!pi_exits)
        for (;;)
            pause();
    nap_ms(1000);
    pthread_mutex_unlock(&pim);
    return NULL;
}

static int pi_held(int exits)
{
    pthread_mutexattr_t ma;
    pthread_t t;
    char x;
    pi_exits = exits;
    if (pipe(go) != 0 || pthread_mutexattr_init(&ma) != 0 ||
        pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT) != 0 ||
        pthread_mutex_init(&pim, &ma) != 0 ||
        pthread_create(&t, NULL, pi_holder, NULL) != 0 ||
        read(go[0], &x, 1) != 1)
        return 1;
    pid_t p = fork();
    if (p < 0)
        return 1;
    if (p == 0) {
        pthread_mutex_lock(&pim);
        _exit(0);
    }
    return reap(p, NULL);
}

static int ranon(const char *how)
{
    pthread_t t;
    char x;
    if (pipe(go) != 0 || pthread_create(&t, NULL, holder, NULL) != 0 ||
        read(go[0], &x, 1) != 1)
        return 1;
    pid_t p = fork();
    if (p < 0)
        return 1;
    if (p == 0) {
        static pthread_mutex_t own = PTHREAD_MUTEX_INITIALIZER;
        pthread_mutex_lock(&own);
        pthread_mutex_unlock(&own);
        if (write(1, "x", 1) != 1)
            _exit(1);
        if (strcmp(how, "abort") == 0) {
            signal(SIGABRT, SIG_DFL);
            abort();
        }
        if (strcmp(how, "kill") == 0)
            raise(SIGKILL);
        _exit(0);
    }
    int st = reap(p, NULL);
    printf("\n");
    return st;
}

extern char **environ;

static void *idle(void *a)
{
    (void)a;
    for (;;)
        pause();
    return NULL;
}

static int emfile_spawn(char *prog, int mt)
{
    pthread_t t;
    if (mt && pthread_create(&t, NULL, idle, NULL) != 0)
        return 1;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= 64)
        return 1;
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1;
    while (open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0)
        ;
    char *av[] = {prog, NULL};
    pid_t p;
    int st;
    if (posix_spawn(&p, prog, NULL, NULL, av, environ) != 0 ||
        waitpid(p, &st, 0) != p)
        return 1;
    printf("spawned exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    p = vfork();
    if (p == 0) {
        execv(prog, av);
        _exit(127);
    }
    if (p < 0 || waitpid(p, &st, 0) != p)
        return 1;
    printf("vforked exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

static int spare(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, user, NULL) != 0)
        return 1;
    nap_ms(20);
    fflush(stdout);
    pid_t p = fork();
    if (p < 0)
        return 1;
    if (p == 0) {
        fill_fds(0);
        struct rlimit before, after;
        getrlimit(RLIMIT_NOFILE, &before);
        errno = 4242;
        pthread_mutex_lock(&m);
        int e1 = errno;
        errno = 4242;
        pthread_mutex_unlock(&m);
        int e2 = errno;
        getrlimit(RLIMIT_NOFILE, &after);
        int nx = open("/dev/null", O_RDONLY);
        int ne = errno;
        close(63);
        int n63 = open("/dev/null", O_RDONLY);
        char out[160];
        int len = snprintf(out, sizeof out,
                           "spare: errno %d %d soft %ld->%ld hard %s next %d "
                           "(%s) reopen %d\n",
                           e1, e2, (long)before.rlim_cur, (long)after.rlim_cur,
                           before.rlim_max == after.rlim_max ? "same" : "moved",
                           nx, nx < 0 && ne == EMFILE ? "EMFILE" : "?", n63);
        if (write(1, out, (size_t)len) != len)
            _exit(1);
        _exit(0);
    }
    return reap(p, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    pthread_t t;
    pthread_cond_t *bc = NULL;
    int st;
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(mode, "count-term") == 0)
        return count_term();
    if (strcmp(mode, "emfile-spawn") == 0 && argc > 2)
        return emfile_spawn(argv[2], argc > 3 && strcmp(argv[3], "mt") == 0);
    if (strcmp(mode, "unblock-term") == 0) {
        sigset_t term;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        sigprocmask(SIG_UNBLOCK, &term, NULL);
        nap_ms(2000);
        printf("ran to end\n");
        return 0;
    }
    if (strcmp(mode, "tick") == 0) {
        for (int i = 0; i < 30; i++) {
            printf("tick\n");
            nap_ms(50);
        }
        return 0;
    }
    if (strcmp(mode, "emfile-spare") == 0) {
        st = spare();
    } else if (strcmp(mode, "ranon") == 0) {
        st = ranon(argc > 2 ? argv[2] : "exit");
    } else if (strcmp(mode, "pi-held") == 0) {
        st = pi_held(argc > 2 && strcmp(argv[2], "exits") == 0);
    } else if (strcmp(mode, "privcond-shared") == 0) {
        pthread_cond_t *sc = mmap(NULL, sizeof *sc, PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (sc == MAP_FAILED || pthread_cond_init(sc, NULL) != 0 ||
            pthread_create(&t, NULL, user, NULL) != 0)
            return 1;
        nap_ms(20);
        pid_t p = fork();
        if (p < 0)
            return 1;
        if (p == 0) {
            pthread_mutex_lock(&m);
            pthread_cond_wait(sc, &m);
            pthread_mutex_unlock(&m);
            _exit(0);
        }
        bc = sc;
        st = reap(p, bc);
    } else if (strcmp(mode, "emfile-cond") == 0 ||
               strcmp(mode, "emfile-mutex") == 0) {
        int cond = strcmp(mode, "emfile-cond") == 0;
        char x;
        if (pipe(go) != 0 ||
            pthread_create(&t, NULL, cond ? user : holder, NULL) != 0)
            return 1;
        if (cond)
            nap_ms(20);
        else if (read(go[0], &x, 1) != 1)
            return 1;
        pid_t p = fork();
        if (p < 0)
            return 1;
        if (p == 0) {
            fill_fds(1);
            pthread_mutex_lock(&m);
            if (cond)
                pthread_cond_wait(&c, &m);
            _exit(0);
        }
        st = reap(p, NULL);
    } else {
        return 2;
    }
    printf("child status %d\n%s: done\n", st, mode);
    return 0;
}
