/* SPDX-License-Identifier: MIT */
/*
 * fork.c: the one pthread_atfork() triple, forksafe_fork(), deadlines and
 * the thread-local error text.
 *
 * DESIGN. Prepare walks the registry in ascending (rank, seq) and the parent
 * and child handlers walk it backwards, so every fork acquires in one global
 * order whatever order libraries registered in (glibc bug 19431 is what
 * registration order does). The same handlers serve a plain fork() made by
 * any code, which cannot fail: there a lock that does not yield by the
 * default deadline is recorded and skipped. forksafe_fork() runs prepare
 * itself, before calling fork(), so that it can fail cleanly: on any error
 * it releases what it took, in reverse order, and no child is created. The
 * registry lock is held from prepare to the end of the parent or child
 * handler; that serialises forks and makes registry changes wait.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000u

static unsigned default_timeout_ms = DEFAULT_TIMEOUT_MS;

/* Per-thread state of the fork in progress on this thread. */
static __thread struct {
    int in_fork;     /* holds the registry lock for a fork */
    int by_wrapper;  /* forksafe_fork() ran prepare; the handler must not */
    int parent_done; /* the parent handler ran for this fork */
    int nested;      /* a fork() made from inside one of our callbacks */
} tls;

static __thread char last_error[512];

/* Plain-fork failures, for the report. Guarded by the registry lock. */
static unsigned long plain_failures;
static char plain_failure_text[512];

int forksafe__in_fork(void)
{
    return tls.in_fork;
}

void forksafe__set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

const char *forksafe_last_error(void)
{
    return last_error;
}

void forksafe__deadline(struct timespec *ts, unsigned timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000u;
    ts->tv_nsec += (long)(timeout_ms % 1000u) * 1000000l;
    if (ts->tv_nsec >= 1000000000l) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000l;
    }
}

int forksafe__expired(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

unsigned forksafe__default_timeout_ms(void)
{
    return default_timeout_ms;
}

/* Describe why entry e stopped prepare, into last_error. Off the fast
   path: it reads /proc for the holder's name. */
static void describe_failure(const struct forksafe_entry *e, int err,
                             unsigned timeout_ms)
{
    const struct forksafe_kind_ops *k = &forksafe__kinds[e->kind];
    char obj[256], who[160] = "";
    forksafe__entry_object(e, obj, sizeof obj);
    if (e->kind == FS_KIND_OPS) {
        forksafe__set_error("%s \"%s\" (rank %u, registered by %s): prepare "
                            "callback failed: %s",
                            k->name, e->name, e->rank, obj, strerror(err));
        return;
    }
    pid_t h = k->holder(e->key);
    if (h > 0) {
        char tname[64];
        forksafe__thread_name(h, tname, sizeof tname);
        snprintf(who, sizeof who, ", held by thread %d (\"%s\")%s", (int)h,
                 tname, h == gettid() ? ", the forking thread" : "");
    } else if (h < 0) {
        snprintf(who, sizeof who,
                 e->kind == FS_KIND_RWLOCK
                     ? ", held for reading; readers are not recorded (if the "
                       "forking thread is one, release it before forking)"
                     : ", held; the holder is not recorded (if it is the "
                       "forking thread, release it before forking)");
    }
    if (err == ETIMEDOUT)
        forksafe__set_error("timed out after %u ms waiting for %s \"%s\" "
                            "(rank %u, %s, registered by %s)%s",
                            timeout_ms, k->name, e->name, e->rank,
                            k->detail(e->key), obj, who);
    else
        forksafe__set_error("cannot acquire %s \"%s\" (rank %u, %s, "
                            "registered by %s): %s%s",
                            k->name, e->name, e->rank, k->detail(e->key), obj,
                            strerror(err), who);
}

/* The fork in progress, set by prepare_all() and read by the parent and
   child walks; guarded by the registry lock. When the process is
   single-threaded only the slots listed in snap.single are visited at all
   (docs/design.md, "Every fork"), so thousands of registered plain mutexes
   cost nothing there. A slot's state is the fork's default unless it is
   listed, in visiting order, in the exceptions. */
static struct {
    struct forksafe_snapshot snap;
    size_t n; /* slots visited */
    size_t n_exc;
    int mt;
    unsigned char dflt;
} cur;

/* The slot index of the i-th visited slot. */
static inline size_t slot_at(size_t i)
{
    return cur.mt ? i : cur.snap.single[i];
}

static inline const struct forksafe_entry *ops_entry(size_t slot)
{
    return cur.snap.kind[slot] == FS_KIND_OPS
               ? forksafe__registry_find(cur.snap.key[slot])
               : NULL;
}

/* Walk the first `from` visited slots backwards, giving each its state, and
   call the parent (child == 0) or child handler of its kind. */
static void release_walk(size_t from, int child)
{
    pid_t self = child && from ? gettid() : 0;
    size_t k = cur.n_exc;
    while (k > 0 && cur.snap.exc[k - 1].idx >= from)
        k--;
    for (size_t i = from; i-- > 0;) {
        int st = cur.dflt;
        if (k > 0 && cur.snap.exc[k - 1].idx == i)
            st = cur.snap.exc[--k].state;
        size_t x = slot_at(i);
        const struct forksafe_kind_ops *ko = &forksafe__kinds[cur.snap.kind[x]];
        if (child)
            ko->child(cur.snap.key[x], ops_entry(x), st, self);
        else
            ko->parent(cur.snap.key[x], ops_entry(x), st);
    }
}

/* Drop the entries of unloaded objects, then run prepare over every entry
   in ascending order. strict (forksafe_fork):
   the first failure releases everything taken so far, in reverse order, and
   is returned. Otherwise (plain fork(), which cannot fail): failures are
   recorded and those entries are skipped after the fork. Caller holds the
   registry lock. */
static int prepare_all(const struct timespec *deadline, unsigned timeout_ms,
                       int strict)
{
    forksafe__registry_sweep();
    forksafe__registry_snapshot(&cur.snap);
    forksafe__kinds_reset();
    cur.mt = !__libc_single_threaded;
    cur.n = cur.mt ? cur.snap.n : cur.snap.n_single;
    cur.n_exc = 0;
    cur.dflt = cur.mt ? FS_ST_TAKEN : FS_ST_IDLE;
    pid_t self = cur.n ? gettid() : 0;
    for (size_t i = 0; i < cur.n; i++) {
        size_t x = slot_at(i);
        unsigned char st = cur.dflt;
        int r = forksafe__kinds[cur.snap.kind[x]].prepare(
            cur.snap.key[x], ops_entry(x), &st, deadline, cur.mt, self);
        if (r) {
            describe_failure(forksafe__registry_find(cur.snap.key[x]), r,
                             timeout_ms);
            if (strict) {
                release_walk(i, 0);
                return r;
            }
            st = FS_ST_FAILED;
            plain_failures++;
            snprintf(plain_failure_text, sizeof plain_failure_text, "%s",
                     last_error);
        }
        if (st != cur.dflt) {
            cur.snap.exc[cur.n_exc].idx = (uint32_t)i;
            cur.snap.exc[cur.n_exc].state = st;
            cur.n_exc++;
        }
    }
    return 0;
}

/* Release everything prepare took, in reverse order, and end the fork on
   this thread: the parent handler, or forksafe_fork() when fork() returned
   without running the handlers. */
static void finish_parent(void)
{
    release_walk(cur.n, 0);
    tls.in_fork = 0;
    tls.parent_done = 1;
    forksafe__registry_unlock();
}

static void child_all(void)
{
    release_walk(cur.n, 1);
}

/* ------------------------------------------------------------ handlers */

static void atfork_prepare(void)
{
    if (tls.by_wrapper)
        return;
    if (tls.in_fork) {
        /* fork() called from inside one of our callbacks: the registry is
           already held by this thread and mid-walk; run nothing. */
        tls.nested++;
        return;
    }
    forksafe__registry_lock();
    tls.in_fork = 1;
    struct timespec deadline;
    forksafe__deadline(&deadline, default_timeout_ms);
    prepare_all(&deadline, default_timeout_ms, 0);
}

static void atfork_parent(void)
{
    if (tls.nested) {
        tls.nested--;
        return;
    }
    if (tls.in_fork)
        finish_parent();
}

static void atfork_child(void)
{
    if (tls.nested) {
        tls.nested--;
        return;
    }
    if (!tls.in_fork)
        return;
    child_all();
    tls.in_fork = 0;
    tls.by_wrapper = 0;
    forksafe__registry_child_reset();
}

__attribute__((constructor(101))) static void forksafe_init(void)
{
    const char *s = getenv("FORKSAFE_TIMEOUT_MS");
    if (s && *s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (*end == '\0' && v > 0 && v <= 24ul * 3600 * 1000)
            default_timeout_ms = (unsigned)v;
    }
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ------------------------------------------------------------ wrapper */

pid_t forksafe_fork(const struct forksafe_fork_opts *opts)
{
    unsigned timeout_ms = default_timeout_ms, flags = 0;
    if (opts) {
        for (size_t i = 0; i < sizeof opts->reserved / sizeof opts->reserved[0];
             i++) {
            if (opts->reserved[i]) {
                forksafe__set_error("forksafe_fork: reserved field %zu is not "
                                    "zero",
                                    i);
                errno = EINVAL;
                return -1;
            }
        }
        if (opts->flags & ~FORKSAFE_FORK_NO_THREADS) {
            forksafe__set_error("forksafe_fork: unknown flags 0x%x",
                                opts->flags & ~FORKSAFE_FORK_NO_THREADS);
            errno = EINVAL;
            return -1;
        }
        flags = opts->flags;
        if (opts->timeout_ms)
            timeout_ms = opts->timeout_ms;
    }
    if (tls.in_fork) {
        forksafe__set_error("forksafe_fork: called from a forksafe callback "
                            "on the forking thread");
        errno = EDEADLK;
        return -1;
    }
    last_error[0] = '\0';
    if (flags & FORKSAFE_FORK_NO_THREADS) {
        int n = forksafe_thread_count();
        if (n != 1) {
            forksafe__set_error("forksafe_fork: %d other thread(s) alive and "
                                "FORKSAFE_FORK_NO_THREADS is set",
                                n - 1);
            errno = n < 0 ? -n : EBUSY;
            return -1;
        }
    }

    struct timespec deadline;
    forksafe__deadline(&deadline, timeout_ms);
    int r = forksafe__registry_lock_until(&deadline);
    if (r) {
        forksafe__set_error("forksafe_fork: timed out after %u ms waiting for "
                            "a fork in progress in another thread",
                            timeout_ms);
        errno = r;
        return -1;
    }
    tls.in_fork = 1;
    r = prepare_all(&deadline, timeout_ms, 1);
    if (r) {
        tls.in_fork = 0;
        forksafe__registry_unlock();
        errno = r;
        return -1;
    }

    tls.by_wrapper = 1;
    tls.parent_done = 0;
    pid_t pid = fork();
    int saved = errno;
    if (pid == 0)
        return 0; /* atfork_child restored everything */
    tls.by_wrapper = 0;
    if (!tls.parent_done) {
        /* fork() returned without running the handlers (an interposed or
           failing fork): release here, exactly as the parent handler would. */
        finish_parent();
    }
    if (pid < 0) {
        forksafe__set_error("forksafe_fork: fork() failed: %s",
                            strerror(saved));
        errno = saved;
    }
    return pid;
}

/* For the report: how many plain fork() calls had an entry fail, and the
   text of the last failure. Caller holds the registry lock. */
unsigned long forksafe__plain_failures(const char **text)
{
    *text = plain_failure_text;
    return plain_failures;
}

#ifdef FORKSAFE_DEBUG
/* Debug builds only: a broken internal invariant. Writes with write(2) so
   it is usable in a child and from the fork handlers. */
void forksafe__assert_fail(const char *what, const char *file, int line)
{
    char msg[256];
    int n = snprintf(msg, sizeof msg, "forksafe: %s:%d: assertion failed: %s\n",
                     file, line, what);
    if (n > 0)
        (void)!write(2, msg,
                     (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    abort();
}
#endif
