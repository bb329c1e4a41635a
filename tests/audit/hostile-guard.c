/* SPDX-License-Identifier: MIT */
/*
 * hostile-guard.c: programs written to break the audit's child-deadlock
 * guard (src/preload/child.c) and its process-shared test (safemem.c
 * shared_in_fact, emit.c forksafe__maps_shared), run by
 * tests/audit/test-audit-hostile-locks.c with and without forksafe-audit.
 *
 * argv[1] picks the mode. A thread of the parent holds a lock at the fork
 * (hold_mu, hold_sem, a robust mutex, or a process-shared lock in shared
 * memory), the child runs child_main(mode), and the parent waits for it
 * at most 10 s (then kills it). The parent prints "child status N" on
 * stderr (N: the child's exit status, -1 when it had to be killed) and
 * exits 0 when the child exited 0, 10 otherwise.
 *
 * Modes whose child must hang without the audit (the guard must end it,
 * status 86) say so; every other mode is a correct program that exits 0.
 */
#include "target-util.h"

#include <fcntl.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/time.h>

static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t robust_mu;   /* robust, private memory */
static pthread_mutex_t robust_free; /* robust, private, never held */
static sem_t hold_sem;
static pthread_rwlock_t priv_rw; /* process-shared, private memory */
static sem_t priv_sem;           /* process-shared, private memory */
static const char *g_mode;
static int mode_is(const char *m)
{
    return strcmp(g_mode, m) == 0;
}
static int mode_has(const char *prefix)
{
    return strncmp(g_mode, prefix, strlen(prefix)) == 0;
}

/* Process-shared locks in shared memory (the shared-* modes). */
struct shared {
    pthread_mutex_t mu;
    sem_t sem;
};
static struct shared *g_sh;

static void *holder(void *arg)
{
    (void)arg;
    if (mode_has("shared-")) {
        /* Takes the shared mutex and the shared semaphore; releases both
           1 s after the fork, for the child, which waits for them. */
        if (pthread_mutex_lock(&g_sh->mu) != 0 || sem_wait(&g_sh->sem) != 0)
            _exit(20);
        target_say_ready();
        target_wait_park();
        struct timespec d = {1, 0};
        nanosleep(&d, NULL);
        pthread_mutex_unlock(&g_sh->mu);
        sem_post(&g_sh->sem);
        return NULL;
    }
    if (pthread_mutex_lock(&hold_mu) != 0 || sem_wait(&hold_sem) != 0 ||
        pthread_mutex_lock(&robust_mu) != 0 ||
        pthread_rwlock_wrlock(&priv_rw) != 0 || sem_wait(&priv_sem) != 0)
        _exit(21);
    target_say_ready();
    target_wait_park();
    return NULL; /* and exits holding them (the parent's copies) */
}

static void on_sig_post(int sig)
{
    (void)sig;
    sem_post(&hold_sem); /* async-signal-safe */
}

static void on_sig_noop(int sig)
{
    (void)sig;
}

static void on_sig_exit(int sig)
{
    (void)sig;
    _exit(0); /* a watchdog: gives up, with the status it chose */
}

static sigjmp_buf jb;
static void on_sig_jump(int sig)
{
    (void)sig;
    siglongjmp(jb, 1);
}

static void on_thread_post(union sigval v)
{
    (void)v;
    sem_post(&hold_sem);
}

static void catch_sig(int sig, void (*fn)(int), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sa.sa_flags = flags;
    sigaction(sig, &sa, NULL);
}

/* A POSIX timer sending sig in ms from now (once), or -1. */
static int signal_timer(clockid_t clk, int sig, long ms, timer_t *out)
{
    timer_t t;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = sig;
    if (timer_create(clk, &ev, &t) != 0)
        return -1;
    struct itimerspec it = {{0, 0}, {ms / 1000, (ms % 1000) * 1000000L}};
    if (ms > 0 && timer_settime(t, 0, &it, NULL) != 0)
        return -1;
    if (out)
        *out = t;
    return 0;
}

/* Use up every descriptor (lowering RLIMIT_NOFILE to what is open + 8
   first, so that this is quick). Returns 0 once open() fails with
   EMFILE. */
static int exhaust_fds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    for (int i = 0; i < 100; i++)
        if (open("/dev/null", O_RDONLY) < 0)
            return errno == EMFILE ? 0 : -1;
    return -1;
}

static int sem_wait_eintr(sem_t *s)
{
    int r;
    while ((r = sem_wait(s)) != 0 && errno == EINTR)
        ;
    return r;
}

/* What the child does; its return value is its exit status. */
static int child_main(void)
{
    if (mode_is("vtimer-mutex")) {
        /* Must hang without the audit: a one-shot ITIMER_VIRTUAL counts
           the child's CPU time, and a child blocked in pthread_mutex_lock
           uses none, so it never fires. The guard must end the child. */
        catch_sig(SIGVTALRM, on_sig_noop, 0);
        struct itimerval it = {{0, 0}, {0, 50000}};
        if (setitimer(ITIMER_VIRTUAL, &it, NULL) != 0)
            return 40;
        pthread_mutex_lock(&hold_mu);
        return 41;
    }
    if (mode_is("cputimer-sem")) {
        /* Must hang without the audit: the same with a POSIX timer on the
           process CPU-time clock, and a semaphore. */
        catch_sig(SIGUSR1, on_sig_noop, 0);
        if (signal_timer(CLOCK_PROCESS_CPUTIME_ID, SIGUSR1, 50, NULL) != 0)
            return 42;
        sem_wait_eintr(&hold_sem);
        return 43;
    }
    if (mode_is("emfile-ptimer")) {
        /* Correct: the child's POSIX timer (SIGUSR1, 1 s) has a handler
           that posts the semaphore; the child is out of descriptors. */
        catch_sig(SIGUSR1, on_sig_post, 0);
        if (signal_timer(CLOCK_MONOTONIC, SIGUSR1, 1000, NULL) != 0)
            return 44;
        if (exhaust_fds() != 0)
            return 45;
        return sem_wait_eintr(&hold_sem) == 0 ? 0 : 46;
    }
    if (mode_is("ptimer")) {
        /* The control of emfile-ptimer, with descriptors to spare. */
        catch_sig(SIGUSR1, on_sig_post, 0);
        if (signal_timer(CLOCK_MONOTONIC, SIGUSR1, 1000, NULL) != 0)
            return 44;
        return sem_wait_eintr(&hold_sem) == 0 ? 0 : 46;
    }
    if (mode_is("emfile-robust") || mode_is("robust-held")) {
        /* Must hang without the audit: a robust mutex in private memory
           (static data), held at the fork by a thread of the parent: the
           child's copy is never released. In emfile-robust the child is
           out of descriptors first. */
        if (mode_is("emfile-robust") && exhaust_fds() != 0)
            return 47;
        pthread_mutex_lock(&robust_mu);
        return 48;
    }
    if (mode_is("emfile-errno")) {
        /* Correct: successful lock calls leave errno alone (glibc's do);
           out of descriptors, a robust mutex nobody holds. */
        if (exhaust_fds() != 0)
            return 49;
        errno = 4242;
        if (pthread_mutex_lock(&robust_free) != 0)
            return 50;
        if (errno != 4242) {
            fprintf(stderr, "errno %d after pthread_mutex_lock\n", errno);
            return 51;
        }
        pthread_mutex_unlock(&robust_free);
        return 0;
    }
    if (mode_is("sem-restart")) {
        /* Correct on Linux: with SA_RESTART, glibc's sem_wait (a futex
           wait without a timeout) is restarted after the handler, which
           posts the semaphore: sem_wait returns 0. */
        catch_sig(SIGALRM, on_sig_post, SA_RESTART);
        alarm(1);
        if (sem_wait(&hold_sem) != 0) {
            fprintf(stderr, "sem_wait: %s\n", strerror(errno));
            return 52;
        }
        return 0;
    }
    if (mode_is("thread-errno")) {
        /* Correct: a SIGEV_THREAD timer's thread posts the semaphore 1 s
           from now; sem_wait returns 0 and leaves errno alone. */
        timer_t t;
        struct sigevent ev;
        memset(&ev, 0, sizeof ev);
        ev.sigev_notify = SIGEV_THREAD;
        ev.sigev_notify_function = on_thread_post;
        if (timer_create(CLOCK_MONOTONIC, &ev, &t) != 0)
            return 53;
        struct itimerspec it = {{0, 0}, {1, 0}};
        if (timer_settime(t, 0, &it, NULL) != 0)
            return 54;
        errno = 4242;
        if (sem_wait(&hold_sem) != 0)
            return 55;
        if (errno != 4242) {
            fprintf(stderr, "errno %d after sem_wait\n", errno);
            return 56;
        }
        return 0;
    }
    if (mode_is("many-timers")) {
        /* Correct: the first POSIX timer (SIGUSR1, 1 s) has a handler that
           posts the semaphore; 150 more timers exist, unarmed. */
        catch_sig(SIGUSR1, on_sig_post, 0);
        if (signal_timer(CLOCK_MONOTONIC, SIGUSR1, 1000, NULL) != 0)
            return 57;
        for (int i = 0; i < 150; i++)
            if (signal_timer(CLOCK_MONOTONIC, SIGUSR2, 0, NULL) != 0)
                return 58;
        return sem_wait_eintr(&hold_sem) == 0 ? 0 : 59;
    }
    if (mode_is("ign-timer")) {
        /* Must hang without the audit: the timer's signal is ignored. */
        signal(SIGUSR2, SIG_IGN);
        if (signal_timer(CLOCK_MONOTONIC, SIGUSR2, 100, NULL) != 0)
            return 60;
        sem_wait_eintr(&hold_sem);
        return 61;
    }
    if (mode_is("ign-periodic")) {
        /* Must hang without the audit: a periodic timer (100 ms) whose
           signal is ignored (SIG_IGN, set with SA_SIGINFO): no handler
           ever runs. */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGUSR2, &sa, NULL);
        timer_t t;
        if (signal_timer(CLOCK_MONOTONIC, SIGUSR2, 0, &t) != 0)
            return 62;
        struct itimerspec it = {{0, 100000000L}, {0, 100000000L}};
        if (timer_settime(t, 0, &it, NULL) != 0)
            return 63;
        pthread_mutex_lock(&hold_mu);
        return 64;
    }
    if (mode_is("blocked-alarm")) {
        /* Must hang without the audit: the SIGALRM handler would post,
           but SIGALRM is blocked: it never runs. */
        catch_sig(SIGALRM, on_sig_post, 0);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGALRM);
        sigprocmask(SIG_BLOCK, &s, NULL);
        alarm(1);
        sem_wait_eintr(&hold_sem);
        return 65;
    }
    if (mode_has("longjmp-")) {
        /* Correct: the classic timeout, a SIGALRM handler that jumps out
           of the blocked call (1 s); then the child gives up on the lock,
           takes a lock of its own, and exits 0. longjmp-mutex: the wait
           is pthread_mutex_lock; longjmp-sem: sem_wait. */
        catch_sig(SIGALRM, on_sig_jump, 0);
        if (sigsetjmp(jb, 1) == 0) {
            alarm(1);
            if (mode_is("longjmp-mutex"))
                pthread_mutex_lock(&hold_mu);
            else
                sem_wait(&hold_sem);
            return 74; /* cannot be had */
        }
        pthread_mutex_t own = PTHREAD_MUTEX_INITIALIZER;
        if (pthread_mutex_lock(&own) != 0)
            return 75;
        pthread_mutex_unlock(&own);
        /* A second wait on a lock held at the fork, with a second jump. */
        if (sigsetjmp(jb, 1) == 0) {
            alarm(1);
            sem_wait(&hold_sem);
            return 76;
        }
        return 0;
    }
    if (mode_is("watchdog")) {
        /* Correct: a watchdog alarm (1 s) whose handler leaves with
           _exit(0) while the child waits for a mutex it cannot have. */
        catch_sig(SIGALRM, on_sig_exit, 0);
        alarm(1);
        pthread_mutex_lock(&hold_mu);
        return 77;
    }
    if (mode_is("blocked-periodic")) {
        /* Must hang without the audit: a periodic ITIMER_REAL (100 ms)
           whose SIGALRM handler would post, with SIGALRM blocked around
           the wait (signals blocked around a critical section): the
           handler cannot run while this, the child's only thread, waits. */
        catch_sig(SIGALRM, on_sig_post, 0);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, SIGALRM);
        sigprocmask(SIG_BLOCK, &s, NULL);
        struct itimerval it = {{0, 100000}, {0, 100000}};
        if (setitimer(ITIMER_REAL, &it, NULL) != 0)
            return 72;
        pthread_mutex_lock(&hold_mu);
        return 73;
    }
    if (mode_has("shared-")) {
        /* Correct: the parent's thread releases both 1 s after the fork. */
        int r = pthread_mutex_lock(&g_sh->mu);
        if (r != 0 && r != EOWNERDEAD)
            return 66;
        pthread_mutex_unlock(&g_sh->mu);
        return sem_wait_eintr(&g_sh->sem) == 0 ? 0 : 67;
    }
    if (mode_is("private-rwlock")) {
        /* Must hang without the audit: a process-shared rwlock in static
           data, held by a thread of the parent (the child's copy). */
        pthread_rwlock_rdlock(&priv_rw);
        return 69;
    }
    if (mode_is("private-sem")) {
        /* Must hang without the audit: the same with a semaphore. */
        sem_wait_eintr(&priv_sem);
        return 70;
    }
    if (mode_is("held")) {
        /* Must hang without the audit: the control, a plain mutex. */
        pthread_mutex_lock(&hold_mu);
        return 68;
    }
    return 2;
}

/* The shared memory of the shared-* modes. */
static struct shared *map_shared(void)
{
    size_t len = 4096;
    void *p = MAP_FAILED;
    if (mode_is("shared-anon")) {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                 -1, 0);
    } else if (mode_is("shared-memfd")) {
        int fd = memfd_create("hostile-guard", MFD_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
            p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else if (mode_is("shared-file")) {
        char path[] = "/tmp/hostile-guard-XXXXXX";
        int fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0 && ftruncate(fd, (off_t)len) == 0)
            p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        unlink(path);
    } else if (mode_is("shared-sysv")) {
        int id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600);
        if (id >= 0) {
            p = shmat(id, NULL, 0);
            shmctl(id, IPC_RMID, NULL);
            if (p == (void *)-1)
                p = MAP_FAILED;
        }
    } else if (mode_is("shared-mremap")) {
        /* Grown and moved before the locks are made in it. */
        void *q = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (q != MAP_FAILED)
            p = mremap(q, len, 16 * len, MREMAP_MAYMOVE);
    }
    return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    g_mode = argv[1];
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&robust_mu, &a);
    pthread_mutex_init(&robust_free, &a);
    if (mode_has("shared-")) {
        g_sh = map_shared();
        if (!g_sh)
            return 11;
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        if (pthread_mutex_init(&g_sh->mu, &a) != 0 ||
            sem_init(&g_sh->sem, 1, 1) != 0)
            return 12;
    }
    sem_init(&hold_sem, 0, 1);
    sem_init(&priv_sem, 1, 1);
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setpshared(&ra, PTHREAD_PROCESS_SHARED);
    pthread_rwlock_init(&priv_rw, &ra);
    int st = target_fork_held(holder, child_main);
    fprintf(stderr, "child status %d\n", st);
    return st == 0 ? 0 : 10;
}
