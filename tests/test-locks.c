/* SPDX-License-Identifier: MIT */
/*
 * test-locks.c: every lock kind, free and held by the forking thread (with
 * its recursion depth), across fork() and forksafe_fork(), with another
 * thread alive, on whichever platform layer the library uses. Each case
 * expects what docs/platforms.md promises for that layer: the lock kept
 * (usable, same type and depth, in the child and the parent), or the fork
 * refused with a documented error before anything is corrupted.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum cls { MUTEX, RWLOCK, SPIN };
enum type { NORMAL, ERRORCHECK, RECURSIVE, ADAPTIVE };
enum proto { NONE, PI, PP };

struct lcase {
    const char *name;
    enum cls cls;
    enum type type; /* mutexes */
    int robust;
    enum proto proto;
    int rwkind; /* rwlocks: 0 prefer-reader, 1 prefer-writer, 2 ...-nonrec */
};

static const struct lcase cases[] = {
    {"normal", MUTEX, NORMAL, 0, NONE, 0},
    {"errorcheck", MUTEX, ERRORCHECK, 0, NONE, 0},
    {"recursive", MUTEX, RECURSIVE, 0, NONE, 0},
#ifdef __GLIBC__
    {"adaptive", MUTEX, ADAPTIVE, 0, NONE, 0},
#endif
    {"robust-normal", MUTEX, NORMAL, 1, NONE, 0},
    {"robust-errorcheck", MUTEX, ERRORCHECK, 1, NONE, 0},
    {"robust-recursive", MUTEX, RECURSIVE, 1, NONE, 0},
    {"pi-normal", MUTEX, NORMAL, 0, PI, 0},
    {"pi-errorcheck", MUTEX, ERRORCHECK, 0, PI, 0},
    {"pi-recursive", MUTEX, RECURSIVE, 0, PI, 0},
    {"robust-pi-errorcheck", MUTEX, ERRORCHECK, 1, PI, 0},
#ifdef __GLIBC__ /* musl has no priority-protect protocol */
    {"pp-normal", MUTEX, NORMAL, 0, PP, 0},
    {"pp-errorcheck", MUTEX, ERRORCHECK, 0, PP, 0},
    {"pp-recursive", MUTEX, RECURSIVE, 0, PP, 0},
#endif
    {"rwlock", RWLOCK, 0, 0, NONE, 0},
#ifdef __GLIBC__ /* pthread_rwlockattr_setkind_np */
    {"rwlock-prefer-writer", RWLOCK, 0, 0, NONE, 1},
    {"rwlock-prefer-writer-nonrecursive", RWLOCK, 0, 0, NONE, 2},
#endif
    {"spinlock", SPIN, 0, 0, NONE, 0},
};

union lock {
    pthread_mutex_t m;
    pthread_rwlock_t rw;
    pthread_spinlock_t s;
};

/* What the layer in use promises for a case (docs/platforms.md). */
enum outcome {
    KEEP,    /* both processes get the lock as it was, type intact */
    NOTSUP,  /* forksafe_fork fails with ENOTSUP, nothing taken */
    DEADLK,  /* forksafe_fork fails with EDEADLK, nothing taken */
    TIMEOUT, /* the holder is unknown: ETIMEDOUT at the deadline */
};

static enum outcome expect(const struct lcase *c, int held)
{
    if (c->cls == SPIN)
        return held ? TIMEOUT : KEEP; /* no libc records a spinlock owner */
    if (fs_layer_is("glibc"))
        return KEEP;
    if (fs_layer_is("musl")) {
        /* Plain normal mutexes and rwlocks record no owner. */
        int named = c->cls == MUTEX &&
                    (c->type != NORMAL || c->robust || c->proto != NONE);
        return held && !named ? TIMEOUT : KEEP;
    }
    /* posix */
    if (c->cls == RWLOCK) {
#ifdef __GLIBC__
        return held ? DEADLK : KEEP; /* glibc's wrlock sees its own writer */
#else
        return held ? TIMEOUT : KEEP;
#endif
    }
    switch (c->type) {
    case ERRORCHECK:
        return held ? DEADLK : NOTSUP;
    case RECURSIVE:
        return NOTSUP; /* relocking it succeeds: held or not, it nests */
    default:
        if (held)
            return TIMEOUT;
        /* PP: getprioceiling tells it. Robust and PI: another thread
           cannot release them, which the layer tries before the fork. */
        return c->proto != NONE || c->robust ? NOTSUP : KEEP;
    }
}

static int init_lock(union lock *l, const struct lcase *c)
{
    if (c->cls == SPIN)
        return pthread_spin_init(&l->s, PTHREAD_PROCESS_PRIVATE);
    if (c->cls == RWLOCK) {
        pthread_rwlockattr_t a;
        pthread_rwlockattr_init(&a);
#ifdef __GLIBC__
        static const int kinds[] = {
            PTHREAD_RWLOCK_PREFER_READER_NP, PTHREAD_RWLOCK_PREFER_WRITER_NP,
            PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP};
        pthread_rwlockattr_setkind_np(&a, kinds[c->rwkind]);
#endif
        int r = pthread_rwlock_init(&l->rw, &a);
        pthread_rwlockattr_destroy(&a);
        return r;
    }
    static const int types[] = {PTHREAD_MUTEX_NORMAL, PTHREAD_MUTEX_ERRORCHECK,
                                PTHREAD_MUTEX_RECURSIVE,
#ifdef __GLIBC__
                                PTHREAD_MUTEX_ADAPTIVE_NP
#else
                                PTHREAD_MUTEX_NORMAL
#endif
    };
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    int r = pthread_mutexattr_settype(&a, types[c->type]);
    if (!r && c->robust)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!r && c->proto == PI)
        r = pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
#ifdef __GLIBC__
    if (!r && c->proto == PP) {
        r = pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_PROTECT);
        if (!r)
            r = pthread_mutexattr_setprioceiling(
                &a, sched_get_priority_min(SCHED_FIFO));
    }
#endif
    if (!r)
        r = pthread_mutex_init(&l->m, &a);
    pthread_mutexattr_destroy(&a);
    return r;
}

static int take(union lock *l, const struct lcase *c)
{
    return c->cls == MUTEX    ? pthread_mutex_lock(&l->m)
           : c->cls == RWLOCK ? pthread_rwlock_wrlock(&l->rw)
                              : pthread_spin_lock(&l->s);
}

static int reg(union lock *l, const struct lcase *c)
{
    return c->cls == MUTEX    ? forksafe_register_mutex(&l->m, c->name, 100)
           : c->cls == RWLOCK ? forksafe_register_rwlock(&l->rw, c->name, 100)
                              : forksafe_register_spinlock(&l->s, c->name, 100);
}

static void destroy(union lock *l, const struct lcase *c)
{
    if (c->cls == MUTEX)
        pthread_mutex_destroy(&l->m);
    else if (c->cls == RWLOCK)
        pthread_rwlock_destroy(&l->rw);
    else
        pthread_spin_destroy(&l->s);
}

/* ---- checks: 0, or the line of the first failed check (usable as a
   child's exit status) ---- */

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x))                                                              \
            return __LINE__ % 250 + 1;                                         \
    } while (0)

static void *lock_and_die(void *arg)
{
    pthread_mutex_lock(arg);
    return NULL; /* exits holding it: a robust mutex becomes EOWNERDEAD */
}

/* m behaves as its type says, given that the calling thread holds it
   depth times (0: free). Leaves it free. */
static int check_mutex(pthread_mutex_t *m, const struct lcase *c, int depth)
{
    if (depth == 0) {
        CHECK(pthread_mutex_trylock(m) == 0);
        depth = 1;
    }
    if (c->type == ERRORCHECK)
        CHECK(pthread_mutex_lock(m) == EDEADLK);
    if (c->type == RECURSIVE) {
        CHECK(pthread_mutex_lock(m) == 0); /* nests */
        depth++;
        for (int i = 0; i < depth; i++)
            CHECK(pthread_mutex_unlock(m) == 0);
        CHECK(pthread_mutex_unlock(m) == EPERM); /* depth was exact */
    } else {
        CHECK(pthread_mutex_unlock(m) == 0);
        if (c->type == ERRORCHECK)
            CHECK(pthread_mutex_unlock(m) == EPERM);
    }
    /* Free now, for this thread and others. */
    CHECK(pthread_mutex_trylock(m) == 0);
    CHECK(pthread_mutex_unlock(m) == 0);
    if (c->robust) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, lock_and_die, m) == 0);
        pthread_join(t, NULL);
        CHECK(pthread_mutex_lock(m) == EOWNERDEAD);
        CHECK(pthread_mutex_consistent(m) == 0);
        CHECK(pthread_mutex_unlock(m) == 0);
    }
    return 0;
}

#ifdef __GLIBC__
/* Writer preference, seen from outside: with a reader in and a writer
   waiting, a new reader is turned away. */
static pthread_rwlock_t *pref_lock;
static volatile int pref_writer_in;

static void *pref_writer(void *arg)
{
    (void)arg;
    pthread_rwlock_wrlock(pref_lock);
    pref_writer_in = 1;
    pthread_rwlock_unlock(pref_lock);
    return NULL;
}

static int prefers_writers(pthread_rwlock_t *l)
{
    pref_lock = l;
    pref_writer_in = 0;
    CHECK(pthread_rwlock_rdlock(l) == 0);
    pthread_t w;
    CHECK(pthread_create(&w, NULL, pref_writer, NULL) == 0);
    int turned_away = 0;
    for (int i = 0; i < 3000 && !turned_away; i++) {
        /* The writer queues up at some point; until then readers get in. */
        if (pthread_rwlock_tryrdlock(l) == 0)
            pthread_rwlock_unlock(l);
        else
            turned_away = 1;
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
    pthread_rwlock_unlock(l);
    pthread_join(w, NULL);
    CHECK(pref_writer_in);
    return turned_away;
}
#endif

/* An rwlock usable for readers and writers, write_held: held for writing
   by the caller. Leaves it free. kind: whether its preference must have
   survived too. */
static int check_rwlock(pthread_rwlock_t *l, const struct lcase *c,
                        int write_held, int kind)
{
    if (write_held) {
#ifdef __GLIBC__
        CHECK(pthread_rwlock_rdlock(l) == EDEADLK); /* its own writer */
#endif
        CHECK(pthread_rwlock_tryrdlock(l) == EBUSY);
        CHECK(pthread_rwlock_unlock(l) == 0);
    }
    CHECK(pthread_rwlock_trywrlock(l) == 0);
    CHECK(pthread_rwlock_unlock(l) == 0);
    CHECK(pthread_rwlock_tryrdlock(l) == 0);
    CHECK(pthread_rwlock_tryrdlock(l) == 0);
    CHECK(pthread_rwlock_trywrlock(l) == EBUSY);
    CHECK(pthread_rwlock_unlock(l) == 0);
    CHECK(pthread_rwlock_unlock(l) == 0);
    CHECK(pthread_rwlock_trywrlock(l) == 0);
    CHECK(pthread_rwlock_unlock(l) == 0);
#ifdef __GLIBC__
    if (kind && c->rwkind == 2)
        CHECK(prefers_writers(l)); /* 1 is recursive: readers still win */
#else
    (void)c;
    (void)kind;
#endif
    return 0;
}

static int check_spin(pthread_spinlock_t *l, int held)
{
    if (held)
        CHECK(pthread_spin_unlock(l) == 0);
    CHECK(pthread_spin_trylock(l) == 0);
    CHECK(pthread_spin_trylock(l) == EBUSY);
    CHECK(pthread_spin_unlock(l) == 0);
    return 0;
}

static int check_lock(union lock *l, const struct lcase *c, int depth, int kind)
{
    return c->cls == MUTEX    ? check_mutex(&l->m, c, depth)
           : c->cls == RWLOCK ? check_rwlock(&l->rw, c, depth > 0, kind)
                              : check_spin(&l->s, depth > 0);
}

/* ---- the matrix ---- */

static pid_t do_fork(int wrapper, unsigned timeout_ms)
{
    if (!wrapper)
        return fork();
    struct forksafe_fork_opts o = {.timeout_ms = timeout_ms};
    return forksafe_fork(&o);
}

static unsigned long plain_failures(void)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(forksafe_audit_write(fileno(f), FORKSAFE_AUDIT_JSON), 0);
    char line[1024];
    unsigned long n = 0;
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        static const char key[] = "\"plain_fork_failures\": {\"count\": ";
        const char *p = strstr(line, key);
        if (p)
            n = strtoul(p + sizeof key - 1, NULL, 10);
    }
    fclose(f);
    return n;
}

static int rt_ok = -1; /* whether this thread may run SCHED_FIFO (PP locks) */

static int enter_rt(void)
{
    struct sched_param sp = {.sched_priority =
                                 sched_get_priority_min(SCHED_FIFO)};
    return pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
}

static void leave_rt(void)
{
    struct sched_param sp = {.sched_priority = 0};
    pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);
}

static void run_case(const struct lcase *c, int held, int wrapper)
{
    enum outcome want = expect(c, held);
    int depth = held ? (c->cls == MUTEX && c->type == RECURSIVE ? 3 : 1) : 0;
    char what[128];
    snprintf(what, sizeof what, "%s, %s, %s", c->name,
             held ? "held by the forker" : "free",
             wrapper ? "forksafe_fork" : "fork");
    /* A plain fork() cannot fail: it would wait the default deadline for a
       lock the layer cannot attribute. test-fork covers that path. */
    if (!wrapper && want == TIMEOUT)
        return;
    if (c->proto == PP) {
        /* Taking a priority-protect mutex raises the thread to its ceiling,
           which needs a real-time policy (and the right to it). */
        if (rt_ok < 0) {
            rt_ok = enter_rt() == 0;
            if (rt_ok)
                leave_rt();
            else
                print_message("    (priority-protect cases skipped: no "
                              "SCHED_FIFO here)\n");
        }
        if (!rt_ok)
            return;
        assert_int_equal(enter_rt(), 0);
    }

    union lock l;
    memset(&l, 0, sizeof l);
    assert_int_equal(init_lock(&l, c), 0);
    assert_int_equal(reg(&l, c), 0);
    for (int d = 0; d < depth; d++)
        assert_int_equal(take(&l, c), 0);
    unsigned long failures0 = plain_failures();
    uint64_t t0 = fs_now_ms();
    pid_t pid = do_fork(wrapper, 300);
    int err = errno;
    uint64_t took = fs_now_ms() - t0;
    if (pid == 0) {
        /* The POSIX layer cannot read an rwlock's attributes back: it
           rebuilds it with the default ones (docs/platforms.md). */
        int kind = !fs_layer_is("posix");
        int code = want == KEEP ? check_lock(&l, c, depth, kind) : 0;
        /* Also what glibc's destroy checks (no users left): the child
           handler frees mutexes with plain stores. */
        if (code == 0 && want == KEEP && c->cls == MUTEX &&
            pthread_mutex_destroy(&l.m) != 0)
            code = 251;
        _exit(code);
    }
    /* Failures are collected, so the lock is always unregistered (it lives
       on this stack frame) before the test fails. */
    char bad[512] = "";
    if (want == KEEP || !wrapper) {
        int code = -1;
        enum fs_wait_result r = pid > 0 ? fs_wait(pid, 10000, &code) : FS_HUNG;
        if (pid < 0)
            snprintf(bad, sizeof bad, "fork failed: %s (%s)", strerror(err),
                     forksafe_last_error());
        else if (r != FS_EXITED || code != 0)
            snprintf(bad, sizeof bad, "child %s %d",
                     r == FS_HUNG     ? "hung"
                     : r == FS_EXITED ? "failed at line"
                                      : "died of signal",
                     code);
        else if (!wrapper && want != KEEP && plain_failures() != failures0 + 1)
            snprintf(bad, sizeof bad, "the refused entry was not recorded");
    } else {
        int want_err = want == NOTSUP   ? ENOTSUP
                       : want == DEADLK ? EDEADLK
                                        : ETIMEDOUT;
        if (pid > 0) {
            int code;
            fs_wait(pid, 5000, &code);
            snprintf(bad, sizeof bad,
                     "forksafe_fork succeeded where it must fail");
        } else if (err != want_err)
            snprintf(bad, sizeof bad,
                     "forksafe_fork failed with %s, not %s (%s)", strerror(err),
                     strerror(want_err), forksafe_last_error());
        else if (!strstr(forksafe_last_error(), c->name))
            snprintf(bad, sizeof bad, "the error does not name the lock: %s",
                     forksafe_last_error());
        else if (want != TIMEOUT && took > 250)
            snprintf(bad, sizeof bad, "refused after %llu ms, not at once",
                     (unsigned long long)took);
    }
    /* The parent's lock is as it was, whatever happened. */
    int pcode = check_lock(&l, c, depth, 0);
    if (pcode && !bad[0])
        snprintf(bad, sizeof bad, "parent failed at line %d", pcode);
    forksafe_unregister(&l);
    if (!pcode)
        destroy(&l, c);
    if (c->proto == PP)
        leave_rt();
    if (bad[0])
        fail_msg("%s: %s", what, bad);
}

static void run_all(int held, int wrapper)
{
    fs_idle_start();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], held, wrapper);
    fs_idle_stop();
}

static void test_free_fork(void **s)
{
    (void)s;
    run_all(0, 0);
}
static void test_free_wrapper(void **s)
{
    (void)s;
    run_all(0, 1);
}
static void test_held_fork(void **s)
{
    (void)s;
    run_all(1, 0);
}
static void test_held_wrapper(void **s)
{
    (void)s;
    run_all(1, 1);
}

/* A read lock held by the forking thread cannot be told apart from another
   thread's on any layer: with other threads alive, forksafe_fork fails
   within its timeout and says why; nothing stays held. */
static void test_rwlock_read_held_times_out(void **state)
{
    (void)state;
    fs_idle_start();
    pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
    assert_int_equal(forksafe_register_rwlock(&l, "read-held", 100), 0);
    assert_int_equal(pthread_rwlock_rdlock(&l), 0);
    struct forksafe_fork_opts o = {.timeout_ms = 150};
    uint64_t took;
    assert_int_equal(fs_fork_must_fail(&o, &took), ETIMEDOUT);
    assert_true(took >= 140 && took < 2000);
    assert_non_null(strstr(forksafe_last_error(), "\"read-held\""));
    if (!fs_layer_is("posix"))
        assert_non_null(strstr(forksafe_last_error(), "held for reading"));
    assert_int_equal(pthread_rwlock_unlock(&l), 0);
    assert_int_equal(pthread_rwlock_trywrlock(&l), 0); /* nothing left held */
    assert_int_equal(pthread_rwlock_unlock(&l), 0);
    assert_int_equal(forksafe_unregister(&l), 0);
    fs_idle_stop();
}

/* Once the process is down to one thread, a read lock it holds is known to
   be its own, and the child inherits exactly that read count. */
static void test_rwlock_read_held_single_thread(void **state)
{
    (void)state;
    pid_t outer = fork(); /* a process with a single thread */
    assert_true(outer >= 0);
    if (outer == 0) {
        pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
        if (forksafe_register_rwlock(&l, "rd", 100))
            _exit(2);
        pthread_rwlock_rdlock(&l);
        pthread_rwlock_rdlock(&l);
        pid_t pid = forksafe_fork(NULL);
        if (pid < 0)
            _exit(3);
        int bad = 0;
        bad |= pthread_rwlock_trywrlock(&l) != EBUSY;
        bad |= pthread_rwlock_unlock(&l) != 0;
        bad |= pthread_rwlock_unlock(&l) != 0;
        bad |= pthread_rwlock_trywrlock(&l) != 0;
        if (pid == 0)
            _exit(bad ? 4 : 0);
        int code;
        _exit(fs_wait(pid, 5000, &code) == FS_EXITED && code == 0 && !bad ? 0
                                                                          : 5);
    }
    fs_assert_child_ok(outer, 10000);
}

/* With no other thread alive, a busy lock is the forking thread's own (or
   a dead thread's): it is kept as it is, unless the layer could not hand
   it to the child. The POSIX layer refuses what another thread cannot
   release: a robust or PI mutex held by the forker (docs/platforms.md). */
static enum outcome expect_single(const struct lcase *c)
{
    if (!fs_layer_is("posix") || c->cls == SPIN)
        return KEEP;
    if (c->cls == RWLOCK) {
#ifdef __GLIBC__
        return DEADLK;
#else
        return KEEP;
#endif
    }
    if (c->type == ERRORCHECK)
        return DEADLK;
    if (c->type == RECURSIVE)
        return NOTSUP;
    return c->robust || c->proto != NONE ? DEADLK : KEEP;
}

static void test_held_single_thread(void **state)
{
    (void)state;
    pid_t outer = fork();
    assert_true(outer >= 0);
    if (outer == 0) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const struct lcase *c = &cases[i];
            enum outcome want = expect_single(c);
            if (c->proto == PP)
                continue;
            union lock l;
            memset(&l, 0, sizeof l);
            int depth = c->cls == MUTEX && c->type == RECURSIVE ? 3 : 1;
            if (init_lock(&l, c) || reg(&l, c))
                _exit(2);
            for (int d = 0; d < depth; d++)
                take(&l, c);
            pid_t pid = forksafe_fork(NULL);
            if (want != KEEP) {
                int want_err = want == NOTSUP ? ENOTSUP : EDEADLK;
                if (pid == 0)
                    _exit(0);
                if (pid > 0 || errno != want_err) {
                    fprintf(stderr, "%s: forksafe_fork = %d (%s), not %s\n",
                            c->name, (int)pid, strerror(errno),
                            strerror(want_err));
                    _exit(6);
                }
            } else {
                if (pid < 0) {
                    fprintf(stderr, "%s: %s\n", c->name, forksafe_last_error());
                    _exit(3);
                }
                if (pid == 0)
                    _exit(check_lock(&l, c, depth, 0));
                int code;
                if (fs_wait(pid, 5000, &code) != FS_EXITED || code != 0) {
                    fprintf(stderr, "%s: child failed at line %d\n", c->name,
                            code);
                    _exit(4);
                }
            }
            if (check_lock(&l, c, depth, 0)) {
                fprintf(stderr, "%s: parent check failed\n", c->name);
                _exit(5);
            }
            forksafe_unregister(&l);
        }
        _exit(0);
    }
    fs_assert_child_ok(outer, 20000);
}

/* A thread the program has just joined has exited for the program, but the
   kernel counts it in /proc/self/stat until it has released it, a moment
   after pthread_join() returned. A lock the forking thread holds itself and
   whose holder no libc records (a spinlock) is kept only when no other
   thread is alive: right after a join it must still be kept, not waited
   for until the deadline. Likewise
   FORKSAFE_FORK_NO_THREADS right after a join must not say EBUSY. */
static void *returns(void *arg)
{
    return arg;
}

static void test_held_right_after_a_join(void **state)
{
    (void)state;
    pid_t outer = fork();
    assert_true(outer >= 0);
    if (outer == 0) {
        enum { FORKS = 2000 };
        pthread_spinlock_t s;
        if (pthread_spin_init(&s, PTHREAD_PROCESS_PRIVATE) ||
            forksafe_register_spinlock(&s, "held", 100))
            _exit(2);
        struct forksafe_fork_opts held = {.timeout_ms = 100};
        struct forksafe_fork_opts alone = {.flags = FORKSAFE_FORK_NO_THREADS};
        int timed_out = 0, busy = 0;
        for (int i = 0; i < 2 * FORKS; i++) {
            int with_lock = i < FORKS;
            /* Joined as soon as it is gone for the program: the kernel
               clears the TID word (what pthread_join() waits for) a few
               steps into the thread's exit. */
            pthread_t t;
            if (pthread_create(&t, NULL, returns, NULL) != 0)
                _exit(3);
            int j;
            while ((j = pthread_tryjoin_np(t, NULL)) == EBUSY)
                ;
            if (j != 0)
                _exit(3);
            if (with_lock)
                pthread_spin_lock(&s);
            pid_t pid = forksafe_fork(with_lock ? &held : &alone);
            if (pid == 0)
                _exit(with_lock && pthread_spin_trylock(&s) != EBUSY ? 1 : 0);
            if (with_lock)
                pthread_spin_unlock(&s);
            if (pid < 0) {
                if (errno == ETIMEDOUT && with_lock)
                    timed_out++;
                else if (errno == EBUSY && !with_lock)
                    busy++;
                else
                    _exit(4);
                continue;
            }
            int code;
            if (fs_wait(pid, 5000, &code) != FS_EXITED || code != 0)
                _exit(5);
        }
        if (timed_out || busy)
            fprintf(stderr,
                    "right after a join: %d of %d forks with the spinlock "
                    "held timed out, %d of %d with NO_THREADS said EBUSY\n",
                    timed_out, FORKS, busy, FORKS);
        _exit(timed_out || busy ? 6 : 0);
    }
    fs_assert_child_ok(outer, 120000);
}

int main(void)
{
    fs_watchdog(240);
    print_message("platform layer: %s\n", fs_layer());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_fork),
        cmocka_unit_test(test_free_wrapper),
        cmocka_unit_test(test_held_fork),
        cmocka_unit_test(test_held_wrapper),
        cmocka_unit_test(test_rwlock_read_held_times_out),
        cmocka_unit_test(test_rwlock_read_held_single_thread),
        cmocka_unit_test(test_held_single_thread),
        cmocka_unit_test(test_held_right_after_a_join),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
