/* SPDX-License-Identifier: MIT */
/*
 * hostile-mem.c: correct programs (the adversary's) whose lock memory is
 * made unreadable or left out of the child in ways the interposer does
 * not hook, and whose exec environment hides the preload from the loader.
 * Each mode prints "MODE: ok" and exits 0 without the audit; under it
 * the output and status must be the same (test-audit-hostile-run.c).
 *
 *   mprotect       a semaphore and a mutex used by two threads, then their
 *                  page made PROT_NONE (mprotect); fork, the child runs on
 *   mapfixed       the same, the page replaced by mmap(MAP_FIXED, PROT_NONE)
 *                  (no munmap call)
 *   mprotect-held  a thread holds the semaphore at the fork while its page
 *                  is PROT_NONE; the child runs on
 *   dontfork-held  a thread holds a semaphore in a MADV_DONTFORK page at
 *                  the fork: the child has no such page at all
 *   wipe-held      the same in a MADV_WIPEONFORK page (zero in the child)
 *   robust-pi      a thread holds a robust priority-inheritance mutex (in
 *                  private memory) at the fork; the child locks it and
 *                  blocks; 1 s later the thread unlocks it and exits. The
 *                  kernel, which tracks a PI mutex's owner by TID, then
 *                  hands the child's copy to the child with EOWNERDEAD
 *                  (the owner died): the child makes it consistent and
 *                  exits 0
 *   badsym         a thread holds a mutex at the fork, taken in a function
 *                  whose symbol is not UTF-8 ("hold\xff\xfeer"), and
 *                  main forks in another ("fork\xc0\x80er"); the child
 *                  runs on
 *   pshared-cond   a process-shared condition variable in MAP_SHARED memory;
 *                  a thread used the (private) mutex before the fork; the
 *                  child waits on the condition with that mutex until a
 *                  flag in the shared memory is set; the parent sets it and
 *                  broadcasts the condition every 50 ms from 1 s on, until
 *                  the child has exited (status 0)
 *   sigfork        for 1 s a 2 ms SIGALRM timer whose handler forks (the
 *                  child _exits) and posts a semaphore, interrupting the
 *                  main thread's and a spinning thread's lock calls (fork
 *                  and sem_post are async-signal-safe)
 *   dupenv PROG    exec PROG with the environment copied and a second,
 *                  empty "LD_PRELOAD=" appended (the loader takes the last
 *                  one); prints PROG's status
 */
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <errno.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

extern char **environ;

static sem_t *sem;
static pthread_mutex_t *mx;
static int go[2];

static void *holder(void *a)
{
    (void)a;
    char c;
    sem_wait(sem);
    while (read(go[0], &c, 1) < 0)
        ;
    return NULL;
}

static void *user(void *a)
{
    (void)a;
    sem_wait(sem);
    sem_post(sem);
    pthread_mutex_lock(mx);
    pthread_mutex_unlock(mx);
    return NULL;
}

static void *sleeper(void *a)
{
    (void)a;
    for (;;)
        pause();
    return NULL;
}

/* Fork; the child runs on (stdio, exit); returns its status. */
static int fork_run_on(void)
{
    fflush(stdout);
    pid_t p = fork();
    if (p < 0)
        return -1;
    if (p == 0) {
        printf("child ran on\n");
        exit(0);
    }
    int st;
    if (waitpid(p, &st, 0) != p)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static pthread_mutex_t pim;
static int pi_held[2], pi_rel[2];

static void *pi_holder(void *a)
{
    (void)a;
    char c;
    pthread_mutex_lock(&pim);
    if (write(pi_held[1], "h", 1) != 1)
        exit(92);
    while (read(pi_rel[0], &c, 1) < 0)
        ;
    pthread_mutex_unlock(&pim);
    return NULL;
}

static int robust_pi(void)
{
    pthread_mutexattr_t at;
    if (pipe(pi_held) != 0 || pipe(pi_rel) != 0 ||
        pthread_mutexattr_init(&at) != 0 ||
        pthread_mutexattr_setprotocol(&at, PTHREAD_PRIO_INHERIT) != 0 ||
        pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST) != 0 ||
        pthread_mutex_init(&pim, &at) != 0)
        return 1;
    pthread_t t;
    char c;
    if (pthread_create(&t, NULL, pi_holder, NULL) != 0 ||
        read(pi_held[0], &c, 1) != 1)
        return 1;
    fflush(stdout);
    pid_t p = fork();
    if (p < 0)
        return 1;
    if (p == 0) {
        int r = pthread_mutex_lock(&pim);
        if (r == EOWNERDEAD && pthread_mutex_consistent(&pim) == 0 &&
            pthread_mutex_unlock(&pim) == 0)
            _exit(0);
        _exit(r == 0 ? 5 : 6);
    }
    struct timespec d = {1, 0};
    nanosleep(&d, NULL);
    if (write(pi_rel[1], "x", 1) != 1 || pthread_join(t, NULL) != 0)
        return 1;
    int st = -1;
    for (int i = 0; i < 100; i++) {
        if (waitpid(p, &st, WNOHANG) == p)
            break;
        st = -1;
        d.tv_sec = 0;
        d.tv_nsec = 100 * 1000 * 1000;
        nanosleep(&d, NULL);
    }
    if (st == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        printf("child status -1\n");
        return 4;
    }
    st = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("child status %d\n", st);
    return st == 0 ? 0 : 4;
}

/* Symbols that are not UTF-8 (an asm label is any bytes the assembler
   takes): what a frame's function name can be. */
static pthread_mutex_t bsm = PTHREAD_MUTEX_INITIALIZER;
void bad_holder(void) __asm__("hold\xff\xfe"
                              "er");
void bad_forker(int *st) __asm__("fork\xc0\x80"
                                 "er");

void bad_holder(void)
{
    char c;
    pthread_mutex_lock(&bsm);
    if (write(go[1], "h", 1) != 1)
        exit(92);
    while (read(go[0], &c, 1) < 0)
        ;
    pthread_mutex_unlock(&bsm);
}

static void *bad_thread(void *a)
{
    (void)a;
    bad_holder();
    return NULL;
}

void bad_forker(int *st)
{
    *st = fork_run_on();
}

struct shcond {
    pthread_cond_t c;
    volatile int flag;
};
static pthread_mutex_t pcm = PTHREAD_MUTEX_INITIALIZER;

static void *pcm_user(void *a)
{
    (void)a;
    pthread_mutex_lock(&pcm);
    pthread_mutex_unlock(&pcm);
    for (;;)
        pause();
    return NULL;
}

static int pshared_cond(void)
{
    struct shcond *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pthread_condattr_t ca;
    pthread_t t;
    if (s == MAP_FAILED || pthread_condattr_init(&ca) != 0 ||
        pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED) != 0 ||
        pthread_cond_init(&s->c, &ca) != 0 ||
        pthread_create(&t, NULL, pcm_user, NULL) != 0)
        return 1;
    struct timespec d = {0, 20 * 1000 * 1000};
    nanosleep(&d, NULL);
    pthread_mutex_lock(&pcm);
    pthread_mutex_unlock(&pcm);
    fflush(stdout);
    pid_t p = fork();
    if (p < 0)
        return 1;
    if (p == 0) {
        pthread_mutex_lock(&pcm);
        while (!s->flag)
            pthread_cond_wait(&s->c, &pcm);
        pthread_mutex_unlock(&pcm);
        _exit(0);
    }
    d.tv_sec = 1;
    d.tv_nsec = 0;
    nanosleep(&d, NULL);
    int st = -1;
    for (int i = 0; i < 200 && st == -1; i++) {
        s->flag = 1;
        pthread_cond_broadcast(&s->c);
        if (waitpid(p, &st, WNOHANG) != p)
            st = -1;
        d.tv_sec = 0;
        d.tv_nsec = 50 * 1000 * 1000;
        if (st == -1)
            nanosleep(&d, NULL);
    }
    if (st == -1) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
        printf("child status -1\n");
        return 4;
    }
    st = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    printf("child status %d\n", st);
    return st == 0 ? 0 : 4;
}

static sem_t sfs;
static volatile sig_atomic_t sf_forks, sf_bad;

static void sf_handler(int sig)
{
    (void)sig;
    int e = errno;
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p || st != 0)
        sf_bad = 1;
    else
        sf_forks++;
    sem_post(&sfs);
    errno = e;
}

static void *sf_spin(void *a)
{
    (void)a;
    for (;;) {
        pthread_mutex_lock(&pcm);
        pthread_mutex_unlock(&pcm);
    }
    return NULL;
}

static int sigfork(void)
{
    pthread_t t;
    if (sem_init(&sfs, 0, 0) != 0 ||
        pthread_create(&t, NULL, sf_spin, NULL) != 0)
        return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = sf_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    struct itimerval it = {{0, 2000}, {0, 2000}}, off = {{0, 0}, {0, 0}};
    if (sigaction(SIGALRM, &sa, NULL) != 0 ||
        setitimer(ITIMER_REAL, &it, NULL) != 0)
        return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        pthread_mutex_lock(&pcm);
        pthread_mutex_unlock(&pcm);
        while (sem_trywait(&sfs) == 0)
            ;
        clock_gettime(CLOCK_MONOTONIC, &t1);
    } while ((t1.tv_sec - t0.tv_sec) * 1000 +
                 (t1.tv_nsec - t0.tv_nsec) / 1000000 <
             1000);
    setitimer(ITIMER_REAL, &off, NULL);
    return sf_bad || sf_forks < 10 ? 4 : 0;
}

static int dupenv(char **argv)
{
    int n = 0;
    while (environ[n])
        n++;
    char **e = calloc((size_t)n + 2, sizeof *e);
    if (!e)
        return 1;
    memcpy(e, environ, (size_t)n * sizeof *e);
    e[n] = "LD_PRELOAD=";
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        execve(argv[0], argv, e);
        _exit(127);
    }
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p)
        return 1;
    printf("status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    free(e);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *m = argv[1];
    if (strcmp(m, "dupenv") == 0) {
        if (argc < 3 || dupenv(argv + 2) != 0)
            return 1;
        printf("%s: ok\n", m);
        return 0;
    }
    if (strcmp(m, "robust-pi") == 0 || strcmp(m, "pshared-cond") == 0 ||
        strcmp(m, "sigfork") == 0) {
        int r = strcmp(m, "robust-pi") == 0      ? robust_pi()
                : strcmp(m, "pshared-cond") == 0 ? pshared_cond()
                                                 : sigfork();
        if (r == 0)
            printf("%s: ok\n", m);
        return r;
    }
    if (strcmp(m, "badsym") == 0) {
        pthread_t t;
        char c;
        int held[2];
        if (pipe(held) != 0 || pipe(go) != 0)
            return 1;
        /* bad_holder writes to go[1] and waits on go[0]: swap in held. */
        int rd = go[0];
        go[0] = held[0];
        if (pthread_create(&t, NULL, bad_thread, NULL) != 0 ||
            read(rd, &c, 1) != 1)
            return 1;
        int st = -1;
        bad_forker(&st);
        if (write(held[1], "x", 1) != 1 || pthread_join(t, NULL) != 0)
            return 1;
        printf("child status %d\n%s: ok\n", st, m);
        return st == 0 ? 0 : 4;
    }
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, pg * 2, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED || pipe(go) != 0)
        return 1;
    sem = (sem_t *)mem;
    mx = (pthread_mutex_t *)(mem + 256);
    if (sem_init(sem, 0, 1) != 0 || pthread_mutex_init(mx, NULL) != 0)
        return 1;
    pthread_t s, t;
    if (pthread_create(&s, NULL, sleeper, NULL) != 0)
        return 1;
    int st;
    if (strcmp(m, "mprotect") == 0 || strcmp(m, "mapfixed") == 0) {
        if (pthread_create(&t, NULL, user, NULL) != 0 ||
            pthread_join(t, NULL) != 0)
            return 1;
        user(NULL);
        if (strcmp(m, "mprotect") == 0
                ? mprotect(mem, pg, PROT_NONE) != 0
                : mmap(mem, pg, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
                       0) == MAP_FAILED)
            return 1;
        st = fork_run_on();
    } else if (strcmp(m, "mprotect-held") == 0 ||
               strcmp(m, "dontfork-held") == 0 ||
               strcmp(m, "wipe-held") == 0) {
        if ((strcmp(m, "dontfork-held") == 0 &&
             madvise(mem, pg, MADV_DONTFORK) != 0) ||
            (strcmp(m, "wipe-held") == 0 &&
             madvise(mem, pg, MADV_WIPEONFORK) != 0))
            return 3;
        if (pthread_create(&t, NULL, holder, NULL) != 0)
            return 1;
        while (sem_trywait(sem) == 0) {
            sem_post(sem);
            usleep(1000);
        }
        int prot = strcmp(m, "mprotect-held") == 0;
        if (prot && mprotect(mem, pg, PROT_NONE) != 0)
            return 1;
        st = fork_run_on();
        if (prot && mprotect(mem, pg, PROT_READ | PROT_WRITE) != 0)
            return 1;
        if (write(go[1], "x", 1) != 1 || pthread_join(t, NULL) != 0)
            return 1;
    } else {
        return 2;
    }
    printf("child status %d\n", st);
    printf("%s: ok\n", m);
    return st == 0 ? 0 : 4;
}
