/* SPDX-License-Identifier: MIT */
/*
 * target-cases.c: one forking scenario per mode, for the forksafe-run
 * suite. Each prints one line "MODE: ..." saying what its child found and
 * how long the fork took, and exits 0 (the suite decides what is right
 * with and without forksafe-run). Children end under a watchdog: "hung"
 * means the watchdog ended one.
 *
 *   cond      threads wait on a condition variable and are woken all the
 *             time while main forks 200 times; children take the mutex
 *   cancel    a thread is cancelled in pthread_cond_wait: libc takes the
 *             mutex back inside the wait, and the thread's cleanup handler
 *             runs with it held (200 ms) before it unlocks; main forks
 *             meanwhile; the child takes the mutex
 *   blocking  a thread holds mutex "journal" while it blocks in read();
 *             main forks once; the child takes the mutex
 *   forker    a thread holds A and waits for B, which main holds when it
 *             forks; the child tries A
 *   sem       a thread holds a semaphore (a binary one, as a lock); the
 *             child waits on it
 *   spin      a thread holds a pthread spinlock; the child takes it
 *   futex     a thread holds a lock of its own made of an atomic word and
 *             futex(2) (as other language runtimes do); the child takes it
 *   dlopen    a thread is inside dlopen() of a library whose constructor
 *             sleeps (libc's loader lock is held); the child calls dlopen
 *   setenv    threads call setenv() all the time (libc's environment
 *             lock) while main forks 100 times; children call setenv
 *   twoforks  a thread holds a mutex and calls fork() while main's fork
 *             waits for it; main's child tries the mutex
 *   freed     a thread locked mutexes in memory it then freed or unmapped
 *             without unlocking, and idles; main forks: it must not wait
 *   nested    threads take nested locks while main forks 100 times
 *   rwlock    threads take rwlocks for reading and writing while main
 *             forks 200 times, main holding one for writing; the child
 *             writes every lock
 *   handler   a fork handler wakes a worker thread and waits for it on a
 *             condition variable and with pthread_join (OpenBLAS stops
 *             its threads in its prepare handler this way)
 *   poll      a fork handler waits for a worker by polling a flag the
 *             worker sets under a mutex (no hook sees that wait)
 *   robust    main holds a robust and a PI mutex when it forks, with
 *             other threads alive; the child unlocks and relocks them
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *mode;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void watchdog(int ms)
{
    struct itimerval it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000}};
    signal(SIGALRM, SIG_DFL);
    setitimer(ITIMER_REAL, &it, NULL);
}

/* "ok", "hung" (the watchdog ended it) or "exit N". */
static const char *outcome(pid_t pid)
{
    static char buf[32];
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return "lost";
    if (WIFSIGNALED(st))
        return WTERMSIG(st) == SIGALRM ? "hung" : "signal";
    if (WEXITSTATUS(st) == 0)
        return "ok";
    snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
    return buf;
}

/* Fork once; the child runs fn under a watchdog of ms. Prints
   "MODE: child OUTCOME, fork took N ms". */
static void fork_once(void (*fn)(void), int ms)
{
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        watchdog(ms);
        fn();
        _exit(0);
    }
    double took = now_ms() - t0;
    printf("%s: child %s, fork took %.0f ms\n", mode, outcome(pid), took);
}

static void sleep_ms(int ms)
{
    struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

/* ------------------------------------------------------------ cond */

static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int stop, ready;

static void *cond_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cm);
    while (!stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cv, &cm, &ts);
        /* Some work with the mutex held after each wake-up. */
        for (volatile int i = 0; i < 100000; i++)
            ;
    }
    pthread_mutex_unlock(&cm);
    return NULL;
}

static void *cond_signaller(void *arg)
{
    (void)arg;
    while (!stop) {
        pthread_cond_broadcast(&cv);
        sched_yield();
    }
    return NULL;
}

static void cond_child(void)
{
    pthread_mutex_lock(&cm);
    free(malloc(32));
}

static int cond_case(void)
{
    pthread_t t[4];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, cond_waiter, NULL);
    pthread_create(&t[3], NULL, cond_signaller, NULL);
    sleep_ms(20);
    enum { N = 200 };
    static pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            watchdog(400);
            cond_child();
            _exit(0);
        }
    }
    int hung = 0;
    for (int i = 0; i < N; i++)
        hung += strcmp(outcome(pids[i]), "ok") != 0;
    stop = 1;
    pthread_cond_broadcast(&cv);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    printf("cond: hung %d of %d\n", hung, N);
    return 0;
}

static void cancel_cleanup(void *arg)
{
    (void)arg;
    /* libc took cm back inside pthread_cond_wait, where no hook sees it. */
    ready = 1;
    sleep_ms(200);
    pthread_mutex_unlock(&cm);
}

static void *cancelled_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cm);
    pthread_cleanup_push(cancel_cleanup, NULL);
    for (;;)
        pthread_cond_wait(&cv, &cm);
    pthread_cleanup_pop(0);
    return NULL;
}

static int cancel_case(void)
{
    pthread_t t;
    pthread_create(&t, NULL, cancelled_waiter, NULL);
    sleep_ms(20);
    pthread_cancel(t);
    while (!ready)
        sleep_ms(1);
    fork_once(cond_child, 600);
    pthread_join(t, NULL);
    return 0;
}

/* ------------------------------------------------------------ blocking */

static pthread_mutex_t journal = PTHREAD_MUTEX_INITIALIZER;
static int pipefd[2];

static void *journal_writer(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "journal-writer");
    pthread_mutex_lock(&journal);
    ready = 1;
    char c;
    /* Held across a blocking call: the limit forksafe-run cannot lift. */
    while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
        ;
    pthread_mutex_unlock(&journal);
    return NULL;
}

static void journal_child(void)
{
    pthread_mutex_lock(&journal);
}

static int blocking_case(void)
{
    if (pipe(pipefd) != 0)
        return 1;
    pthread_t t;
    pthread_create(&t, NULL, journal_writer, NULL);
    while (!ready)
        sleep_ms(1);
    fork_once(journal_child, 300);
    if (write(pipefd[1], "x", 1) != 1)
        return 1;
    pthread_join(t, NULL);
    return 0;
}

/* ------------------------------------------------------------ forker */

static pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;

static void *a_then_b(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "a-then-b");
    pthread_mutex_lock(&lock_a);
    ready = 1;
    pthread_mutex_lock(&lock_b); /* main holds it across the fork */
    pthread_mutex_unlock(&lock_b);
    pthread_mutex_unlock(&lock_a);
    return NULL;
}

static void forker_child(void)
{
    /* A is held by a thread that is gone: the limit. */
    _exit(pthread_mutex_trylock(&lock_a) == EBUSY ? 4 : 0);
}

static int forker_case(void)
{
    pthread_mutex_lock(&lock_b);
    pthread_t t;
    pthread_create(&t, NULL, a_then_b, NULL);
    while (!ready)
        sleep_ms(1);
    sleep_ms(20); /* let it block on B */
    fork_once(forker_child, 300);
    pthread_mutex_unlock(&lock_b);
    pthread_join(t, NULL);
    return 0;
}

/* ------------------------------------------------------------ sem, spin */

static sem_t sem;
static pthread_spinlock_t spin;
static atomic_int fword;

static void *sem_holder(void *arg)
{
    (void)arg;
    sem_wait(&sem);
    ready = 1;
    while (!stop)
        sleep_ms(5);
    sem_post(&sem);
    return NULL;
}

static void *spin_holder(void *arg)
{
    (void)arg;
    pthread_spin_lock(&spin);
    ready = 1;
    while (!stop)
        sleep_ms(5);
    pthread_spin_unlock(&spin);
    return NULL;
}

/* A lock of the program's own: 0 free, 1 held, 2 held with waiters. */
static void futex_lock(atomic_int *w)
{
    int c = 0;
    if (atomic_compare_exchange_strong(w, &c, 1))
        return;
    if (c != 2)
        c = atomic_exchange(w, 2);
    while (c != 0) {
        syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        c = atomic_exchange(w, 2);
    }
}

static void futex_unlock(atomic_int *w)
{
    if (atomic_exchange(w, 0) == 2)
        syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *futex_holder(void *arg)
{
    (void)arg;
    futex_lock(&fword);
    ready = 1;
    while (!stop)
        sleep_ms(5);
    futex_unlock(&fword);
    return NULL;
}

static void sem_child(void)
{
    sem_wait(&sem);
}

static void spin_child(void)
{
    pthread_spin_lock(&spin);
}

static void futex_child(void)
{
    futex_lock(&fword);
}

static int holder_case(void *(*fn)(void *), void (*child)(void))
{
    sem_init(&sem, 0, 1);
    pthread_spin_init(&spin, PTHREAD_PROCESS_PRIVATE);
    pthread_t t;
    pthread_create(&t, NULL, fn, NULL);
    while (!ready)
        sleep_ms(1);
    fork_once(child, 300);
    stop = 1;
    pthread_join(t, NULL);
    return 0;
}

/* ------------------------------------------------------------ dlopen */

static const char *slow_lib, *other_lib;

static void *dlopen_slow(void *arg)
{
    (void)arg;
    ready = 1;
    void *h = dlopen(slow_lib, RTLD_NOW); /* its constructor sleeps */
    if (h)
        dlclose(h);
    return NULL;
}

static void dlopen_child(void)
{
    void *h = dlopen(other_lib, RTLD_NOW);
    _exit(h ? 0 : 5);
}

static int dlopen_case(void)
{
    pthread_t t;
    pthread_create(&t, NULL, dlopen_slow, NULL);
    while (!ready)
        sleep_ms(1);
    sleep_ms(100); /* inside the constructor now */
    fork_once(dlopen_child, 300);
    pthread_join(t, NULL);
    return 0;
}

static void *env_setter(void *arg)
{
    (void)arg;
    char name[16];
    for (int i = 0; !stop; i++) {
        snprintf(name, sizeof name, "V%d", i % 256);
        setenv(name, "a value long enough to need memory", 1);
    }
    return NULL;
}

static void setenv_child(void)
{
    setenv("CHILD", "1", 1);
}

static int many_forks(const char *name, void (*child)(void), int n);

static int setenv_case(void)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, env_setter, NULL);
    sleep_ms(20);
    many_forks("setenv", setenv_child, 100);
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* ------------------------------------------------------------ twoforks */

static void *forking_holder(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "forking-holder");
    pthread_mutex_lock(&lock_a);
    ready = 1;
    sleep_ms(100);
    pid_t pid = fork(); /* waits for main's fork to finish */
    if (pid == 0)
        _exit(0);
    pthread_mutex_unlock(&lock_a);
    waitpid(pid, NULL, 0);
    return NULL;
}

static int twoforks_case(void)
{
    pthread_t t;
    pthread_create(&t, NULL, forking_holder, NULL);
    while (!ready)
        sleep_ms(1);
    fork_once(forker_child, 300);
    pthread_join(t, NULL);
    return 0;
}

/* ------------------------------------------------------------ freed */

static void *free_holder(void *arg)
{
    (void)arg;
    pthread_mutex_t *m = malloc(sizeof *m * 64);
    pthread_mutex_init(m, NULL);
    pthread_mutex_lock(m);
    free(m);                     /* still "held", in memory that is gone */
    void *big = malloc(1 << 20); /* mmap'd by glibc, munmap'd by free */
    pthread_mutex_t *b = big;
    pthread_mutex_init(b, NULL);
    pthread_mutex_lock(b);
    free(big);
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_mutex_t *p = page;
    pthread_mutex_init(p, NULL);
    pthread_mutex_lock(p);
    munmap(page, 4096);
    ready = 1;
    while (!stop)
        sleep_ms(5);
    return NULL;
}

static void nothing(void)
{
}

static int freed_case(void)
{
    pthread_t t;
    pthread_create(&t, NULL, free_holder, NULL);
    while (!ready)
        sleep_ms(1);
    fork_once(nothing, 300);
    /* The thread takes a lock later: it must not be stopped for long. */
    stop = 1;
    pthread_join(t, NULL);
    return 0;
}

/* ------------------------------------------------------------ nested */

static pthread_mutex_t nest[4] = {
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER,
    PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};

static void *nester(void *arg)
{
    unsigned seed = (unsigned)(long)arg;
    while (!stop) {
        /* Takes the next lock while holding the previous ones, and sleeps
           with them held now and then: a holder must never be stopped. */
        for (int i = 0; i < 4; i++)
            pthread_mutex_lock(&nest[i]);
        if (rand_r(&seed) % 64 == 0)
            sleep_ms(1);
        for (int i = 3; i >= 0; i--)
            pthread_mutex_unlock(&nest[i]);
    }
    return NULL;
}

static void nest_child(void)
{
    for (int i = 0; i < 4; i++)
        pthread_mutex_lock(&nest[i]);
}

static int many_forks(const char *name, void (*child)(void), int n)
{
    static pid_t pids[256];
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            watchdog(400);
            child();
            _exit(0);
        }
    }
    double took = now_ms() - t0;
    int hung = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        const char *o = outcome(pids[i]);
        hung += strcmp(o, "hung") == 0;
        bad += strcmp(o, "ok") != 0 && strcmp(o, "hung") != 0;
    }
    printf("%s: hung %d of %d, wrong %d, forks took %.0f ms\n", name, hung, n,
           bad, took);
    return 0;
}

static int nested_case(void)
{
    pthread_t t[3];
    for (long i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, nester, (void *)(i + 1));
    sleep_ms(10);
    many_forks("nested", nest_child, 100);
    stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* ------------------------------------------------------------ rwlock */

static pthread_rwlock_t rw[4] = {
    PTHREAD_RWLOCK_INITIALIZER, PTHREAD_RWLOCK_INITIALIZER,
    PTHREAD_RWLOCK_INITIALIZER, PTHREAD_RWLOCK_INITIALIZER};
static pthread_rwlock_t mine = PTHREAD_RWLOCK_INITIALIZER;

static void *rw_user(void *arg)
{
    unsigned seed = (unsigned)(long)arg;
    while (!stop) {
        pthread_rwlock_t *l = &rw[rand_r(&seed) % 4];
        if (rand_r(&seed) % 2)
            pthread_rwlock_rdlock(l);
        else
            pthread_rwlock_wrlock(l);
        for (volatile int i = 0; i < 200; i++)
            ;
        pthread_rwlock_unlock(l);
    }
    return NULL;
}

static void rw_child(void)
{
    for (int i = 0; i < 4; i++)
        pthread_rwlock_wrlock(&rw[i]);
    /* Held for writing by main at the fork: the child's one thread holds
       it; its unlock must really release it. */
    if (pthread_rwlock_unlock(&mine) != 0 ||
        pthread_rwlock_trywrlock(&mine) != 0)
        _exit(3);
}

static int rwlock_case(void)
{
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, rw_user, (void *)(i + 1));
    sleep_ms(10);
    pthread_rwlock_wrlock(&mine);
    many_forks("rwlock", rw_child, 200);
    pthread_rwlock_unlock(&mine);
    stop = 1;
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    return 0;
}

/* ------------------------------------------------------------ handlers */

static pthread_mutex_t wm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wcv = PTHREAD_COND_INITIALIZER;
static pthread_cond_t ackcv = PTHREAD_COND_INITIALIZER;
static int wstate; /* 0 sleeping, 1 asked to stop, 2 stopped */
static pthread_t worker_t;
static int have_worker;

static void *pool_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wm);
    while (wstate == 0)
        pthread_cond_wait(&wcv, &wm);
    wstate = 2;
    pthread_cond_signal(&ackcv);
    pthread_mutex_unlock(&wm);
    return NULL;
}

static void start_worker(void)
{
    wstate = 0;
    pthread_create(&worker_t, NULL, pool_worker, NULL);
    have_worker = 1;
}

/* OpenBLAS-style: wake the worker, wait for its answer, join it. */
static void stop_pool(void)
{
    if (!have_worker)
        return;
    pthread_mutex_lock(&wm);
    wstate = 1;
    pthread_cond_signal(&wcv);
    while (wstate != 2)
        pthread_cond_wait(&ackcv, &wm);
    pthread_mutex_unlock(&wm);
    pthread_join(worker_t, NULL);
    have_worker = 0;
}

static void restart_pool(void)
{
    start_worker();
}

static volatile int flag;

static void *poll_worker(void *arg)
{
    (void)arg;
    while (!stop) {
        if (flag == 1) {
            pthread_mutex_lock(&wm); /* waits at the gate during a fork */
            flag = 2;
            pthread_mutex_unlock(&wm);
        }
        sleep_ms(1);
    }
    return NULL;
}

/* Waits for the worker by polling: no hook of forksafe-run sees it. */
static void poll_prepare(void)
{
    flag = 1;
    for (int i = 0; i < 5000 && flag != 2; i++)
        sleep_ms(1);
    printf("poll: the worker %s\n",
           flag == 2 ? "answered" : "did not answer in 5 s");
    flag = 0;
}

static int handler_case(int poll)
{
    if (poll) {
        pthread_atfork(poll_prepare, NULL, NULL);
        pthread_t t;
        pthread_create(&t, NULL, poll_worker, NULL);
        sleep_ms(10);
        fork_once(nothing, 300);
        stop = 1;
        pthread_join(t, NULL);
        return 0;
    }
    pthread_atfork(stop_pool, restart_pool, NULL);
    start_worker();
    sleep_ms(10);
    fork_once(nothing, 300);
    stop_pool();
    return 0;
}

/* ------------------------------------------------------------ robust */

static pthread_mutex_t rob, pi;

static void *idler(void *arg)
{
    (void)arg;
    while (!stop) {
        pthread_mutex_lock(&nest[0]);
        pthread_mutex_unlock(&nest[0]);
        sleep_ms(1);
    }
    return NULL;
}

static void robust_child(void)
{
    if (pthread_mutex_unlock(&rob) != 0 || pthread_mutex_lock(&rob) != 0 ||
        pthread_mutex_unlock(&rob) != 0)
        _exit(3);
    if (pthread_mutex_unlock(&pi) != 0 || pthread_mutex_lock(&pi) != 0 ||
        pthread_mutex_unlock(&pi) != 0)
        _exit(4);
}

static int robust_case(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&rob, &a);
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&pi, &a);
    pthread_t t;
    pthread_create(&t, NULL, idler, NULL);
    pthread_mutex_lock(&rob);
    pthread_mutex_lock(&pi);
    fork_once(robust_child, 300);
    pthread_mutex_unlock(&pi);
    pthread_mutex_unlock(&rob);
    stop = 1;
    pthread_join(t, NULL);
    return 0;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODE [ARGS]\n", argv[0]);
        return 2;
    }
    mode = argv[1];
    if (strcmp(mode, "cond") == 0)
        return cond_case();
    if (strcmp(mode, "cancel") == 0)
        return cancel_case();
    if (strcmp(mode, "blocking") == 0)
        return blocking_case();
    if (strcmp(mode, "forker") == 0)
        return forker_case();
    if (strcmp(mode, "sem") == 0)
        return holder_case(sem_holder, sem_child);
    if (strcmp(mode, "spin") == 0)
        return holder_case(spin_holder, spin_child);
    if (strcmp(mode, "futex") == 0)
        return holder_case(futex_holder, futex_child);
    if (strcmp(mode, "dlopen") == 0 && argc == 4) {
        slow_lib = argv[2];
        other_lib = argv[3];
        return dlopen_case();
    }
    if (strcmp(mode, "setenv") == 0)
        return setenv_case();
    if (strcmp(mode, "twoforks") == 0)
        return twoforks_case();
    if (strcmp(mode, "freed") == 0)
        return freed_case();
    if (strcmp(mode, "nested") == 0)
        return nested_case();
    if (strcmp(mode, "rwlock") == 0)
        return rwlock_case();
    if (strcmp(mode, "handler") == 0)
        return handler_case(0);
    if (strcmp(mode, "poll") == 0)
        return handler_case(1);
    if (strcmp(mode, "robust") == 0)
        return robust_case();
    fprintf(stderr, "%s: unknown mode %s\n", argv[0], mode);
    return 2;
}
