/* SPDX-License-Identifier: MIT */
/*
 * fork.c: the one pthread_atfork() triple, forksafe_fork(), deadlines, the
 * capture of other objects' raw pthread_atfork() handlers, and the
 * thread-local error text.
 *
 * DESIGN. Prepare walks the registry in ascending rank and the parent and
 * child handlers walk it backwards, so every fork acquires in one global
 * order whatever order libraries registered in (glibc bug 19431 is what
 * registration order does). The locks that share a rank are taken as a set
 * that assumes no order among them: try each; wait for a busy one while
 * keeping the rank's others as long as its holder is seen to make progress
 * by itself (wait_holding); when it waits for one of them, or for what
 * cannot be seen for too long, release the rank's locks, wait for the
 * busy one and start the rank again holding it, the way std::lock does.
 * The same handlers serve a plain
 * fork() made by any code, which cannot fail: there a lock that does not
 * yield by the default deadline is recorded and skipped. forksafe_fork()
 * runs prepare itself, before calling fork(), so that it can fail cleanly:
 * on any error it releases what it took, in reverse order, and no child is
 * created. The registry lock is held from prepare to the end of the parent
 * or child handler; that serialises forks and makes registry changes wait.
 *
 * Raw pthread_atfork() handlers that other objects register after
 * libforksafe's constructor would run before forksafe's prepare under a
 * plain fork() (glibc runs prepare handlers newest first) but after it
 * under forksafe_fork(). They are captured (__register_atfork below) and
 * run by forksafe's own walks: before every entry, newest first, as glibc
 * would run them, and released after every entry; the handlers of the
 * object that provides the process's malloc() run after every entry
 * instead, since code allocates while holding any lock. So both fork paths
 * see one order.
 *
 * Two forks waiting for each other: a fork that waits for a busy lock
 * whose holder is itself waiting for the registry lock (to fork, or to
 * register) lets that thread go first: it releases everything, waits until
 * the other thread has had the registry lock, and starts again, within its
 * own deadline.
 *
 * Cost: after fork() every page either process writes is copied. So
 * nothing on the fork path writes to memory shared with the child after
 * prepare: the registry lock and the fork state the parent writes live in
 * the fork page (internal.h), per-fork bookkeeping is written only when it
 * changes, and the child handler touches no thread-local storage on the
 * fast path (tls below is initial-exec on glibc, and only read there).
 */
#include "internal.h"
#include "platform/platform.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000u
/* A wait for a busy lock looks this often whether its holder is waiting
   for the registry lock itself (the yield above). */
#define SLICE_NS (5 * 1000 * 1000l)
/* Internal results of the prepare walk. */
#define FS_YIELD   (-1) /* a holder waits to fork: everything was released */
#define FS_NO_LOCK (-2) /* the registry lock could not be had again */
#define FS_RELEASE (-3) /* release the rank's locks, then wait for this one */
/* A busy lock of a rank is waited for while the rank's locks taken so far
   stay held (wait_holding): its holder is looked at every HOLD_SLICE_NS,
   and when what it does cannot be seen, the rank is held that way for
   HOLD_FIRST_NS, doubled each time it runs out in one fork up to
   HOLD_MAX_NS. */
#define HOLD_SLICE_NS (1000 * 1000l)
#define HOLD_FIRST_NS (2 * 1000 * 1000l)
#define HOLD_MAX_NS   (32 * 1000 * 1000l)

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
/* A store that skips an unchanged value: a store to a page after fork()
   costs a copy (or a write-protect fault) even when it writes the same. */
#define SET(x, v)                                                              \
    do {                                                                       \
        if ((x) != (v))                                                        \
            (x) = (v);                                                         \
    } while (0)

static unsigned default_timeout_ms = DEFAULT_TIMEOUT_MS;

/* Per thread, and only read after fork() on the fast path. no_lock: this
   thread's plain fork() found the registry held past its deadline, so its
   parent and child handlers must not touch the registry. Initial-exec on
   glibc, whose static TLS has room for a library loaded with dlopen();
   musl has none, and refuses to load a library with initial-exec TLS
   after start ("initial-exec TLS resolves to dynamic definition"), so
   there it is the default model (musl's __tls_get_addr allocates
   nothing). */
#ifdef __GLIBC__
#define FS_TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#define FS_TLS_MODEL
#endif
static __thread struct {
    unsigned char no_lock;
    unsigned char joined; /* rides on another thread's forksafe_fork() */
} tls FS_TLS_MODEL;

static __thread char last_error[512];

/* Plain-fork failures, for the report. Guarded by the registry lock,
   except no_lock_forks (a fork that does not have it). */
static unsigned long plain_failures;
static char plain_failure_text[512];
static unsigned long no_lock_forks, no_lock_forks_at_text;

void forksafe__set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

const char *forksafe_last_error(void)
{
    FORKSAFE_FORWARD(last_error());
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
    const char *refused = forksafe__kinds_refusal();
    if (refused) {
        forksafe__set_error("cannot fork with %s \"%s\" (rank %u, %s, "
                            "registered by %s): %s (%s)",
                            k->name, e->name, e->rank, k->detail(e->key), obj,
                            refused, strerror(err));
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

/* The fork in progress, set by prepare and read by the parent and child
   walks; guarded by the registry lock. When the process is
   single-threaded only the slots listed in snap.single are visited at all
   (docs/design.md, "Every fork"), so thousands of registered plain mutexes
   cost nothing there. A slot's state is the fork's default unless it is
   listed, in visiting order, in the exceptions. Every field is written only
   when its value changes (SET), so that a steady stream of forks writes
   nothing here. */
static struct {
    struct forksafe_snapshot snap;
    size_t n; /* slots visited */
    size_t n_exc;
    int mt;
    unsigned char dflt;
    unsigned nested; /* fork() calls made from inside our callbacks */
    pid_t yield_to;  /* the holder that made the walk yield */
} cur;

/* The slot index of the i-th visited slot. */
static inline size_t slot_at(size_t i)
{
    return cur.mt ? i : cur.snap.single[i];
}

static inline unsigned slot_kind(size_t x)
{
    return cur.snap.kind[x] & FS_SLOT_KIND;
}

/* The kind operations of slot x (a fast mutex is a mutex). */
static inline const struct forksafe_kind_ops *slot_ops(size_t x)
{
    unsigned k = slot_kind(x);
    return &forksafe__kinds[k == FS_SLOT_MUTEX_FAST ? FS_KIND_MUTEX : k];
}

static inline const struct forksafe_entry *ops_entry(size_t slot)
{
    return slot_kind(slot) == FS_KIND_OPS
               ? forksafe__registry_find(cur.snap.key[slot])
               : NULL;
}

/* Record the state of visited slot i if it is not the default. Slots are
   recorded in increasing order. */
static inline void record(size_t i, unsigned char st)
{
    if (st != cur.dflt) {
        cur.snap.exc[cur.n_exc].idx = (uint32_t)i;
        cur.snap.exc[cur.n_exc].state = st;
        cur.n_exc++;
    }
}

/* Release one visited slot i (slot x) in state st. */
static void release_one(size_t x, int st, int child, pid_t self)
{
    const struct forksafe_kind_ops *ko = slot_ops(x);
    if (child)
        ko->child(cur.snap.key[x], ops_entry(x), st, self);
    else
        ko->parent(cur.snap.key[x], ops_entry(x), st);
}

/* Walk the first `from` visited slots backwards, giving each its state, and
   call the parent (child == 0) or child handler of its kind. Between two
   exceptions every slot has the default state; when that is TAKEN (other
   threads alive, so slot i is slot i), the fast mutexes there are released
   in a tight loop, without the per-kind calls. */
FS_CHILD_PATH static void release_walk(size_t from, int child)
{
    pid_t self = child && from ? gettid() : 0;
    const struct forksafe_platform *P = from ? forksafe__platform() : NULL;
    const void *const *key = cur.snap.key;
    const unsigned char *kind = cur.snap.kind;
    size_t k = cur.n_exc, i = from;
    while (k > 0 && cur.snap.exc[k - 1].idx >= from)
        k--;
    while (i > 0) {
        size_t stop = k > 0 ? cur.snap.exc[k - 1].idx + 1 : 0;
        if (cur.mt) {
            for (; i > stop; i--) {
                pthread_mutex_t *m = (pthread_mutex_t *)key[i - 1];
                if ((kind[i - 1] & FS_SLOT_KIND) != FS_SLOT_MUTEX_FAST)
                    release_one(i - 1, FS_ST_TAKEN, child, self);
                else if (child)
                    P->child_mutex(m, 0, self);
                else
                    pthread_mutex_unlock(m);
            }
        } else {
            for (; i > stop; i--)
                release_one(slot_at(i - 1), cur.dflt, child, self);
        }
        if (i > 0) { /* slot i - 1 is the exception k - 1 */
            i--;
            release_one(slot_at(i), cur.snap.exc[--k].state, child, self);
        }
    }
}

/* The raw handlers captured from other objects, released in registration
   order (glibc's order for parent and child handlers). */
FS_CHILD_PATH static void release_raw(const struct forksafe_raw *h, size_t n,
                                      int child)
{
    for (size_t i = 0; i < n; i++) {
        void (*fn)(void) = child ? h[i].child : h[i].parent;
        if (fn)
            fn();
    }
}

static void prepare_raw(const struct forksafe_raw *h, size_t n)
{
    for (size_t i = n; i-- > 0;)
        if (h[i].prepare)
            h[i].prepare();
}

/* A plain fork() could not prepare entry i: count it and keep its text. */
static void plain_failed(void)
{
    plain_failures++;
    snprintf(plain_failure_text, sizeof plain_failure_text, "%s", last_error);
    no_lock_forks_at_text = LOAD(no_lock_forks);
}

/* Wait for the busy lock in slot x until deadline, in slices: after each
   slice, give up with FS_YIELD if the lock's holder is waiting for the
   registry lock (it wants to fork or to register, and cannot until this
   fork ends). 0 (taken), FS_YIELD, ETIMEDOUT or another errno. */
static int wait_sliced(size_t x, unsigned char *st,
                       const struct timespec *deadline)
{
    const struct forksafe_kind_ops *ko = slot_ops(x);
    const void *key = cur.snap.key[x];
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += SLICE_NS;
        if (until.tv_nsec >= 1000000000l) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000l;
        }
        int last = until.tv_sec > deadline->tv_sec ||
                   (until.tv_sec == deadline->tv_sec &&
                    until.tv_nsec >= deadline->tv_nsec);
        int r = ko->wait(key, st, last ? deadline : &until);
        if (r != ETIMEDOUT || last)
            return r;
        /* A named holder that waits for the registry goes first. A holder
           that cannot be named (readers, spinlocks) may be one of the
           threads that wait for it: let the first of them go. */
        pid_t h = ko->holder(key);
        if (h < 0)
            h = forksafe__registry_a_waiter();
        if (h > 0 && forksafe__registry_is_waiter(h)) {
            SET(cur.yield_to, h);
            return FS_YIELD;
        }
    }
}

/* ts += ns; whether ts is at or past deadline. */
static int add_ns(struct timespec *ts, long ns, const struct timespec *deadline)
{
    ts->tv_nsec += ns;
    while (ts->tv_nsec >= 1000000000l) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000l;
    }
    return ts->tv_sec > deadline->tv_sec ||
           (ts->tv_sec == deadline->tv_sec && ts->tv_nsec >= deadline->tv_nsec);
}

/* The bytes a lock in slot x spans: a waiter for it waits on a futex word
   inside them. */
static size_t lock_size(size_t x)
{
    switch (slot_kind(x)) {
    case FS_KIND_RWLOCK:
        return sizeof(pthread_rwlock_t);
    case FS_KIND_SPINLOCK:
        return sizeof(pthread_spinlock_t);
    case FS_KIND_OPS:
        return 0;
    default:
        return sizeof(pthread_mutex_t);
    }
}

/* The locks a walk of the rank starting at visited slot a holds while it
   waits for slot i: [a, i) but those recorded FAILED or IDLE (their
   exceptions start at exc0), and pinned. */
struct held_set {
    size_t a, i, exc0, pinned;
};

static int held_slot(const struct held_set *hs, size_t j)
{
    if (j == hs->pinned)
        return 1;
    if (j < hs->a || j >= hs->i)
        return 0;
    for (size_t k = hs->exc0; k < cur.n_exc; k++)
        if (cur.snap.exc[k].idx == j)
            return cur.snap.exc[k].state == FS_ST_TAKEN ||
                   cur.snap.exc[k].state == FS_ST_SELF;
    return cur.dflt == FS_ST_TAKEN;
}

/* Whether the walk holds slot j and it spans address p, or (p == 0) it is
   a spinlock. */
static int held_match(const struct held_set *hs, size_t j, uintptr_t p)
{
    if (!held_slot(hs, j))
        return 0;
    uintptr_t k = (uintptr_t)cur.snap.key[j];
    return p ? p >= k && p - k < lock_size(j)
             : slot_kind(j) == FS_KIND_SPINLOCK;
}

/* Whether the walk holds a lock that spans address p, or (p == 0) any
   spinlock: a thread spinning for one runs without a system call. */
static int holds(const struct held_set *hs, uintptr_t p)
{
    for (size_t j = hs->a; j < hs->i; j++)
        if (held_match(hs, j, p))
            return 1;
    return hs->pinned != SIZE_MAX && hs->pinned >= hs->i &&
           held_match(hs, hs->pinned, p);
}

/* What the holder h of a busy lock is up to, as far as it can be seen:
   HOLDER_BUSY (running or sleeping: it will let go without us), HOLDER_CYCLE
   (it waits for a lock the walk holds, directly or through the holders of
   registered mutexes), HOLDER_UNSEEN (anything else). */
enum { HOLDER_UNSEEN, HOLDER_BUSY, HOLDER_CYCLE };

static int look_at_holder(pid_t h, const struct held_set *hs, pid_t self)
{
    for (int depth = 0; depth < 4; depth++) {
        if (h == 0)
            return HOLDER_BUSY; /* it just let go */
        if (h < 0 || h == self)
            return HOLDER_UNSEEN;
        uintptr_t addr = 0;
        switch (forksafe__thread_activity(h, &addr)) {
        case FS_TS_RUNNING:
            return holds(hs, 0) ? HOLDER_UNSEEN : HOLDER_BUSY;
        case FS_TS_SLEEPING:
            return HOLDER_BUSY;
        case FS_TS_FUTEX: {
            if (holds(hs, addr))
                return HOLDER_CYCLE;
            const struct forksafe_entry *e =
                forksafe__registry_find((const void *)addr);
            if (!e || e->kind != FS_KIND_MUTEX)
                return HOLDER_UNSEEN;
            h = forksafe__kinds[FS_KIND_MUTEX].holder(e->key);
            break; /* the holder of the mutex it waits for, in turn */
        }
        default:
            return HOLDER_UNSEEN;
        }
    }
    return HOLDER_UNSEEN;
}

/* Wait for the busy lock in slot hs->i while the rank's locks taken so far
   stay held. Most busy locks are merely in use: releasing the rank at once
   and starting again lets the threads kept out run back in, and under
   steady use the whole set is then rarely free at one instant (the
   restarting forker starves). Releasing is needed only when the holder
   waits for a lock the walk holds (a cycle: the rank's locks taken in
   another order), so every slice the holder is looked at: one that runs
   or sleeps is waited for; one that waits for a held lock sends the walk
   back (FS_RELEASE); one doing anything else is waited for *hold_ns in all,
   then FS_RELEASE too (and *hold_ns doubles, so a long hold is outwaited
   in the end). 0 (taken), FS_RELEASE, FS_YIELD (the holder waits for the
   registry lock), ETIMEDOUT (deadline) or another errno. */
static int wait_holding(const struct held_set *hs, unsigned char *st,
                        const struct timespec *deadline, long *hold_ns,
                        pid_t self)
{
    const struct forksafe_kind_ops *ko = slot_ops(hs->i);
    const void *key = cur.snap.key[hs->i];
    long unseen = 0;
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int last = add_ns(&until, HOLD_SLICE_NS, deadline);
        int r = ko->wait(key, st, last ? deadline : &until);
        if (r != ETIMEDOUT || last)
            return r;
        pid_t h = ko->holder(key);
        if (h > 0 && forksafe__registry_is_waiter(h)) {
            SET(cur.yield_to, h);
            return FS_YIELD;
        }
        switch (look_at_holder(h, hs, self)) {
        case HOLDER_BUSY:
            break;
        case HOLDER_CYCLE:
            return FS_RELEASE;
        default:
            unseen += HOLD_SLICE_NS;
            if (unseen >= *hold_ns) {
                if (*hold_ns < HOLD_MAX_NS)
                    *hold_ns *= 2;
                return FS_RELEASE;
            }
        }
    }
}

/* Release the locks of visited slots [a, i) taken in this pass (their
   exceptions start at exc0), and the pinned one if it is not among them. */
static void release_partial(size_t a, size_t i, size_t exc0, size_t pinned)
{
    size_t k = cur.n_exc;
    for (size_t j = i; j-- > a;) {
        int st = cur.dflt;
        if (k > exc0 && cur.snap.exc[k - 1].idx == j)
            st = cur.snap.exc[--k].state;
        slot_ops(j)->parent(cur.snap.key[j], NULL, st);
    }
    if (pinned != SIZE_MAX && pinned >= i)
        slot_ops(pinned)->parent(cur.snap.key[pinned], NULL, FS_ST_TAKEN);
    cur.n_exc = exc0;
}

/* Take the rank starting at visited slot a (multi-threaded): its locks as
   a set, then its callbacks in order; slots [a, from) are held already
   (taken, nothing recorded for them). Returns 0, FS_YIELD or, strict, the
   errno that stopped it; *end is where the visited slots that are held
   end: the end of the rank on success, a when its locks failed (nothing of
   the rank is held then), the failing callback's slot when one failed.
   Not strict, locks that do not yield by the deadline and failing
   callbacks are recorded FAILED. */
static int take_rank(size_t a, size_t from, size_t *end,
                     const struct timespec *deadline, unsigned timeout_ms,
                     int strict, pid_t self)
{
    size_t n = cur.n, exc0 = cur.n_exc, pinned = SIZE_MAX, i = from;
    int expired = 0; /* not strict, past the deadline: try only */
    long hold_ns = HOLD_FIRST_NS;
    goto resume; /* [a, from) are held already, in the default state */
restart:
    i = a;
resume:
    for (; i < n && (i == a || !(cur.snap.kind[i] & FS_SLOT_FIRST)) &&
           slot_kind(i) != FS_KIND_OPS;
         i++) {
        if (i == pinned)
            continue; /* held since we waited for it: TAKEN, the default */
        const struct forksafe_kind_ops *ko = slot_ops(i);
        unsigned char st = cur.dflt;
        int r;
        if (slot_kind(i) == FS_SLOT_MUTEX_FAST &&
            (r = pthread_mutex_trylock((pthread_mutex_t *)cur.snap.key[i])) !=
                EBUSY) {
            if (r == 0)
                continue; /* taken: the default state, nothing to record */
        } else {
            r = ko->try_take(cur.snap.key[i], NULL, &st, deadline, 1, self);
        }
        if (r == EBUSY && !expired && (i > a || pinned != SIZE_MAX)) {
            /* Wait for it holding what this rank holds (see above). */
            struct held_set hs = {a, i, exc0, pinned};
            r = wait_holding(&hs, &st, deadline, &hold_ns, self);
            if (r != FS_RELEASE && r != 0) {
                release_partial(a, i, exc0, pinned);
                *end = a; /* the rank holds nothing now */
                if (r == FS_YIELD)
                    return r;
                describe_failure(forksafe__registry_find(cur.snap.key[i]), r,
                                 timeout_ms);
                if (strict)
                    return r;
                expired = 1;
                goto restart;
            }
            if (r == FS_RELEASE)
                r = EBUSY;
        }
        if (r == EBUSY && !expired) {
            /* Release what this rank holds, then wait for this one. */
            release_partial(a, i, exc0, pinned);
            pinned = SIZE_MAX;
            r = wait_sliced(i, &st, deadline);
            if (r == 0) {
                pinned = i;
                goto restart;
            }
            *end = a; /* the rank holds nothing now */
            if (r == FS_YIELD)
                return r;
            describe_failure(forksafe__registry_find(cur.snap.key[i]), r,
                             timeout_ms);
            if (strict)
                return r;
            /* Take the rest of the rank again, without waiting now. */
            expired = 1;
            goto restart;
        }
        if (r) {
            if (r != EBUSY)
                describe_failure(forksafe__registry_find(cur.snap.key[i]), r,
                                 timeout_ms);
            if (strict) {
                release_partial(a, i, exc0, pinned);
                *end = a;
                return r;
            }
            plain_failed();
            st = FS_ST_FAILED;
        }
        record(i, st);
    }
    /* The rank's callbacks, in registration order. */
    for (; i < n && (i == a || !(cur.snap.kind[i] & FS_SLOT_FIRST)); i++) {
        unsigned char st = cur.dflt;
        int r = forksafe__kinds[FS_KIND_OPS].try_take(
            cur.snap.key[i], ops_entry(i), &st, deadline, 1, self);
        if (r) {
            describe_failure(forksafe__registry_find(cur.snap.key[i]), r,
                             timeout_ms);
            if (strict) {
                *end = i; /* the rank's locks and earlier callbacks */
                return r;
            }
            plain_failed();
            st = FS_ST_FAILED;
        }
        record(i, st);
    }
    *end = i;
    return 0;
}

/* Prepare every entry, once: raw handlers first, then the ranks, then the
   allocator's raw handlers. On failure (strict) or FS_YIELD, everything
   taken is released again, in reverse order. Caller holds the registry
   lock. */
static int walk(const struct timespec *deadline, unsigned timeout_ms,
                int strict)
{
    prepare_raw(cur.snap.outer, cur.snap.n_outer);
    pid_t self = cur.n ? gettid() : 0;
    size_t i = 0;
    int r = 0;
    if (!cur.mt) {
        for (; i < cur.n; i++) {
            size_t x = cur.snap.single[i];
            unsigned char st = cur.dflt;
            r = slot_ops(x)->try_take(cur.snap.key[x], ops_entry(x), &st,
                                      deadline, 0, self);
            if (r) {
                describe_failure(forksafe__registry_find(cur.snap.key[x]), r,
                                 timeout_ms);
                if (strict)
                    break;
                plain_failed();
                st = FS_ST_FAILED;
                r = 0;
            }
            record(i, st);
        }
    } else {
        const void *const *key = cur.snap.key;
        const unsigned char *kind = cur.snap.kind;
        size_t n = cur.n, a = 0;
        while (i < n) {
            /* The common case first: uncontended fast mutexes, one trylock
               each, across ranks; a rank's first slot says where it starts
               (the full walk below needs it to back off). */
            for (; i < n; i++) {
                unsigned k = kind[i];
                if (k & FS_SLOT_FIRST)
                    a = i;
                if ((k & FS_SLOT_KIND) != FS_SLOT_MUTEX_FAST ||
                    pthread_mutex_trylock((pthread_mutex_t *)key[i]) != 0)
                    break;
            }
            if (i == n)
                break;
            size_t end = i;
            r = take_rank(a, i, &end, deadline, timeout_ms, strict, self);
            if (r) {
                i = end; /* release what is held: [0, end) */
                break;
            }
            i = end;
        }
    }
    if (r) {
        release_walk(i, 0);
        release_raw(cur.snap.outer, cur.snap.n_outer, 0);
        return r;
    }
    prepare_raw(cur.snap.inner, cur.snap.n_inner);
    return 0;
}

/* Drop the entries of unloaded objects, then prepare every entry in
   ascending order. strict (forksafe_fork): the first failure releases
   everything taken so far, in reverse order, and is returned. Otherwise
   (plain fork(), which cannot fail): failures are recorded and those
   entries are skipped after the fork. A walk that must yield to a waiting
   forker gives up the registry lock and starts again once that thread has
   had it; FS_NO_LOCK if it cannot get it back by the deadline. Caller
   holds the registry lock and is its fork owner. */
static int prepare_all(const struct timespec *deadline, unsigned timeout_ms,
                       int strict)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    for (;;) {
        forksafe__registry_sweep();
        struct forksafe_snapshot s;
        forksafe__registry_snapshot(&s);
        if (memcmp(&s, &cur.snap, sizeof s) != 0)
            cur.snap = s;
        forksafe__kinds_reset();
        int mt = forksafe__platform()->multithreaded();
        SET(cur.mt, mt);
        SET(cur.n, mt ? s.n : s.n_single);
        SET(cur.n_exc, 0);
        SET(cur.dflt, mt ? FS_ST_TAKEN : FS_ST_IDLE);
        int r = walk(deadline, timeout_ms, strict);
        if (r != FS_YIELD)
            return r;
        STORE(fp->owner, 0);
        forksafe__registry_unlock();
        forksafe__registry_wait_for(cur.yield_to, deadline);
        if (forksafe__registry_lock_until(deadline))
            return FS_NO_LOCK;
        STORE(fp->owner, pthread_self());
    }
}

/* Release everything prepare took, in reverse order, and end the fork on
   this thread: the parent handler, or forksafe_fork() when fork() returned
   without running the handlers. */
static void finish_parent(void)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    release_raw(cur.snap.inner, cur.snap.n_inner, 0);
    release_walk(cur.n, 0);
    release_raw(cur.snap.outer, cur.snap.n_outer, 0);
    SET(fp->by_wrapper, 0);
    fp->seq++;
    STORE(fp->owner, 0);
    forksafe__registry_unlock();
}

/* ------------------------------------------------------------ handlers */

/* A plain fork() that could not have the registry lock by its deadline
   (another thread's fork held it): it prepares nothing, which is recorded,
   and its parent and child handlers do nothing. */
static void no_lock_fork(void)
{
    tls.no_lock = 1;
    __atomic_add_fetch(&no_lock_forks, 1, __ATOMIC_RELAXED);
}

/* The registry lock for a plain fork()'s prepare, by deadline. Where the
   C library runs every prepare handler under one lock of its own, held
   until the fork is over (musl: src/thread/pthread_atfork.c), a
   forksafe_fork() in another thread that holds the registry and is about
   to call fork() waits for this fork to end, so waiting for it here would
   never end (seen as a hang of test-concurrency on musl). That forker has
   already taken every entry and changes nothing until this fork is done:
   this fork joins it instead, and its child releases what that prepare
   took (not what that thread held itself). 0 (locked), 1 (joined) or the
   errno of the failed wait. */
static int lock_for_plain_fork(const struct timespec *deadline)
{
    if (!forksafe__platform()->atfork_serialized)
        return forksafe__registry_lock_until(deadline);
    for (;;) {
        struct timespec slice;
        forksafe__deadline(&slice, 1);
        int last = slice.tv_sec > deadline->tv_sec ||
                   (slice.tv_sec == deadline->tv_sec &&
                    slice.tv_nsec >= deadline->tv_nsec);
        int r = forksafe__registry_lock_until(last ? deadline : &slice);
        if (r == 0)
            return 0;
        if (__atomic_load_n(&forksafe__fp->by_wrapper, __ATOMIC_ACQUIRE))
            return 1;
        if (last)
            return r;
    }
}

static void atfork_prepare(void)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    pthread_t self = pthread_self();
    if (LOAD(fp->owner) == self) {
        /* forksafe_fork() has prepared already; or fork() was called from
           inside one of our callbacks, with the registry held by this
           thread and mid-walk: then run nothing. */
        if (!fp->by_wrapper)
            cur.nested++;
        return;
    }
    /* The deadline starts now, also counting the wait for the registry. */
    struct timespec deadline;
    forksafe__deadline(&deadline, default_timeout_ms);
    int r = lock_for_plain_fork(&deadline);
    if (r == 1) {
        tls.joined = 1;
        return;
    }
    if (r) {
        no_lock_fork();
        return;
    }
    STORE(fp->owner, self);
    if (prepare_all(&deadline, default_timeout_ms, 0) == FS_NO_LOCK)
        no_lock_fork();
}

static void atfork_parent(void)
{
    if (tls.no_lock) {
        tls.no_lock = 0;
        return;
    }
    if (tls.joined) {
        tls.joined = 0; /* the other forker releases, after its fork */
        return;
    }
    if (cur.nested) {
        cur.nested--;
        return;
    }
    finish_parent();
}

FS_CHILD_PATH static void atfork_child(void)
{
    struct forksafe_fork_page *fp = forksafe__fp;
    if (tls.no_lock) {
        tls.no_lock = 0;
        if (!forksafe__fp_wiped)
            forksafe__fork_page_child_reset();
        return;
    }
    if (tls.joined) {
        /* The other forker's prepare took the entries; what that thread
           held itself is not this child's to keep. */
        tls.joined = 0;
        for (size_t k = 0; k < cur.n_exc; k++)
            if (cur.snap.exc[k].state == FS_ST_SELF)
                cur.snap.exc[k].state = FS_ST_FAILED;
    } else if (cur.nested) {
        return;
    }
    /* Callbacks may call the registry: they must see the fork in progress
       (EDEADLK), so the child's thread owns it while they run. Locks need
       no such thing, and the wiped page is then not even read. */
    int callbacks = cur.snap.n_ops || cur.snap.n_outer || cur.snap.n_inner;
    if (callbacks)
        STORE(fp->owner, pthread_self());
    release_raw(cur.snap.inner, cur.snap.n_inner, 1);
    release_walk(cur.n, 1);
    release_raw(cur.snap.outer, cur.snap.n_outer, 1);
    if (!forksafe__fp_wiped)
        forksafe__fork_page_child_reset();
    else if (callbacks)
        STORE(fp->owner, 0);
}

/* ------------------------------------------------------------ capture */

static int capturing; /* our own triple is registered */

int forksafe__capture_atfork(const struct forksafe_raw *h, const void *dso,
                             int inner)
{
    if (!LOAD(capturing) || forksafe__in_fork())
        return EAGAIN;
    return forksafe__registry_capture_atfork(h, dso, inner);
}

#ifdef FORKSAFE_SHARED
typedef int (*register_atfork_fn)(void (*)(void), void (*)(void),
                                  void (*)(void), void *);
static register_atfork_fn real_register_atfork;

/* Whether code lies in the object that provides the process's malloc():
   its fork handlers lock the allocator, which code calls while holding
   any lock, so they must prepare after every entry. */
static int is_allocator(const void *code)
{
    /* dladdr()'s dli_fbase, the start of the object's mapping, names the
       object (glibc and musl both fill it; dladdr1() is glibc's only). */
    static void *malloc_base;
    Dl_info a, b;
    if (!malloc_base) {
        void *m = dlsym(RTLD_DEFAULT, "malloc");
        if (!m || !dladdr(m, &a) || !a.dli_fbase)
            return 0;
        malloc_base = a.dli_fbase;
    }
    return code && dladdr(code, &b) && b.dli_fbase == malloc_base;
}

/* What pthread_atfork() calls (it is a static stub from libc_nonshared.a in
   every object, passing the object's __dso_handle). Handlers registered
   after libforksafe's constructor are captured into the registry (of the
   copy that keeps it, peer.c), so that forksafe runs them in one order on
   both fork paths; anything else (our own triple, a registration during a
   fork on this thread, a full table) goes to the C library as usual. Only
   the shared library has it: a program that links libforksafe.a keeps
   glibc's ordering for raw handlers (docs/semantics.md). */
__attribute__((visibility("default"))) int
__register_atfork(void (*prepare)(void), void (*parent)(void),
                  void (*child)(void), void *dso);
int __register_atfork(void (*prepare)(void), void (*parent)(void),
                      void (*child)(void), void *dso)
{
    if (!real_register_atfork)
        real_register_atfork =
            (register_atfork_fn)dlsym(RTLD_NEXT, "__register_atfork");
    const struct forksafe_peer_api *p =
        __atomic_load_n(&forksafe__peer, __ATOMIC_ACQUIRE);
    if ((p || LOAD(capturing)) && !forksafe__peer_refused) {
        struct forksafe_raw h = {prepare, parent, child};
        const void *code = prepare ? (const void *)prepare
                           : child ? (const void *)child
                                   : (const void *)parent;
        int inner = is_allocator(code);
        if ((p ? p->capture_atfork(&h, dso, inner)
               : forksafe__capture_atfork(&h, dso, inner)) == 0)
            return 0;
    }
    return real_register_atfork
               ? real_register_atfork(prepare, parent, child, dso)
               : ENOMEM;
}
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_once_fn(void)
{
    const char *s = getenv("FORKSAFE_TIMEOUT_MS");
    if (s && *s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (*end == '\0' && v > 0 && v <= 24ul * 3600 * 1000)
            default_timeout_ms = (unsigned)v;
    }
    forksafe__registry_init();
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    STORE(capturing, 1);
}

void forksafe__init(void)
{
    pthread_once(&init_once, init_once_fn);
}

/* A copy that forwards to another (peer.c) installs nothing: the other
   copy's handlers serve every fork. */
__attribute__((constructor(101))) static void forksafe_ctor(void)
{
    forksafe__peer_elect();
    if (!forksafe__peer && !forksafe__peer_refused)
        forksafe__init();
}

/* ------------------------------------------------------------ wrapper */

FS_CHILD_PATH
pid_t forksafe_fork(const struct forksafe_fork_opts *opts)
{
    FORKSAFE_FORWARD(fork(opts));
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
    if (forksafe__in_fork()) {
        forksafe__set_error("forksafe_fork: called from a forksafe callback "
                            "on the forking thread");
        errno = EDEADLK;
        return -1;
    }
    if (last_error[0])
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

    struct forksafe_fork_page *fp = forksafe__fp;
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
    STORE(fp->owner, pthread_self());
    r = prepare_all(&deadline, timeout_ms, 1);
    if (r == FS_NO_LOCK) {
        forksafe__set_error("forksafe_fork: timed out after %u ms: another "
                            "thread's fork went first and held the registry",
                            timeout_ms);
        errno = ETIMEDOUT;
        return -1;
    }
    if (r) {
        STORE(fp->owner, 0);
        forksafe__registry_unlock();
        errno = r;
        return -1;
    }

    __atomic_store_n(&fp->by_wrapper, 1, __ATOMIC_RELEASE);
    unsigned long seq = fp->seq;
    pid_t pid = fork();
    int saved = errno;
    if (pid == 0)
        return 0; /* atfork_child restored everything */
    if (fp->seq == seq) {
        /* fork() returned without running the handlers (an interposed or
           failing fork): release here, exactly as the parent handler would.
           Had it run, it would have counted the fork (fp->seq). */
        finish_parent();
    }
    if (pid < 0) {
        forksafe__set_error("forksafe_fork: fork() failed: %s",
                            strerror(saved));
        errno = saved;
    }
    return pid;
}

/* For the report: how many plain fork() calls had an entry fail or could
   not have the registry, and the text of the last entry failure. Caller
   holds the registry lock. */
unsigned long forksafe__plain_failures(const char **text)
{
    unsigned long locks = LOAD(no_lock_forks);
    *text = plain_failure_text;
    if (locks != no_lock_forks_at_text) /* the latest was one of those */
        *text = "timed out waiting for another thread's fork; no entry was "
                "prepared";
    return plain_failures + locks;
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
