/* SPDX-License-Identifier: MIT */
/*
 * target-rules.c: one program, many modes (argv[1]), each a case of a
 * rule in docs/audit.md "When each finding fires": a hazard the rule must
 * report, or a near miss it must not. Each mode exits 0 when the program
 * itself behaved as intended (children's statuses included); a non-zero
 * status names the step that went wrong. The tests (test-audit-rules.c)
 * read what forksafe-audit made of it.
 *
 *   held-reinit      a thread holds m at fork; the child re-initialises m
 *                    and uses it
 *   held-registered  m is registered; a thread holds it briefly at fork
 *                    (forksafe's prepare waits for it); the child uses m
 *   held-callback    a registered callback set's prepare takes pool, which
 *                    a thread holds briefly at fork
 *   held-plugin      a plugin registers its lock; a thread holds it at
 *                    fork; the plugin is unloaded before exit
 *   psem             a thread waited on a process-shared semaphore (value
 *                    0) when the process forks
 *   cond             the child waits without a timeout on a condition whose
 *                    mutex another thread used (child-deadlock)
 *   cond-timed       the same with a 100 ms timeout (no deadlock)
 *   rwlock           a thread holds an rwlock for writing at fork; the
 *                    child takes it for reading (child-deadlock)
 *   unsafe           three children each lock a mutex another thread of the
 *                    parent used (not held at the fork)
 *   unsafe-exec      one such child, which then execs /bin/true
 *   unsafe-malloc    the child calls malloc, calloc, realloc and free only
 *   unsafe-registered the child locks a registered mutex another thread used
 *   unsafe-own       the child locks a mutex only the forking thread used
 *   unsafe-nested-registered / -plain / -bare / -handover / -transient /
 *   -transient-live / -reused / -reused-live / -reused-under / -conns /
 *   -conns-one-plain
 *                    the child locks inner, which a thread of the parent
 *                    took only under outer_lock (registered, except with
 *                    -plain), and once bare, once kept past outer_lock,
 *                    also under 24 short-lived locks destroyed since (one
 *                    left alive and held alone around inner), or also
 *                    under a lock destroyed and made anew at its address
 *                    (the new one held alone around inner), or also
 *                    under 12 connection mutexes, registered (one not),
 *                    each with and without outer_lock inside; see
 *                    use_nested_then_park
 *   shared-runon     two threads share an unregistered mutex; a child of a
 *                    fork with a thread alive runs on
 *   shared-exit      the same, but the child only calls _exit
 *   lib-open         an SQLite connection is open at fork (opened by a
 *                    thread); the child runs on
 *   lib-closed       it was closed before the fork
 *   lib-exec         it is open, but the child execs /bin/true at once
 *   lib-adapter      it is open and tracked by forksafe-sqlite
 *   unsafe-inline    as unsafe, the lock call made in an inlined function
 *   stdio-exec       output pending at fork; the child execs /bin/true
 *   stdio-prepared   output pending when fork() is called, written out by
 *                    a fork handler's prepare (as forksafe-stdio's does);
 *                    the child then flushes stdout and exits
 *   atfork-order     a raw pthread_atfork handler's prepare takes a
 *                    registered lock of a higher rank than one forksafe's
 *                    prepare takes after it
 *   fd-jobserver     a pipe without close-on-exec, named in MAKEFLAGS as a
 *                    jobserver, survives into /bin/true
 *   fd-arg           a descriptor named in the new program's arguments
 *   fd-env           a descriptor named in MYTOOL_FD
 *   fd-same-file     argv[2] is a file; it is opened again without
 *                    close-on-exec and survives into /bin/true (the file is
 *                    also open on a descriptor forksafe-audit inherited)
 */
#include "target-util.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <forksafe.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#ifdef HAVE_SQLITE
#include <forksafe/sqlite.h>
#include <sqlite3.h>
#endif

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t other = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static int go[2];
static const char *self_dir;

static void signal_go(void)
{
    if (write(go[1], "g", 1) != 1)
        exit(92);
}

static void wait_go(void)
{
    char c;
    if (read(go[0], &c, 1) != 1)
        exit(93);
}

/* ------------------------------------------------------------ holders */

/* Holds m until target_parked_stop(). */
static void *hold_m(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&m);
    signal_go();
    target_parked_main(NULL);
    pthread_mutex_unlock(&m);
    return NULL;
}

/* Holds lock arg for 300 ms (a prepare waits for it). */
static void *hold_briefly(void *arg)
{
    pthread_mutex_lock(arg);
    signal_go();
    struct timespec d = {0, 300 * 1000 * 1000};
    nanosleep(&d, NULL);
    pthread_mutex_unlock(arg);
    return NULL;
}

/* Uses lock arg (not held at the fork), then parks. */
static void *use_then_park(void *arg)
{
    pthread_mutex_lock(arg);
    pthread_mutex_unlock(arg);
    signal_go();
    return target_parked_main(NULL);
}

static int start(void *(*fn)(void *), void *arg)
{
    if (pipe(target_pipe) != 0 || pipe(go) != 0 ||
        pthread_create(&target_thread, NULL, fn, arg) != 0)
        exit(90);
    wait_go();
    return 0;
}

static int reap(pid_t pid, int want)
{
    int st = target_wait(pid, 10000);
    return st == want ? 0 : 10 + (st & 0x7f);
}

/* ------------------------------------------------------------ modes */

static int held_reinit(void)
{
    start(hold_m, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_init(&m, NULL);
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
        _exit(0);
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

static int held_registered(void)
{
    if (forksafe_register_mutex(&m, "rules.m", FORKSAFE_RANK_APP) != 0)
        return 2;
    start(hold_briefly, &m);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
        _exit(0);
    }
    int r = reap(pid, 0);
    pthread_join(target_thread, NULL);
    return r;
}

static pthread_mutex_t pool = PTHREAD_MUTEX_INITIALIZER;

static int pool_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    return pthread_mutex_clocklock(&pool, CLOCK_MONOTONIC, deadline);
}

static void pool_release(void *ctx)
{
    (void)ctx;
    pthread_mutex_unlock(&pool);
}

static int held_callback(void)
{
    static const struct forksafe_ops ops = {pool_prepare, pool_release,
                                            pool_release};
    static int pool_ctx;
    if (forksafe_register_ops(&pool_ctx, "rules.pool", FORKSAFE_RANK_APP,
                              &ops) != 0)
        return 2;
    start(hold_briefly, &pool);
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int r = reap(pid, 0);
    pthread_join(target_thread, NULL);
    return r;
}

static int held_plugin(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/rules-plugin.so", self_dir);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    pthread_mutex_t *(*get)(void) =
        h ? (pthread_mutex_t * (*)(void)) dlsym(h, "rules_plugin_lock") : NULL;
    if (!get)
        return 2;
    start(hold_briefly, get());
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int r = reap(pid, 0);
    pthread_join(target_thread, NULL);
    if (dlclose(h) != 0)
        return 3;
    return r;
}

static sem_t *psem;

static void *wait_psem(void *arg)
{
    (void)arg;
    sem_wait(psem); /* takes it: the value is 0 from now on */
    signal_go();
    return target_parked_main(NULL);
}

static int psem_mode(void)
{
    psem = mmap(NULL, sizeof *psem, PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (psem == MAP_FAILED || sem_init(psem, 1, 1) != 0)
        return 2;
    start(wait_psem, NULL);
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

static void *cond_user(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    pthread_mutex_lock(&m);
    pthread_cond_timedwait(&cv, &m, &ts); /* returns at once */
    pthread_mutex_unlock(&m);
    signal_go();
    return target_parked_main(NULL);
}

static int cond_mode(int timed)
{
    start(cond_user, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_lock(&m);
        if (timed) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&cv, &m, &ts);
        } else {
            pthread_cond_wait(&cv, &m); /* nobody can signal it */
        }
        pthread_mutex_unlock(&m);
        _exit(0);
    }
    int r = reap(pid, timed ? 0 : 86);
    target_parked_stop();
    return r;
}

static void *hold_rw(void *arg)
{
    (void)arg;
    pthread_rwlock_wrlock(&rw);
    signal_go();
    target_parked_main(NULL);
    pthread_rwlock_unlock(&rw);
    return NULL;
}

static int rwlock_mode(void)
{
    start(hold_rw, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_rwlock_rdlock(&rw);
        _exit(0);
    }
    int r = reap(pid, 86);
    target_parked_stop();
    return r;
}

/* External, so that the compiler keeps its name (no .constprop clone). */
void child_takes(pthread_mutex_t *l);
__attribute__((noinline)) void child_takes(pthread_mutex_t *l)
{
    pthread_mutex_lock(l);
    pthread_mutex_unlock(l);
}

static int unsafe_mode(int children, int exec_after)
{
    start(use_then_park, &other);
    int r = 0;
    for (int i = 0; i < children && !r; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            child_takes(&other);
            if (exec_after)
                execl("/bin/true", "true", (char *)NULL);
            _exit(0);
        }
        r = reap(pid, 0);
    }
    target_parked_stop();
    return r;
}

/* Not the same code as child_takes (the compiler would fold the two). */
static volatile int inline_count;
static inline __attribute__((always_inline)) void
take_inline(pthread_mutex_t *l)
{
    pthread_mutex_lock(l); /* the inlined call */
    inline_count++;
    pthread_mutex_unlock(l);
}

void child_inline(pthread_mutex_t *l);
__attribute__((noinline)) void child_inline(pthread_mutex_t *l)
{
    take_inline(l);
}

static int unsafe_inline(void)
{
    start(use_then_park, &other);
    pid_t pid = fork();
    if (pid == 0) {
        child_inline(&other);
        _exit(0);
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

static void *(*volatile alloc)(size_t) = malloc;

static int unsafe_malloc(void)
{
    start(use_then_park, &other);
    pid_t pid = fork();
    if (pid == 0) {
        char *p = alloc(64), *q = calloc(4, 16);
        p = realloc(p, 256);
        free(q);
        free(p);
        exit(p && q ? 0 : 1); /* exit(): the child runs on */
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

static int unsafe_registered(void)
{
    if (forksafe_register_mutex(&other, "rules.other", FORKSAFE_RANK_APP) != 0)
        return 2;
    return unsafe_mode(1, 0);
}

static int unsafe_own(void)
{
    target_parked_start();
    child_takes(&other); /* only this thread uses it */
    pid_t pid = fork();
    if (pid == 0) {
        child_takes(&other);
        _exit(0);
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

/* inner, taken by a thread of the parent only while it holds outer_lock
   (SQLite's per-file lock mutex under the connection mutex), except in
   the "bare" case, where it is also taken once with nothing held, and the
   "handover" case, where it is once kept after outer_lock is released. */
static pthread_mutex_t outer_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t inner = PTHREAD_MUTEX_INITIALIZER;
static int nested_bare;

/* Short-lived locks, each taken around outer_lock and inner once and then
   destroyed (SQLite's connection mutexes around its VFS mutex and
   per-file shm mutex, with a connection opened and closed per request):
   more distinct (innermost, outermost) pairs than the table keeps for
   inner, all of them over by the fork. With "transient-live" the last one
   stays alive and is later held alone around inner: not covered. */
#define N_TRANSIENT 24
static pthread_mutex_t transient[N_TRANSIENT];

static void use_transient(int live)
{
    for (int k = 0; k < N_TRANSIENT; k++) {
        pthread_mutex_init(&transient[k], NULL);
        pthread_mutex_lock(&transient[k]);
        pthread_mutex_lock(&outer_lock);
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&inner);
        pthread_mutex_unlock(&outer_lock);
        pthread_mutex_unlock(&transient[k]);
        if (!live || k + 1 < N_TRANSIENT)
            pthread_mutex_destroy(&transient[k]);
    }
    if (live) {
        pthread_mutex_lock(&transient[N_TRANSIENT - 1]);
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&inner);
        pthread_mutex_unlock(&transient[N_TRANSIENT - 1]);
    }
}

/* A lock at one address, destroyed and made anew (malloc handing a closed
   connection's memory to the next one): the new lock is another lock. The
   old one was held alone around inner; the new one is used ("reused"),
   held alone around inner too ("reused-live": not covered), or held
   around inner with outer_lock (registered) inside ("reused-under":
   covered; SQLite's findReusableFd() takes the per-file lock mutex under
   the VFS mutex while opening a connection, not yet tracked, whose mutex
   got a closed one's memory). */
static pthread_mutex_t recycled;

static void use_recycled(int live)
{
    pthread_mutex_init(&recycled, NULL);
    pthread_mutex_lock(&recycled);
    pthread_mutex_lock(&inner);
    pthread_mutex_unlock(&inner);
    pthread_mutex_unlock(&recycled);
    pthread_mutex_destroy(&recycled);
    pthread_mutex_init(&recycled, NULL);
    pthread_mutex_lock(&recycled);
    if (live == 2)
        pthread_mutex_lock(&outer_lock);
    if (live) {
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&inner);
    }
    if (live == 2)
        pthread_mutex_unlock(&outer_lock);
    pthread_mutex_unlock(&recycled);
}

/* Connections, each with its mutex (registered, ranked before outer_lock:
   tracked), that each take
   inner under the VFS-like outer_lock when opened and alone under their
   own mutex when used: 2 x N_CONNS pairs, N_CONNS once (conn_k, conn_k)
   is known to be stricter than (outer_lock, conn_k). With
   "conns-one-plain" the last connection is not registered: not
   covered. */
#define N_CONNS 12
static pthread_mutex_t conns[N_CONNS];

static int use_conns(int one_plain)
{
    for (int k = 0; k < N_CONNS; k++) {
        pthread_mutex_init(&conns[k], NULL);
        if ((!one_plain || k + 1 < N_CONNS) &&
            forksafe_register_mutex(&conns[k], "rules.conn",
                                    FORKSAFE_RANK_APP) != 0)
            return -1;
    }
    for (int k = 0; k < N_CONNS; k++) {
        pthread_mutex_lock(&conns[k]);
        pthread_mutex_lock(&outer_lock);
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&inner);
        pthread_mutex_unlock(&outer_lock);
        pthread_mutex_unlock(&conns[k]);
    }
    for (int k = 0; k < N_CONNS; k++) {
        pthread_mutex_lock(&conns[k]);
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&inner);
        pthread_mutex_unlock(&conns[k]);
    }
    return 0;
}

static void *use_nested_then_park(void *arg)
{
    (void)arg;
    if ((nested_bare == 7 || nested_bare == 8) && use_conns(nested_bare == 8))
        exit(94);
    if (nested_bare == 3 || nested_bare == 4)
        use_transient(nested_bare == 4);
    if (nested_bare == 5 || nested_bare == 6 || nested_bare == 9)
        use_recycled(nested_bare == 6 ? 1 : nested_bare == 9 ? 2 : 0);
    for (int i = 0; i < 3; i++) {
        pthread_mutex_lock(&outer_lock);
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&inner);
        pthread_mutex_unlock(&outer_lock);
    }
    if (nested_bare == 1) {
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&inner);
    } else if (nested_bare == 2) {
        /* Hand over hand: inner stays held after outer_lock is released. */
        pthread_mutex_lock(&outer_lock);
        pthread_mutex_lock(&inner);
        pthread_mutex_unlock(&outer_lock);
        pthread_mutex_unlock(&inner);
    }
    signal_go();
    return target_parked_main(NULL);
}

static int unsafe_nested(const char *how)
{
    nested_bare = strcmp(how, "bare") == 0              ? 1
                  : strcmp(how, "handover") == 0        ? 2
                  : strcmp(how, "transient") == 0       ? 3
                  : strcmp(how, "transient-live") == 0  ? 4
                  : strcmp(how, "reused") == 0          ? 5
                  : strcmp(how, "reused-live") == 0     ? 6
                  : strcmp(how, "conns") == 0           ? 7
                  : strcmp(how, "conns-one-plain") == 0 ? 8
                  : strcmp(how, "reused-under") == 0    ? 9
                                                        : 0;
    if (strcmp(how, "plain") != 0 &&
        forksafe_register_mutex(&outer_lock, "rules.outer",
                                FORKSAFE_RANK_APP + 10) != 0)
        return 2;
    start(use_nested_then_park, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        child_takes(&inner);
        _exit(0);
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

/* Locks the child makes and uses among threads of its own (a new ZeroMQ
   context's): no thread of the parent ever used them. */
static pthread_mutex_t fresh_main = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t fresh_thread = PTHREAD_MUTEX_INITIALIZER;

static void *child_thread_takes(void *arg)
{
    if (arg) {
        child_takes(arg); /* the parent's thread used it */
        return NULL;
    }
    child_takes(&fresh_main);   /* first taken by the child's main thread */
    child_takes(&fresh_thread); /* first taken here */
    return NULL;
}

static int unsafe_child_threads(int parents)
{
    start(use_then_park, &other);
    pid_t pid = fork();
    if (pid == 0) {
        child_takes(&fresh_main);
        pthread_t t;
        if (pthread_create(&t, NULL, child_thread_takes,
                           parents ? &other : NULL) != 0 ||
            pthread_join(t, NULL) != 0)
            _exit(3);
        child_takes(&fresh_thread); /* after its first user has exited */
        _exit(0);
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

static int shared_mode(int run_on)
{
    start(use_then_park, &other);
    child_takes(&other); /* a second thread: shared */
    pid_t pid = fork();
    if (pid == 0) {
        if (run_on)
            target_run_on_exit(0);
        _exit(0);
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

#ifdef HAVE_SQLITE
static sqlite3 *db;

static void *open_db(void *arg)
{
    int close_it = arg != NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        exit(94);
    sqlite3_exec(db, "create table t(x); insert into t values(1);", NULL, NULL,
                 NULL);
    if (close_it) {
        sqlite3_close(db);
        db = NULL;
    }
    signal_go();
    return target_parked_main(NULL);
}

static int lib_mode(const char *how)
{
    int closed = strcmp(how, "closed") == 0;
    start(open_db, closed ? (void *)1 : NULL);
    if (strcmp(how, "adapter") == 0 && forksafe_sqlite_track(db) != 0)
        return 2;
    pid_t pid = fork();
    if (pid == 0) {
        if (strcmp(how, "exec") == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        exit(0);
    }
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}
#endif

static int stdio_exec(void)
{
    static char buf[4096];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    fputs("pending", stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    return reap(pid, 0);
}

static void flush_stdout(void)
{
    fflush(stdout);
}

static int stdio_prepared(void)
{
    static char buf[4096];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
    if (pthread_atfork(flush_stdout, NULL, NULL) != 0)
        return 2;
    fputs("pending", stdout);
    pid_t pid = fork();
    if (pid == 0) {
        fputs("child", stdout);
        exit(0); /* flushes: only "child", the parent's bytes are out */
    }
    return reap(pid, 0);
}

/* The raw handler is registered after libforksafe's (which its
   constructor made), so glibc runs its prepare first: it takes high
   (rank APP + 200) before forksafe's prepare takes low (APP + 100). */
static pthread_mutex_t low = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t high = PTHREAD_MUTEX_INITIALIZER;

void rules_prepare(void);
void rules_release(void);
static volatile int prepared;
void rules_prepare(void)
{
    /* Not a tail call: the lock's caller is this function, not glibc's
       handler runner (the audit names the object a lock was taken from
       by the return address). */
    pthread_mutex_lock(&high);
    prepared++;
}
void rules_release(void)
{
    pthread_mutex_unlock(&high);
}

static int atfork_order(void)
{
    if (forksafe_register_mutex(&low, "rules.low", FORKSAFE_RANK_APP + 100) ||
        forksafe_register_mutex(&high, "rules.high", FORKSAFE_RANK_APP + 200) ||
        pthread_atfork(rules_prepare, rules_release, rules_release) != 0)
        return 2;
    target_parked_start();
    pid_t pid = fork();
    if (pid == 0)
        target_run_on_exit(0);
    int r = reap(pid, 0);
    target_parked_stop();
    return r;
}

static int exec_true(const char *arg, int keep)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/true", "true", arg, (char *)NULL);
        _exit(127);
    }
    int r = reap(pid, 0);
    close(keep);
    return r;
}

static int fd_mode(const char *how, const char *file)
{
    char arg[64] = "";
    if (strcmp(how, "same-file") == 0) {
        int fd = open(file, O_RDONLY); /* no O_CLOEXEC */
        return fd < 0 ? 2 : exec_true(NULL, fd);
    }
    int p[2];
    if (pipe(p) != 0)
        return 2;
    /* Well above anything the test harness keeps open. */
    int fd = dup2(p[0], 37);
    close(p[0]);
    close(p[1]);
    if (fd != 37)
        return 3;
    if (strcmp(how, "jobserver") == 0) {
        setenv("MAKEFLAGS", " -j2 --jobserver-auth=37,36", 1);
    } else if (strcmp(how, "env") == 0) {
        setenv("MYTOOL_FD", "37", 1);
    } else {
        snprintf(arg, sizeof arg, "--input-fd=%d", fd);
    }
    return exec_true(arg[0] ? arg : NULL, fd);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *mode = argv[1];
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    self_dir = slash ? dir : ".";
    if (strncmp(mode, "fd-", 3) == 0)
        return fd_mode(mode + 3, argc > 2 ? argv[2] : "/dev/null");
#ifdef HAVE_SQLITE
    if (strncmp(mode, "lib-", 4) == 0)
        return lib_mode(mode + 4);
#else
    if (strncmp(mode, "lib-", 4) == 0)
        return 77;
#endif
    static const struct {
        const char *name;
        int (*fn)(void);
    } modes[] = {
        {"held-reinit", held_reinit},
        {"held-registered", held_registered},
        {"held-callback", held_callback},
        {"held-plugin", held_plugin},
        {"psem", psem_mode},
        {"rwlock", rwlock_mode},
        {"unsafe-malloc", unsafe_malloc},
        {"unsafe-registered", unsafe_registered},
        {"unsafe-own", unsafe_own},
        {"unsafe-inline", unsafe_inline},
        {"stdio-exec", stdio_exec},
        {"stdio-prepared", stdio_prepared},
        {"atfork-order", atfork_order},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(mode, modes[i].name) == 0)
            return modes[i].fn();
    if (strcmp(mode, "cond") == 0 || strcmp(mode, "cond-timed") == 0)
        return cond_mode(mode[4] == '-');
    if (strcmp(mode, "unsafe") == 0)
        return unsafe_mode(3, 0);
    if (strcmp(mode, "unsafe-child-threads") == 0 ||
        strcmp(mode, "unsafe-child-thread-parents") == 0)
        return unsafe_child_threads(mode[19] == '-');
    if (strncmp(mode, "unsafe-nested-", 14) == 0)
        return unsafe_nested(mode + 14);
    if (strcmp(mode, "unsafe-exec") == 0)
        return unsafe_mode(1, 1);
    if (strcmp(mode, "shared-runon") == 0 || strcmp(mode, "shared-exit") == 0)
        return shared_mode(mode[7] == 'r');
    return 2;
}
