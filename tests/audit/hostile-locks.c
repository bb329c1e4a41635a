/* SPDX-License-Identifier: MIT */
/*
 * hostile-locks.c: lock uses written to break the audit's lock hooks
 * (src/preload/locks.c) and its child-deadlock guard (child.c), run by
 * tests/audit/test-audit-hostile-locks.c with and without forksafe-audit.
 * argv[1] picks the mode. Every mode but sem-alarm-noop is a correct
 * program: it exits 0 when it behaved as POSIX says, and a status from 10 up naming the step
 * that went wrong otherwise. In every mode a thread of the parent is alive
 * (and usually holds a lock) at the fork, and the child runs on.
 */
#include "target-util.h"

#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static pthread_mutex_t hold_mu;
static pthread_mutex_t many[20];
static pthread_mutex_t hundred[100];
static pthread_mutex_t over[1030]; /* more than a held stack records */
static sem_t hold_sem;
static pthread_rwlock_t hold_rw = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t cv_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile int cv_flag;

static const char *g_mode;
static pthread_mutex_t *g_shared; /* a process-shared mutex (pshared mode) */

static void *dead_owner(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&hold_mu); /* and exits holding it */
    return NULL;
}

/* 20 mutexes taken, the first 16 released in the order they were taken:
   4 stay held. */
static void take_many_fifo(void)
{
    for (int i = 0; i < 20; i++)
        pthread_mutex_lock(&many[i]);
    for (int i = 0; i < 16; i++)
        pthread_mutex_unlock(&many[i]);
}

/* Takes the 20 and releases them all, then exits: its thread slot keeps
   the room it needed past 16 locks for the next thread that claims it. */
static void *grow_and_exit(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++)
        pthread_mutex_lock(&many[i]);
    for (int i = 19; i >= 0; i--)
        pthread_mutex_unlock(&many[i]);
    return NULL;
}

static void *holder(void *arg)
{
    (void)arg;
    const char *m = g_mode;
    if (strcmp(m, "many-reuse") == 0 && arg == NULL) {
        /* The thread that holds is the next to claim the slot of one that
           held 20 and exited. */
        pthread_t g, h;
        if (pthread_create(&g, NULL, grow_and_exit, NULL) != 0 ||
            pthread_join(g, NULL) != 0 ||
            pthread_create(&h, NULL, holder, (void *)1) != 0 ||
            pthread_join(h, NULL) != 0)
            _exit(25);
        return NULL;
    }
    if (strcmp(m, "sem-signal") == 0 || strcmp(m, "sem-timed") == 0 ||
        strcmp(m, "sem-alarm-noop") == 0 ||
        strcmp(m, "sem-posix-timer") == 0) {
        if (sem_wait(&hold_sem) != 0)
            _exit(20);
    } else if (strcmp(m, "cond-timer") == 0) {
        pthread_mutex_lock(&cv_mu);
        pthread_mutex_unlock(&cv_mu);
    } else if (strcmp(m, "robust") == 0) {
        pthread_t d;
        if (pthread_create(&d, NULL, dead_owner, NULL) != 0 ||
            pthread_join(d, NULL) != 0)
            _exit(21);
        if (pthread_mutex_lock(&hold_mu) != EOWNERDEAD)
            _exit(22);
        pthread_mutex_consistent(&hold_mu);
    } else if (strcmp(m, "many-fifo") == 0 || strcmp(m, "many-reuse") == 0) {
        take_many_fifo(); /* 4 held at the fork */
    } else if (strcmp(m, "many-100") == 0) {
        for (int i = 0; i < 100; i++) /* all held at the fork */
            pthread_mutex_lock(&hundred[i]);
    } else if (strcmp(m, "many-over") == 0) {
        for (int i = 0; i < 1030; i++) /* all held at the fork */
            pthread_mutex_lock(&over[i]);
    } else if (strcmp(m, "held") == 0 || strcmp(m, "pshared-private") == 0) {
        pthread_mutex_lock(&hold_mu); /* the control: a plain held mutex */
    } else if (strcmp(m, "recursive-deep") == 0 ||
               strcmp(m, "recursive-shallow") == 0) {
        int n = strcmp(m, "recursive-deep") == 0 ? 20 : 3;
        for (int i = 0; i < n; i++)
            if (pthread_mutex_lock(&hold_mu) != 0)
                _exit(23);
        for (int i = 0; i < n - 1; i++)
            pthread_mutex_unlock(&hold_mu);
    } else if (strcmp(m, "rdlock-deep") == 0) {
        for (int i = 0; i < 20; i++)
            if (pthread_rwlock_rdlock(&hold_rw) != 0)
                _exit(24);
        for (int i = 0; i < 19; i++)
            pthread_rwlock_unlock(&hold_rw);
    } else if (strcmp(m, "timed") == 0) {
        pthread_mutex_lock(&hold_mu);
        pthread_rwlock_wrlock(&hold_rw);
    } else if (strcmp(m, "pshared") == 0) {
        pthread_mutex_lock(g_shared);
        target_say_ready();
        /* Released by this thread 1 s after the fork: the child, which
           waits for it, must then get it. */
        target_wait_park();
        struct timespec d = {1, 0};
        nanosleep(&d, NULL);
        pthread_mutex_unlock(g_shared);
        return NULL;
    }
    target_say_ready();
    target_wait_park();
    return NULL;
}

static void on_alarm(int sig)
{
    (void)sig;
    sem_post(&hold_sem); /* async-signal-safe */
}

static void on_alarm_noop(int sig)
{
    (void)sig;
}

static void on_timer(union sigval v)
{
    (void)v;
    pthread_mutex_lock(&cv_mu);
    cv_flag = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&cv_mu);
}

static struct timespec in_ms(clockid_t clk, long ms)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* A thread waits on cv (no timeout) and is cancelled there; its cleanup
   handler unlocks the mutex glibc re-took for it. */
static void unlock_cleanup(void *m)
{
    pthread_mutex_unlock(m);
}

static void *cond_waiter(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cv_mu);
    pthread_cleanup_push(unlock_cleanup, &cv_mu);
    target_say_ready();
    for (;;)
        pthread_cond_wait(&cv, &cv_mu);
    pthread_cleanup_pop(1);
    return NULL;
}

static int cancel_waiter(void)
{
    pthread_t w;
    char c;
    if (pipe(target_ready) != 0 || pthread_create(&w, NULL, cond_waiter, NULL) != 0 ||
        read(target_ready[0], &c, 1) != 1)
        return 1;
    /* ready is said with cv_mu held: once cv_mu can be taken, the waiter
       is parked in pthread_cond_wait. */
    pthread_mutex_lock(&cv_mu);
    pthread_mutex_unlock(&cv_mu);
    if (pthread_cancel(w) != 0 || pthread_join(w, NULL) != 0)
        return 1;
    close(target_ready[0]);
    close(target_ready[1]);
    return 0;
}

/* Successful lock calls leave errno alone with and without the audit
   (glibc's do): the first and later takings, nested and bare, and the
   calls that make lock memory go away. Returns 0, or 50 + the step. */
static int errno_mode(void)
{
    static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER,
                           b = PTHREAD_MUTEX_INITIALIZER;
    static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
    sem_t s;
    int step = 0;
#define KEEP(call)                                                             \
    do {                                                                       \
        step++;                                                                \
        errno = 4242;                                                          \
        call;                                                                  \
        if (errno != 4242) {                                                   \
            fprintf(stderr, "errno %d after step %d: %s\n", errno, step,       \
                    #call);                                                    \
            return 50 + step;                                                  \
        }                                                                      \
    } while (0)
    for (int round = 0; round < 2; round++) {
        step = 0;
        KEEP(pthread_mutex_lock(&a));
        KEEP(pthread_mutex_lock(&b));
        KEEP(pthread_mutex_unlock(&a));
        KEEP(pthread_mutex_unlock(&b));
        KEEP(pthread_mutex_trylock(&a));
        KEEP(pthread_rwlock_rdlock(&rw));
        KEEP(pthread_rwlock_unlock(&rw));
        KEEP(pthread_mutex_unlock(&a));
        KEEP(sem_init(&s, 0, 1));
        KEEP(sem_wait(&s));
        KEEP(sem_post(&s));
        KEEP(sem_destroy(&s));
        void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 49;
        pthread_mutex_t *m = p;
        KEEP(pthread_mutex_init(m, NULL));
        KEEP(pthread_mutex_lock(m));
        KEEP(pthread_mutex_unlock(m));
        KEEP(munmap(p, 4096));
    }
#undef KEEP
    return 0;
}

/* What the child does; its return value is its exit status. */
static int child_main(const char *m)
{
    if (strcmp(m, "sem-signal") == 0 || strcmp(m, "sem-alarm-noop") == 0) {
        /* The holder thread took the semaphore; this child's own SIGALRM
           handler posts it 1 s from now, so the wait ends then. In
           sem-alarm-noop the handler does nothing: the child waits
           forever (the one mode that is not a correct program; the parent
           gives up on it after 10 s and exits 10). */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = m[4] == 'a' ? on_alarm_noop : on_alarm;
        sigaction(SIGALRM, &sa, NULL);
        alarm(1);
        int r;
        while ((r = sem_wait(&hold_sem)) != 0 && errno == EINTR)
            ;
        return r == 0 ? 0 : 30;
    }
    if (strcmp(m, "sem-posix-timer") == 0) {
        /* The same with a POSIX timer that sends SIGUSR1 1 s from now. */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sigaction(SIGUSR1, &sa, NULL);
        timer_t t;
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_SIGNAL;
        ev.sigev_signo = SIGUSR1;
        struct itimerspec it = {{0, 0}, {1, 0}};
        if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0 ||
            timer_settime(t, 0, &it, NULL) != 0)
            return 41;
        int r;
        while ((r = sem_wait(&hold_sem)) != 0 && errno == EINTR)
            ;
        return r == 0 ? 0 : 42;
    }
    if (strcmp(m, "cond-timer") == 0) {
        /* A SIGEV_THREAD timer's callback (a thread glibc starts in this
           child) signals the condition 1 s from now. */
        timer_t t;
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD;
        ev.sigev_notify_function = on_timer;
        if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0)
            return 31;
        struct itimerspec it = {{0, 0}, {1, 0}};
        pthread_mutex_lock(&cv_mu);
        if (timer_settime(t, 0, &it, NULL) != 0)
            return 32;
        while (!cv_flag)
            pthread_cond_wait(&cv, &cv_mu);
        pthread_mutex_unlock(&cv_mu);
        return 0;
    }
    if (strcmp(m, "sem-timed") == 0) {
        struct timespec ts = in_ms(CLOCK_REALTIME, 1000);
        int r = sem_timedwait(&hold_sem, &ts);
        return r != 0 && errno == ETIMEDOUT ? 0 : 33;
    }
    if (strcmp(m, "timed") == 0) {
        /* Timed and try acquires of locks held at the fork: each must
           give up by itself, the child is never ended. */
        if (pthread_mutex_trylock(&hold_mu) != EBUSY)
            return 34;
        struct timespec ts = in_ms(CLOCK_REALTIME, 700);
        if (pthread_mutex_timedlock(&hold_mu, &ts) != ETIMEDOUT)
            return 35;
        ts = in_ms(CLOCK_REALTIME, 700);
        if (pthread_rwlock_timedwrlock(&hold_rw, &ts) != ETIMEDOUT)
            return 36;
        ts = in_ms(CLOCK_REALTIME, 700);
        if (pthread_rwlock_timedrdlock(&hold_rw, &ts) != ETIMEDOUT)
            return 37;
        pthread_mutex_lock(&cv_mu);
        ts = in_ms(CLOCK_REALTIME, 700);
        int r = pthread_cond_timedwait(&cv, &cv_mu, &ts);
        pthread_mutex_unlock(&cv_mu);
        return r == ETIMEDOUT ? 0 : 38;
    }
    if (strcmp(m, "pshared") == 0) {
        if (pthread_mutex_lock(g_shared) != 0)
            return 39;
        pthread_mutex_unlock(g_shared);
        return 0;
    }
    if (strcmp(m, "cancel-cond") == 0) {
        /* The mutex of a condition wait that was cancelled (its cleanup
           handler unlocked it) is free: take it. */
        if (pthread_mutex_lock(&cv_mu) != 0)
            return 40;
        pthread_mutex_unlock(&cv_mu);
        return 0;
    }
    /* held, pshared-private, robust, recursive-*, rdlock-deep, many-*:
       only run on. */
    target_run_on_exit(0);
    return 0;
}

static int child_of_mode(void)
{
    return child_main(g_mode);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    g_mode = argv[1];
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    if (strcmp(g_mode, "robust") == 0)
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    /* A process-shared mutex in private memory (static data): fork copies
       it, so it is the child's own lock, held by a thread it lacks. */
    if (strcmp(g_mode, "pshared-private") == 0)
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (strncmp(g_mode, "recursive-", 10) == 0)
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&hold_mu, &a);
    if (strcmp(g_mode, "pshared") == 0) {
        g_shared = mmap(NULL, sizeof *g_shared, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (g_shared == MAP_FAILED)
            return 11;
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutex_init(g_shared, &a);
    }
    for (int i = 0; i < 20; i++)
        pthread_mutex_init(&many[i], NULL);
    for (int i = 0; i < 100; i++)
        pthread_mutex_init(&hundred[i], NULL);
    for (int i = 0; i < 1030; i++)
        pthread_mutex_init(&over[i], NULL);
    sem_init(&hold_sem, 0, 1);
    if (strcmp(g_mode, "errno") == 0)
        return errno_mode();
    if (strcmp(g_mode, "cancel-cond") == 0 && cancel_waiter() != 0)
        return 18;
    int st = target_fork_held(holder, child_of_mode);
    if (st != 0) {
        fprintf(stderr, "hostile-locks %s: child status %d\n", g_mode, st);
        return 10;
    }
    if (strcmp(g_mode, "many-100") == 0)
        printf("last %p\n", (void *)&hundred[99]);
    puts("ok");
    return 0;
}
