/* SPDX-License-Identifier: MIT */
/*
 * test-platform.c: what the platform layer reads from a C library's locks,
 * seen through the report (which lock is held, by which thread, of which
 * type) for every lock kind, free, held by this thread and held by
 * another; and the layer's run-time self-check: it passes on this libc,
 * and when a step of it is made to read something else (a simulated
 * future libc), the process falls back to the POSIX layer, says so in the
 * report, and refuses what that layer cannot do instead of corrupting it.
 * Linked statically, for the test hook (platform/platform.h).
 */
#include "common.h"

#include "forksafe.h"
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<linux/filter.h>) && __has_include(<linux/seccomp.h>) &&     \
    __has_include(<linux/audit.h>)
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#define HAVE_SECCOMP_HEADERS 1
#endif
#endif

extern char **environ;

/* The report as JSON, malloc'd. */
static char *report(void)
{
    FILE *f = tmpfile();
    if (!f || forksafe_audit_write(fileno(f), FORKSAFE_AUDIT_JSON) != 0)
        abort();
    long n = ftell(f);
    char *b = calloc(1, (size_t)n + 1);
    rewind(f);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n)
        abort();
    fclose(f);
    return b;
}

/* The report's line for entry name: held ("true", "false", "null"),
   holder TID (0 if none) and type. */
struct seen {
    char held[8];
    int tid;
    char type[64];
};

static void entry(const char *name, struct seen *s)
{
    char *r = report();
    char key[96];
    snprintf(key, sizeof key, "{\"name\": \"%s\",", name);
    char *p = strstr(r, key);
    if (!p)
        fail_msg("no entry %s in the report:\n%s", name, r);
    memset(s, 0, sizeof *s);
    const char *t = strstr(p, "\"type\": \"");
    const char *h = strstr(p, "\"held\": ");
    if (!t || !h || sscanf(t + 9, "%63[^\"]", s->type) != 1 ||
        sscanf(h + 8, "%7[a-z]", s->held) != 1)
        fail_msg("bad entry: %.300s", p);
    const char *tid = strstr(h, "\"holder\": {\"tid\": ");
    const char *eol = strchr(p, '\n');
    if (tid && (!eol || tid < eol))
        s->tid = atoi(tid + 18);
    free(r);
}

/* ---- the reads, for each kind ---- */

enum cls { MUTEX, RWLOCK, SPIN };

struct kind {
    const char *name;
    enum cls cls;
    int type, robust, pi;
    const char *type_name; /* as the glibc and musl layers name it */
    int named_on_musl;     /* musl records the holder */
};

static const struct kind kinds[] = {
    {"k-normal", MUTEX, PTHREAD_MUTEX_NORMAL, 0, 0, "normal", 0},
    {"k-errorcheck", MUTEX, PTHREAD_MUTEX_ERRORCHECK, 0, 0, "errorcheck", 1},
    {"k-recursive", MUTEX, PTHREAD_MUTEX_RECURSIVE, 0, 0, "recursive", 1},
#ifdef __GLIBC__
    {"k-adaptive", MUTEX, PTHREAD_MUTEX_ADAPTIVE_NP, 0, 0, "adaptive", 0},
#endif
    {"k-robust", MUTEX, PTHREAD_MUTEX_NORMAL, 1, 0, "normal,robust", 1},
    {"k-pi-recursive", MUTEX, PTHREAD_MUTEX_RECURSIVE, 0, 1, "recursive,pi", 1},
    {"k-robust-pi-ec", MUTEX, PTHREAD_MUTEX_ERRORCHECK, 1, 1,
     "errorcheck,robust,pi", 1},
    {"k-rwlock", RWLOCK, 0, 0, 0, "prefer-reader", 0},
    {"k-spin", SPIN, 0, 0, 0, "spin", 0},
};

union lock {
    pthread_mutex_t m;
    pthread_rwlock_t rw;
    pthread_spinlock_t s;
};

static void init(union lock *l, const struct kind *k)
{
    if (k->cls == SPIN) {
        assert_int_equal(pthread_spin_init(&l->s, 0), 0);
        assert_int_equal(forksafe_register_spinlock(&l->s, k->name, 10), 0);
        return;
    }
    if (k->cls == RWLOCK) {
        assert_int_equal(pthread_rwlock_init(&l->rw, NULL), 0);
        assert_int_equal(forksafe_register_rwlock(&l->rw, k->name, 10), 0);
        return;
    }
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    assert_int_equal(pthread_mutexattr_settype(&a, k->type), 0);
    if (k->robust)
        assert_int_equal(pthread_mutexattr_setrobust(&a, 1), 0);
    if (k->pi)
        assert_int_equal(
            pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT), 0);
    assert_int_equal(pthread_mutex_init(&l->m, &a), 0);
    pthread_mutexattr_destroy(&a);
    assert_int_equal(forksafe_register_mutex(&l->m, k->name, 10), 0);
}

static void take(union lock *l, const struct kind *k)
{
    if (k->cls == SPIN)
        pthread_spin_lock(&l->s);
    else if (k->cls == RWLOCK)
        pthread_rwlock_wrlock(&l->rw);
    else
        pthread_mutex_lock(&l->m);
}

static void give(union lock *l, const struct kind *k)
{
    if (k->cls == SPIN)
        pthread_spin_unlock(&l->s);
    else if (k->cls == RWLOCK)
        pthread_rwlock_unlock(&l->rw);
    else
        pthread_mutex_unlock(&l->m);
}

struct other {
    union lock *l;
    const struct kind *k;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; /* 1: holding, 2: told to release */
    pid_t tid;
};

static void *other_main(void *arg)
{
    struct other *o = arg;
    take(o->l, o->k);
    pthread_mutex_lock(&o->mu);
    o->tid = gettid();
    o->state = 1;
    pthread_cond_broadcast(&o->cv);
    while (o->state != 2)
        pthread_cond_wait(&o->cv, &o->mu);
    pthread_mutex_unlock(&o->mu);
    give(o->l, o->k);
    return NULL;
}

/* What the report must say about k held by tid (0: free), on this layer. */
static void expect_seen(const struct kind *k, pid_t tid)
{
    struct seen s;
    entry(k->name, &s);
    const char *layer = fs_layer();
    const char *held = tid ? "true" : "false", *type = k->type_name;
    int named =
        k->cls == MUTEX && (strcmp(layer, "glibc") == 0 || k->named_on_musl);
    if (k->cls == RWLOCK && strcmp(layer, "glibc") == 0)
        named = 1; /* glibc records the writer */
    if (strcmp(layer, "posix") == 0) {
        /* It reads nothing: not even whether the lock is held. */
        held = "null";
        named = 0;
        if (k->cls != SPIN)
            type = "unknown";
    }
    int want_tid = tid && named ? tid : 0;
    if (strcmp(s.held, held) != 0 || s.tid != want_tid ||
        strcmp(s.type, type) != 0)
        fail_msg("%s %s: the report says held %s, holder %d, type %s; "
                 "expected %s, %d, %s",
                 k->name, tid ? "held" : "free", s.held, s.tid, s.type, held,
                 want_tid, type);
}

static void test_reads(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const struct kind *k = &kinds[i];
        union lock l;
        init(&l, k);
        expect_seen(k, 0);
        take(&l, k);
        expect_seen(k, gettid());
        give(&l, k);
        expect_seen(k, 0);

        struct other o = {
            &l, k, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, other_main, &o), 0);
        pthread_mutex_lock(&o.mu);
        while (o.state != 1)
            pthread_cond_wait(&o.cv, &o.mu);
        pthread_mutex_unlock(&o.mu);
        expect_seen(k, o.tid);
        pthread_mutex_lock(&o.mu);
        o.state = 2;
        pthread_cond_broadcast(&o.cv);
        pthread_mutex_unlock(&o.mu);
        pthread_join(t, NULL);
        expect_seen(k, 0);
        assert_int_equal(forksafe_unregister(&l), 0);
    }
}

/* ---- the self-check ---- */

/* The layer the build chose; the report says which one runs. */
static void test_build_layer_in_use(void **state)
{
    (void)state;
    char *r = report();
    char want[64];
    snprintf(want, sizeof want, "\"layer\": \"%s\"", FS_BUILD_LAYER);
    if (!strstr(r, want) || !strstr(r, "\"fallback\": null"))
        fail_msg("expected the %s layer, no fallback:\n%s", FS_BUILD_LAYER, r);
    free(r);
}

/* In a process of its own (started with posix_spawn, so the parent's fork
   handlers never pick a layer first): corrupt what the check reads at
   step `step`, then use forksafe, and print the report. */
static const char *tamper_step;
static int tamper_done;

static void tamper(const char *step, void *lock)
{
    if (strcmp(step, tamper_step) != 0)
        return;
    tamper_done = 1;
    /* A simulated future libc: the field the step reads means something
       else. Only the check's private copy of its scratch lock is touched. */
    size_t size = strncmp(step, "rwlock", 6) == 0 ? sizeof(pthread_rwlock_t)
                                                  : sizeof(pthread_mutex_t);
    if (strstr(step, "kind")) {
        /* Every bit of the lock flipped: garbage where the kind was. */
        unsigned char *b = lock;
        for (size_t i = 0; i < size; i++)
            b[i] ^= 0x5a;
    } else {
        /* Every int of the lock off by one: the owner, count or writer
           field reads as another thread or depth. */
        int *w = lock;
        for (size_t i = 0; i < size / sizeof(int); i++)
            w[i] += 1;
    }
}

static int tampered_child(const char *step)
{
    tamper_step = step;
    forksafe__platform_check_hook = tamper;
    pthread_mutex_t plain = PTHREAD_MUTEX_INITIALIZER, rec;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec, &a);
    if (forksafe_register_mutex(&plain, "plain", 10))
        return 10;
    forksafe_audit_write(1, FORKSAFE_AUDIT_JSON);
    if (!tamper_done)
        return 11;
    /* The POSIX layer's promises hold: a normal mutex goes through a fork,
       a recursive one is refused (it would need the libc's internals). */
    fs_idle_start();
    pid_t pid = forksafe_fork(NULL);
    if (pid == 0)
        _exit(pthread_mutex_trylock(&plain) == 0 ? 0 : 1);
    int code;
    if (pid < 0 || fs_wait(pid, 5000, &code) != FS_EXITED || code != 0)
        return 12;
    if (forksafe_register_mutex(&rec, "recursive", 20))
        return 13;
    pid = forksafe_fork(NULL);
    if (pid == 0)
        _exit(0);
    if (pid >= 0 || errno != ENOTSUP ||
        !strstr(forksafe_last_error(), "\"recursive\""))
        return 14;
    fs_idle_stop();
    return 0;
}

static void test_failed_check_falls_back(const char *step)
{
    if (strcmp(FS_BUILD_LAYER, "posix") == 0)
        skip(); /* the POSIX layer has nothing to check */
    int p[2];
    assert_int_equal(pipe(p), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    char *argv[] = {"test-platform", "--tampered", (char *)step, NULL};
    pid_t pid;
    assert_int_equal(
        posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    char out[16384];
    size_t n = 0;
    ssize_t r;
    while (n + 1 < sizeof out &&
           (r = read(p[0], out + n, sizeof out - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    int code = -1;
    assert_int_equal(fs_wait(pid, 20000, &code), FS_EXITED);
    if (code != 0)
        fail_msg("tampered process (%s) failed with %d:\n%s", step, code, out);
    char want[160];
    snprintf(want, sizeof want,
             "the %s layer's self-check failed (%s:", FS_BUILD_LAYER, step);
    if (!strstr(out, "\"layer\": \"posix\"") || !strstr(out, want))
        fail_msg("no fallback for %s:\n%s", step, out);
}

static void test_check_owner_tid(void **s)
{
    (void)s;
    test_failed_check_falls_back("owner TID after lock");
}
static void test_check_recursive_count(void **s)
{
    (void)s;
    test_failed_check_falls_back("count after recursive lock");
}
static void test_check_kind_bits(void **s)
{
    (void)s;
    test_failed_check_falls_back("kind bits of a new mutex");
}
static void test_check_rwlock_writer(void **s)
{
    (void)s;
    test_failed_check_falls_back("rwlock write-locked");
}

/* ---- a plain fork() meeting a forksafe_fork() in another thread ----

   Thread B holds registered errorcheck mutex `own` (a kind the glibc and
   musl layers keep when the forker holds it; the POSIX layer keeps no
   lock the forker holds, so there `own` is a normal mutex B leaves free)
   and calls forksafe_fork(); a callback of rank
   between makes its prepare slow, and while it sleeps the main thread
   calls fork(). Where the C library holds its handler lock across fork
   (musl), B cannot reach fork() until the main thread's fork is over, so
   that fork joins B's prepare: its child finds `taken` (which B's prepare
   took) free and `own` (B's own) still held. Elsewhere the plain fork
   waits for B's fork, then takes both itself. Either way nothing hangs
   and `taken` is free in every child. */
#ifdef __GLIBC__
#define LIBC_JOINS 0
#else
#define LIBC_JOINS 1 /* musl: src/thread/pthread_atfork.c */
#endif
static pthread_mutex_t j_own;
static pthread_mutex_t j_taken = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t j_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t j_cv = PTHREAD_COND_INITIALIZER;
static int j_in_prepare, j_b_done, j_b_holds;
static pid_t j_b_child;
static int j_b_code = -1, j_b_errno;
static char j_b_error[256];

static int slow_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    (void)deadline;
    pthread_mutex_lock(&j_mu);
    j_in_prepare = 1;
    pthread_cond_broadcast(&j_cv);
    pthread_mutex_unlock(&j_mu);
    struct timespec d = {0, 300 * 1000 * 1000};
    nanosleep(&d, NULL);
    return 0;
}

static void *wrapper_forker(void *arg)
{
    (void)arg;
    if (j_b_holds)
        pthread_mutex_lock(&j_own);
    struct forksafe_fork_opts o = {.timeout_ms = 10000};
    pid_t pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(pthread_mutex_trylock(&j_taken) == 0 ? 0 : 1);
    j_b_errno = pid < 0 ? errno : 0;
    if (pid < 0)
        snprintf(j_b_error, sizeof j_b_error, "%s", forksafe_last_error());
    if (j_b_holds)
        pthread_mutex_unlock(&j_own);
    j_b_child = pid;
    if (pid > 0 && fs_wait(pid, 10000, &j_b_code) != FS_EXITED)
        j_b_code = -2;
    pthread_mutex_lock(&j_mu);
    j_b_done = 1;
    pthread_cond_broadcast(&j_cv);
    pthread_mutex_unlock(&j_mu);
    return NULL;
}

static void test_plain_fork_beside_forksafe_fork(void **state)
{
    (void)state;
    static const struct forksafe_ops slow = {slow_prepare, NULL, NULL};
    j_b_holds = !fs_layer_is("posix");
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, j_b_holds ? PTHREAD_MUTEX_ERRORCHECK
                                            : PTHREAD_MUTEX_NORMAL);
    assert_int_equal(pthread_mutex_init(&j_own, &a), 0);
    pthread_mutexattr_destroy(&a);
    int joins = LIBC_JOINS;
    int ctx;
    assert_int_equal(forksafe_register_mutex(&j_own, "own", 10), 0);
    assert_int_equal(forksafe_register_ops(&ctx, "slow", 20, &slow), 0);
    assert_int_equal(forksafe_register_mutex(&j_taken, "taken", 30), 0);
    j_in_prepare = j_b_done = 0;
    pthread_t b;
    assert_int_equal(pthread_create(&b, NULL, wrapper_forker, NULL), 0);
    /* B's prepare must reach the slow callback; if forksafe_fork() fails
       before it, say why instead of waiting forever. */
    pthread_mutex_lock(&j_mu);
    while (!j_in_prepare && !j_b_done)
        pthread_cond_wait(&j_cv, &j_mu);
    int reached = j_in_prepare;
    pthread_mutex_unlock(&j_mu);
    if (!reached) {
        pthread_join(b, NULL);
        fail_msg("forksafe_fork() in thread B returned %d (%s) before its "
                 "prepare reached the slow callback: %s",
                 (int)j_b_child, strerror(j_b_errno), j_b_error);
    }
    pid_t pid = fork();
    if (pid == 0) {
        int taken_free = pthread_mutex_trylock(&j_taken) == 0;
        int own_held = pthread_mutex_trylock(&j_own) == EBUSY;
        _exit(!taken_free ? 1 : own_held == (joins && j_b_holds) ? 0 : 2);
    }
    assert_true(pid > 0);
    int code = -1;
    assert_int_equal(fs_wait(pid, 15000, &code), FS_EXITED);
    assert_int_equal(code, 0);
    pthread_join(b, NULL);
    assert_true(j_b_child > 0);
    assert_int_equal(j_b_code, 0);
    assert_int_equal(forksafe_unregister(&j_own), 0);
    assert_int_equal(forksafe_unregister(&ctx), 0);
    assert_int_equal(forksafe_unregister(&j_taken), 0);
    pthread_mutex_destroy(&j_own);
}

/* ---- the POSIX layer learns per registration ----

   The POSIX layer asks a helper thread, once per registered normal mutex,
   whether another thread can release it (robust and PI ones cannot), and
   remembers the answer. A mutex destroyed, made anew as a robust one at
   the same address and registered again must be asked again: refused on
   that layer, kept on the others. Seen failing with the layer's
   mutex_registered hook switched off. */
static pthread_mutex_t again;

static pid_t fork_and_check(void)
{
    struct forksafe_fork_opts o = {.timeout_ms = 2000};
    pid_t pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(pthread_mutex_trylock(&again) == 0 ? 0 : 1);
    if (pid > 0) {
        int code = -1;
        assert_int_equal(fs_wait(pid, 10000, &code), FS_EXITED);
        assert_int_equal(code, 0);
        assert_int_equal(pthread_mutex_trylock(&again), 0);
        assert_int_equal(pthread_mutex_unlock(&again), 0);
    }
    return pid;
}

static void test_reregistered_at_same_address(void **state)
{
    (void)state;
    fs_idle_start();
    assert_int_equal(pthread_mutex_init(&again, NULL), 0);
    assert_int_equal(forksafe_register_mutex(&again, "again", 10), 0);
    assert_true(fork_and_check() > 0);
    assert_true(fork_and_check() > 0); /* the remembered answer */
    assert_int_equal(forksafe_unregister(&again), 0);
    assert_int_equal(pthread_mutex_destroy(&again), 0);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    assert_int_equal(pthread_mutex_init(&again, &a), 0);
    pthread_mutexattr_destroy(&a);
    assert_int_equal(forksafe_register_mutex(&again, "again", 10), 0);
    pid_t pid = fork_and_check();
    int err = errno;
    if (fs_layer_is("posix")) {
        assert_true(pid < 0);
        assert_int_equal(err, ENOTSUP);
        assert_non_null(strstr(forksafe_last_error(), "robust"));
    } else {
        assert_true(pid > 0);
    }
    assert_int_equal(forksafe_unregister(&again), 0);
    pthread_mutex_destroy(&again);
    fs_idle_stop();
}

/* ---- the POSIX layer cannot start its helper thread ----

   In a process where no thread can be created (a seccomp filter makes
   clone3 ENOSYS and a clone() with CLONE_THREAD EAGAIN; fork() still
   works), the POSIX layer cannot ask whether another thread may release a
   normal mutex: forksafe_fork() is refused with EAGAIN, names the lock,
   and leaves it free. The other layers need no thread and fork. x86-64
   only (the filter checks the system call numbers of that ABI). */
static int deny_threads(void)
{
#if defined(HAVE_SECCOMP_HEADERS) && defined(__x86_64__) && defined(SYS_clone3)
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                 offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x00010000 /* CLONE_THREAD */, 0,
                 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -1;
    return 0;
#else
    return -1;
#endif
}

static void *nothing(void *arg)
{
    return arg;
}

static pthread_mutex_t nothread_mu = PTHREAD_MUTEX_INITIALIZER;

static void test_posix_probe_without_threads(void **state)
{
    (void)state;
#if !defined(HAVE_SECCOMP_HEADERS) || !defined(__x86_64__)
    skip();
#endif
    pid_t scenario = fork();
    assert_true(scenario >= 0);
    if (scenario == 0) {
        fs_idle_start(); /* another thread alive: the multi-threaded path */
        if (forksafe_register_mutex(&nothread_mu, "no-thread", 10) != 0)
            _exit(2);
        if (deny_threads() != 0)
            _exit(3);
        pthread_t t;
        if (pthread_create(&t, NULL, nothing, NULL) == 0)
            _exit(4); /* the filter does not work here */
        struct forksafe_fork_opts o = {.timeout_ms = 2000};
        pid_t pid = forksafe_fork(&o);
        int err = errno;
        if (pid == 0)
            _exit(pthread_mutex_trylock(&nothread_mu) == 0 ? 0 : 1);
        if (fs_layer_is("posix")) {
            if (pid >= 0 || err != EAGAIN) {
                fprintf(stderr, "forksafe_fork = %d (%s), not EAGAIN: %s\n",
                        (int)pid, strerror(err), forksafe_last_error());
                _exit(5);
            }
            if (!strstr(forksafe_last_error(), "no-thread")) {
                fprintf(stderr, "error: %s\n", forksafe_last_error());
                _exit(6);
            }
        } else {
            int code = -1;
            if (pid < 0 || fs_wait(pid, 10000, &code) != FS_EXITED || code)
                _exit(7);
        }
        /* Nothing stays held. */
        if (pthread_mutex_trylock(&nothread_mu) != 0)
            _exit(8);
        pthread_mutex_unlock(&nothread_mu);
        _exit(0);
    }
    fs_assert_child_ok(scenario, 20000);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--tampered") == 0)
        return tampered_child(argv[2]);
    fs_watchdog(120);
    print_message("platform layer: %s\n", fs_layer());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads),
        cmocka_unit_test(test_build_layer_in_use),
        cmocka_unit_test(test_check_owner_tid),
        cmocka_unit_test(test_check_recursive_count),
        cmocka_unit_test(test_check_kind_bits),
        cmocka_unit_test(test_check_rwlock_writer),
        cmocka_unit_test(test_plain_fork_beside_forksafe_fork),
        cmocka_unit_test(test_reregistered_at_same_address),
        cmocka_unit_test(test_posix_probe_without_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
