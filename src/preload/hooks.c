/*
 * hooks.c: the functions libforksafe-audit.so interposes (pthread mutex and
 * rwlock calls, pthread_create, fork, _Fork, __register_atfork, and the
 * usual non-async-signal-safe calls made by forked children) and the
 * bookkeeping behind each finding kind of forksafe-audit.
 *
 * DESIGN. The lock path must stay cheap (the target is at most 3x on a
 * lock+unlock loop), so it touches only this thread's record (a stack of
 * held locks, claimed once per thread from a static array) and one slot of
 * a static open-addressed table keyed by lock address, which is written only
 * the first time a lock is seen and the first time a second thread uses it.
 * Nothing on that path allocates, takes a lock or makes a system call. Work
 * that needs the forksafe registry (is this lock registered, at what rank?)
 * or a slow scan is done once, when the process exits normally, from an
 * atexit handler; fork() itself only reads our tables and /proc with raw
 * system calls, so it stays usable from a signal handler.
 *
 * The real functions are found with dlsym(RTLD_NEXT) in the constructor,
 * and lazily if a hook runs before it (another library's constructor).
 */
#include "preload.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "forksafe.h"

#define TLS         __thread __attribute__((tls_model("initial-exec")))
#define EXPORT      __attribute__((visibility("default")))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LOAD(p)     __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* glibc exports these; they are not declared in any public header. */
int __register_atfork(void (*prepare)(void), void (*parent)(void),
                      void (*child)(void), void *dso_handle);
void *__libc_malloc(size_t size);
void __libc_free(void *p);
void *__libc_calloc(size_t n, size_t size);

/* ------------------------------------------------------------ real calls */

static int (*real_pthread_mutex_lock)(pthread_mutex_t *);
static int (*real_pthread_mutex_trylock)(pthread_mutex_t *);
static int (*real_pthread_mutex_timedlock)(pthread_mutex_t *,
                                           const struct timespec *);
static int (*real_pthread_mutex_clocklock)(pthread_mutex_t *, clockid_t,
                                           const struct timespec *);
static int (*real_pthread_mutex_unlock)(pthread_mutex_t *);
static int (*real_pthread_mutex_destroy)(pthread_mutex_t *);
static int (*real_pthread_rwlock_rdlock)(pthread_rwlock_t *);
static int (*real_pthread_rwlock_wrlock)(pthread_rwlock_t *);
static int (*real_pthread_rwlock_tryrdlock)(pthread_rwlock_t *);
static int (*real_pthread_rwlock_trywrlock)(pthread_rwlock_t *);
static int (*real_pthread_rwlock_unlock)(pthread_rwlock_t *);
static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *,
                                  void *(*)(void *), void *);
static int (*real_pthread_cond_wait)(pthread_cond_t *, pthread_mutex_t *);
static int (*real_pthread_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *,
                                          const struct timespec *);
static int (*real_pthread_cond_clockwait)(pthread_cond_t *, pthread_mutex_t *,
                                          clockid_t, const struct timespec *);
static int (*real_sem_wait)(sem_t *);
static int (*real_sem_trywait)(sem_t *);
static int (*real_sem_timedwait)(sem_t *, const struct timespec *);
static int (*real_sem_clockwait)(sem_t *, clockid_t, const struct timespec *);
static int (*real_sem_post)(sem_t *);
static int (*real_sem_destroy)(sem_t *);
static pid_t (*real_fork)(void);
static pid_t (*real__Fork)(void);
static int (*real___register_atfork)(void (*)(void), void (*)(void),
                                     void (*)(void), void *);
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_vprintf)(const char *, va_list);
static int (*real_vfprintf)(FILE *, const char *, va_list);
static int (*real_puts)(const char *);
static int (*real_fputs)(const char *, FILE *);
static size_t (*real_fwrite)(const void *, size_t, size_t, FILE *);
static int (*real_fflush)(FILE *);

/* Set while dlsym runs, so that an allocation it makes goes straight to
   glibc instead of into a hook whose real function is not known yet. */
static TLS int in_resolve;
/* Set while the audit itself calls into the program's libraries (registry
   lookups at exit), so those calls are not audited. */
static TLS int in_hook;

static void *resolve(const char *name)
{
    in_resolve++;
    void *p = dlsym(RTLD_NEXT, name);
    in_resolve--;
    return p;
}

#define REAL(fn)                                                               \
    (LOAD(&real_##fn)                                                          \
         ? real_##fn                                                           \
         : (STORE(&real_##fn, (__typeof__(real_##fn))resolve(#fn)),            \
            real_##fn))

/* ------------------------------------------------------------ threads */

enum { KIND_MUTEX = 1, KIND_RWLOCK = 2, KIND_SEMAPHORE = 3 };

static const char *kind_name(int kind)
{
    return kind == KIND_RWLOCK      ? "rwlock"
           : kind == KIND_SEMAPHORE ? "semaphore"
                                    : "mutex";
}

#define MAX_THREADS 1024
#define MAX_HELD    16

struct held {
    void *lock;
    void *site;
    int kind;
};

/* One per live thread that has used a hook. Other threads read `tid`,
   `start` and the held stack at fork time: best effort, never waited for. */
struct thread_rec {
    int tid;        /* 0: free slot */
    unsigned ident; /* unique per claim, survives fork in the child */
    void *start;
    int nheld;
    struct held held[MAX_HELD];
};

static struct thread_rec threads[MAX_THREADS];
static int threads_hwm; /* slots [0, hwm) have been used */
static unsigned next_ident;
static pthread_key_t rec_key;
static int rec_key_ok;
static TLS struct thread_rec *self_rec;

static void rec_release(void *p)
{
    struct thread_rec *r = p;
    if (self_rec == r)
        self_rec = NULL;
    STORE(&r->nheld, 0);
    r->start = NULL;
    STORE(&r->tid, 0);
}

static struct thread_rec *self(void)
{
    struct thread_rec *r = self_rec;
    if (r)
        return r;
    int tid = (int)forksafe__gettid();
    for (int i = 0; i < MAX_THREADS; i++) {
        int expect = 0;
        if (LOAD(&threads[i].tid) == 0 &&
            __atomic_compare_exchange_n(&threads[i].tid, &expect, tid, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            r = &threads[i];
            int hwm = LOAD(&threads_hwm);
            while (hwm < i + 1 && !__atomic_compare_exchange_n(
                                      &threads_hwm, &hwm, i + 1, 0,
                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                ;
            r->ident = __atomic_add_fetch(&next_ident, 1, __ATOMIC_RELAXED);
            r->start = NULL;
            STORE(&r->nheld, 0);
            self_rec = r;
            /* Slots are given back by the key destructor at thread exit;
               keys below 32 never allocate in pthread_setspecific. */
            if (rec_key_ok)
                pthread_setspecific(rec_key, r);
            return r;
        }
    }
    return NULL; /* more than MAX_THREADS live threads: not tracked */
}

/* ------------------------------------------------------------ lock table */

#define LOCK_BITS  16
#define LOCK_SLOTS (1u << LOCK_BITS)
#define PROBES     32

struct lock_ent {
    uintptr_t addr; /* 0: empty; written once */
    unsigned owner; /* ident of the first thread to use it (0: none) */
    int shared;     /* used by a second thread */
    int kind;
    int tid1, tid2;
    void *site1, *site2;
};

static struct lock_ent locks[LOCK_SLOTS];

/* Shared locks destroyed during the run (their slot is reused by the next
   lock at that address), still to be reported at exit. */
#define RETIRED_MAX 128
static struct lock_ent retired[RETIRED_MAX];
static int nretired;

static inline size_t hash_ptr(uintptr_t a)
{
    return (size_t)(((uint64_t)(a >> 3) * 0x9e3779b97f4a7c15ull) >>
                    (64 - LOCK_BITS));
}

static struct lock_ent *lock_find(uintptr_t a, int insert)
{
    size_t h = hash_ptr(a);
    for (unsigned i = 0; i < PROBES; i++) {
        struct lock_ent *e = &locks[(h + i) & (LOCK_SLOTS - 1)];
        uintptr_t v = LOAD(&e->addr);
        if (v == a)
            return e;
        if (v == 0) {
            if (!insert)
                return NULL;
            if (__atomic_compare_exchange_n(
                    &e->addr, &v, a, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) ||
                v == a)
                return e;
        }
    }
    return NULL; /* table region full: this lock is not tracked */
}

static void lock_note(void *lock, int kind, void *site, struct thread_rec *r)
{
    struct lock_ent *e = lock_find((uintptr_t)lock, 1);
    if (!e)
        return;
    unsigned o = LOAD(&e->owner);
    if (o == r->ident || LOAD(&e->shared))
        return;
    if (o == 0) {
        if (__atomic_compare_exchange_n(&e->owner, &o, r->ident, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            e->kind = kind;
            e->site1 = site;
            e->tid1 = r->tid;
            return;
        }
        if (o == r->ident)
            return;
    }
    e->site2 = site;
    e->tid2 = r->tid;
    STORE(&e->shared, 1);
}

/* ------------------------------------------------------------ order edges */

#define EDGE_BITS  12
#define EDGE_SLOTS (1u << EDGE_BITS)

/* "b was taken while a was held", first seen at these sites. */
struct edge {
    uint64_t key; /* 0: empty */
    void *a, *b;
    void *site_a, *site_b;
    int tid;
    int ready;
};

static struct edge edges[EDGE_SLOTS];

static void edge_note(const struct held *outer, void *b, void *site,
                      struct thread_rec *r)
{
    uint64_t key = ((uint64_t)(uintptr_t)outer->lock * 0x9e3779b97f4a7c15ull) ^
                   ((uint64_t)(uintptr_t)b * 0xc2b2ae3d27d4eb4full);
    key |= 1;
    size_t h = (size_t)(key >> (64 - EDGE_BITS));
    for (unsigned i = 0; i < PROBES; i++) {
        struct edge *e = &edges[(h + i) & (EDGE_SLOTS - 1)];
        uint64_t v = LOAD(&e->key);
        if (v == key)
            return;
        if (v == 0) {
            if (!__atomic_compare_exchange_n(
                    &e->key, &v, key, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return; /* lost a race; the winner may be another edge */
            e->a = outer->lock;
            e->b = b;
            e->site_a = outer->site;
            e->site_b = site;
            e->tid = r->tid;
            STORE(&e->ready, 1);
            return;
        }
    }
}

/* ------------------------------------------------------------ held stack */

static inline void note_acquire(void *lock, int kind, void *site)
{
    struct thread_rec *r = self();
    if (!r)
        return;
    int n = r->nheld;
    if (n > 0 && r->held[n - 1].lock != lock)
        edge_note(&r->held[n - 1], lock, site, r);
    if (n == MAX_HELD) {
        /* Drop entries that other threads released (semaphores). */
        int k = 0;
        for (int i = 0; i < n; i++)
            if (r->held[i].lock)
                r->held[k++] = r->held[i];
        n = k;
    }
    if (n < MAX_HELD) {
        r->held[n].lock = lock;
        r->held[n].site = site;
        r->held[n].kind = kind;
        STORE(&r->nheld, n + 1);
    }
    lock_note(lock, kind, site, r);
}

/* Remove lock from this thread's held stack; 1 if it was there. */
static inline int note_release(void *lock)
{
    struct thread_rec *r = self_rec;
    if (!r)
        return 0;
    int n = r->nheld;
    for (int i = n - 1; i >= 0; i--) {
        if (r->held[i].lock != lock)
            continue;
        for (int j = i; j + 1 < n; j++)
            r->held[j] = r->held[j + 1];
        STORE(&r->nheld, n - 1);
        return 1;
    }
    return 0;
}

/* A semaphore posted by a thread that did not take it (a Python Lock
   released by another thread, a Condition's waiter lock): clear it from
   the taker's stack. Only the taker moves its own entries, so another
   thread just swaps the pointer for NULL, which readers skip. */
static void release_elsewhere(void *lock)
{
    int hwm = LOAD(&threads_hwm);
    for (int i = 0; i < hwm; i++) {
        struct thread_rec *t = &threads[i];
        if (t == self_rec || LOAD(&t->tid) == 0)
            continue;
        int nh = LOAD(&t->nheld);
        for (int j = 0; j < nh && j < MAX_HELD; j++) {
            void *expect = lock;
            if (LOAD(&t->held[j].lock) == lock &&
                __atomic_compare_exchange_n(&t->held[j].lock, &expect, NULL, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                return;
        }
    }
}

/* ------------------------------------------------------------ fork state */

#define SNAP_MAX 80

/* Locks other threads held when the last multi-threaded fork happened. */
struct snap {
    void *lock;
    void *site;
    int holder;
    int kind;
};

/* Small per-process "report once" sets: fork call sites, held locks,
   unsafe call sites, stdio streams. Reset in every child. */
#define ONCE_MAX 32
struct once {
    uintptr_t key[ONCE_MAX];
    int n;
};

/* Everything fork() and the child write, in one page: after fork() every
   page either process writes is copied, so keeping this state together
   costs one copy-on-write fault per process instead of one per variable. */
static struct {
    int child_mt;          /* we are a child of a multi-threaded fork */
    int child_has_threads; /* ... that has started threads since */
    int snap_busy;         /* a fork owns the snapshot */
    int nsnap;
    long forks; /* forks made by this process */
    struct once once_fork, once_held, once_unsafe, once_stdio;
    struct snap snap[SNAP_MAX];
} fk __attribute__((aligned(4096)));
_Static_assert(sizeof fk <= 4096, "fork state must fit in one page");

static long grace_ms = 2000;
static int exit_done;

/* 1 the first time key is offered (0 when already seen or the set is
   full, so a flood of findings is capped). */
static int once_first(struct once *o, uintptr_t key)
{
    int n = LOAD(&o->n);
    for (int i = 0; i < n && i < ONCE_MAX; i++)
        if (LOAD(&o->key[i]) == key)
            return 0;
    int slot = __atomic_fetch_add(&o->n, 1, __ATOMIC_ACQ_REL);
    if (slot >= ONCE_MAX)
        return 0;
    STORE(&o->key[slot], key);
    return 1;
}

static void once_reset(struct once *o)
{
    if (LOAD(&o->n)) /* no write, no page copy, when already empty */
        STORE(&o->n, 0);
}

/* Raw atfork registrations seen, and those made by libforksafe. */
static int atfork_seq, atfork_raw, atfork_registry;

static void thread_name(long tid, char *name, size_t len)
{
    char path[64] = "/proc/self/task/";
    char num[24];
    forksafe__fmt_dec(num, tid);
    forksafe__str_cat(path, sizeof path, num);
    forksafe__str_cat(path, sizeof path, "/comm");
    if (forksafe__read_small(path, name, len) < 0)
        forksafe__str_copy(name, len, "?");
}

struct dirent64_raw {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

/* Numeric entries of a /proc directory (tasks or fds): returns how many
   there are, and stores the first max of them in out. */
static int list_numeric(const char *dir, int *out, int max, int *dirfd_out)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (dirfd_out)
        *dirfd_out = fd;
    char buf[1024] __attribute__((aligned(8)));
    int n = 0;
    for (;;) {
        long got = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (got <= 0)
            break;
        for (long pos = 0; pos < got;) {
            struct dirent64_raw *d = (struct dirent64_raw *)(buf + pos);
            pos += d->reclen;
            if (d->name[0] < '0' || d->name[0] > '9')
                continue;
            int v = 0;
            for (const char *s = d->name; *s >= '0' && *s <= '9'; s++)
                v = v * 10 + (*s - '0');
            if (n < max)
                out[n] = v;
            n++; /* the count is exact even when out is full */
        }
    }
    close(fd);
    return n;
}

static void rec_common(struct forksafe__rec *r, const char *kind,
                       const char *sev)
{
    forksafe__rec_str(r, "kind", kind);
    forksafe__rec_str(r, "severity", sev);
    forksafe__rec_int(r, "pid", forksafe__getpid());
    forksafe__rec_int(r, "ppid", getppid());
    forksafe__rec_int(r, "tid", forksafe__gettid());
}

static struct thread_rec *rec_by_tid(int tid)
{
    int hwm = LOAD(&threads_hwm);
    for (int i = 0; i < hwm; i++)
        if (LOAD(&threads[i].tid) == tid)
            return &threads[i];
    return NULL;
}

static void report_fork_threads(void *site, const int *tids, int n, int me,
                                const char *call)
{
    if (!once_first(&fk.once_fork, (uintptr_t)site))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    rec_common(r, "fork-with-threads", "warning");
    forksafe__rec_str(r, "call", call);
    forksafe__rec_int(r, "threads", n);
    char name[64];
    thread_name(me, name, sizeof name);
    forksafe__rec_frame(r, "fork-call", me, name, site);
    for (int i = 0; i < n && i < 24; i++) {
        if (tids[i] == me)
            continue;
        struct thread_rec *t = rec_by_tid(tids[i]);
        thread_name(tids[i], name, sizeof name);
        forksafe__rec_frame(r, "thread-start", tids[i], name,
                            t ? t->start : NULL);
    }
    forksafe__rec_end(r);
}

static void report_held(void *site, const struct thread_rec *t,
                        const struct held *h)
{
    if (!once_first(&fk.once_held, (uintptr_t)h->lock ^ (uintptr_t)h->site))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    rec_common(r, "lock-held-at-fork", "warning");
    forksafe__rec_hex(r, "lock", (uintptr_t)h->lock);
    forksafe__rec_str(r, "lock_kind", kind_name(h->kind));
    forksafe__rec_int(r, "holder_tid", t->tid);
    char name[64];
    thread_name(t->tid, name, sizeof name);
    forksafe__rec_str(r, "holder_name", name);
    forksafe__rec_frame(r, "fork-call", forksafe__gettid(), NULL, site);
    forksafe__rec_frame(r, "lock-taken", t->tid, name, h->site);
    forksafe__rec_end(r);
}

static void report_stdio(void *site, FILE *f, const char *stream)
{
    size_t pending = f ? __fpending(f) : 0;
    if (!pending || !once_first(&fk.once_stdio, (uintptr_t)f))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    rec_common(r, "stdio-unflushed-at-fork", "warning");
    forksafe__rec_str(r, "stream", stream);
    forksafe__rec_int(r, "bytes", (long)pending);
    forksafe__rec_frame(r, "fork-call", forksafe__gettid(), NULL, site);
    forksafe__rec_end(r);
}

/* Everything fork() must look at before the real fork: the thread census,
   locks held by other threads, pending stdio. Returns 1 if the process is
   multi-threaded; *snapped says whether this fork owns the snapshot. */
static int before_fork(void *site, const char *call, int *snapped)
{
    /* Small stack frames here: after fork() both processes copy every
       stack page they write. */
    int tids[64];
    int me = (int)forksafe__gettid();
    struct thread_rec *mine = self();
    int n = list_numeric("/proc/self/task", tids, 64, NULL);
    int mt = n > 1;
    int expect = 0;
    *snapped = __atomic_compare_exchange_n(&fk.snap_busy, &expect, 1, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    __atomic_add_fetch(&fk.forks, 1, __ATOMIC_RELAXED);
    if (*snapped)
        fk.nsnap = 0;
    if (mt) {
        report_fork_threads(site, tids, n, me, call);
        int hwm = LOAD(&threads_hwm);
        for (int i = 0; i < hwm; i++) {
            struct thread_rec *t = &threads[i];
            if (t == mine || LOAD(&t->tid) == 0)
                continue;
            int nh = LOAD(&t->nheld);
            for (int j = 0; j < nh && j < MAX_HELD; j++) {
                struct held h = t->held[j];
                if (!h.lock)
                    continue;
                int v;
                if (h.kind == KIND_SEMAPHORE &&
                    (sem_getvalue(h.lock, &v) != 0 || v > 0))
                    continue; /* posted since: not held any more */
                if (*snapped && fk.nsnap < SNAP_MAX)
                    fk.snap[fk.nsnap++] =
                        (struct snap){h.lock, h.site, t->tid, h.kind};
                report_held(site, t, &h);
            }
        }
    }
    report_stdio(site, stdout, "stdout");
    report_stdio(site, stderr, "stderr");
    return mt;
}

static void after_fork(pid_t pid, int mt, int snapped)
{
    if (pid != 0) {
        if (snapped)
            STORE(&fk.snap_busy, 0);
        return;
    }
    /* In the child: only this thread exists. Keep the snapshot (that is
       what child-deadlock detection needs) and forget the other threads. */
    int saved = errno;
    struct thread_rec *mine = self_rec;
    if (mt) {
        STORE(&fk.child_mt, 1);
        STORE(&fk.child_has_threads, 0);
        /* Only touch live slots: writing to every slot would copy
           hundreds of pages after fork. */
        int hwm = LOAD(&threads_hwm);
        for (int i = 0; i < hwm; i++)
            if (&threads[i] != mine && LOAD(&threads[i].tid) != 0)
                rec_release(&threads[i]);
        if (!snapped)
            fk.nsnap = 0;
    }
    if (mine)
        STORE(&mine->tid, (int)forksafe__gettid());
    STORE(&fk.snap_busy, 0);
    once_reset(&fk.once_fork);
    once_reset(&fk.once_held);
    once_reset(&fk.once_unsafe);
    once_reset(&fk.once_stdio);
    fk.forks = 0;
    if (errno != saved)
        errno = saved;
}

/* fork() and _Fork(): the real call, preceded by the census, the held
   lock snapshot and the stdio check, and followed in the child by the
   switch to child mode. Same return value and errno as the real call;
   async-signal-safe as long as the real call is. */
EXPORT pid_t fork(void)
{
    void *site = __builtin_return_address(0);
    int saved = errno, snapped;
    int mt = before_fork(site, "fork", &snapped);
    if (errno != saved)
        errno = saved;
    pid_t pid = REAL(fork)();
    saved = errno;
    after_fork(pid, mt, snapped);
    if (errno != saved)
        errno = saved;
    return pid;
}

EXPORT pid_t _Fork(void)
{
    void *site = __builtin_return_address(0);
    int saved = errno, snapped;
    int mt = before_fork(site, "_Fork", &snapped);
    if (errno != saved)
        errno = saved;
    pid_t pid = REAL(_Fork)();
    saved = errno;
    after_fork(pid, mt, snapped);
    if (errno != saved)
        errno = saved;
    return pid;
}

/* ------------------------------------------------------------ child */

/* Report fn as called from site in a child of a multi-threaded parent,
   once per call site. */
static void note_unsafe(const char *fn, void *site)
{
    if (!LOAD(&fk.child_mt) || in_hook || in_resolve)
        return;
    if (!once_first(&fk.once_unsafe, (uintptr_t)site))
        return;
    int saved = errno;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (r) {
        rec_common(r, "unsafe-call-in-child", "warning");
        forksafe__rec_str(r, "function", fn);
        forksafe__rec_frame(r, "call", forksafe__gettid(), NULL, site);
        forksafe__rec_end(r);
    }
    if (errno != saved)
        errno = saved;
}

#define CHECK_CHILD(fn)                                                        \
    do {                                                                       \
        if (UNLIKELY(LOAD(&fk.child_mt)))                                      \
            note_unsafe(fn, __builtin_return_address(0));                      \
    } while (0)

static void deadlock_exit(void *m, int kind, void *site, int holder,
                          void *holder_site)
{
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (r) {
        rec_common(r, "child-deadlock", "error");
        forksafe__rec_hex(r, "lock", (uintptr_t)m);
        forksafe__rec_str(r, "lock_kind", kind_name(kind));
        forksafe__rec_int(r, "holder_tid", holder);
        forksafe__rec_int(r, "grace_ms", grace_ms);
        forksafe__rec_int(r, "exit_status", FORKSAFE_AUDIT_DEADLOCK_STATUS);
        forksafe__rec_frame(r, "lock-call", forksafe__gettid(), NULL, site);
        if (holder_site)
            forksafe__rec_frame(r, "lock-taken", holder, NULL, holder_site);
        forksafe__rec_end(r);
    }
    _exit(FORKSAFE_AUDIT_DEADLOCK_STATUS);
}

/* Process-shared locks can be released by another process (or by the
   parent's threads, through shared memory): a child waiting on one is not
   stuck, and is never ended. glibc 2.36 (x86_64) marks them with bit 128:
   in a mutex's __kind (PTHREAD_MUTEX_PSHARED_BIT) and in the int after a
   semaphore's 64-bit value word; both checked on this machine with
   pthread_mutexattr_setpshared and sem_init(s, 1, v). */
static int mutex_pshared(const pthread_mutex_t *m)
{
    return (m->__data.__kind & 128) != 0;
}

static int sem_pshared(const sem_t *s)
{
    return (((const int *)(const void *)s)[2] & 128) != 0;
}

/* Now + the grace period, on CLOCK_MONOTONIC. */
static void grace_deadline(struct timespec *ts)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += grace_ms / 1000;
    ts->tv_nsec += (grace_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* In a child of a multi-threaded fork, a lock that another thread held at
   the fork can never be released: wait for it for the grace period only.
   Returns the lock result, or -1 to take the normal path. */
static int child_lock(pthread_mutex_t *m, void *site)
{
    note_unsafe("pthread_mutex_lock", site);
    /* Without a record directory the interposer changes nothing, not even
       a hanging child. */
    if (LOAD(&fk.child_has_threads) || !forksafe__out_enabled() ||
        mutex_pshared(m))
        return -1;
    int holder = 0;
    void *holder_site = NULL;
    for (int i = 0; i < fk.nsnap; i++)
        if (fk.snap[i].lock == m) {
            holder = fk.snap[i].holder;
            holder_site = fk.snap[i].site;
        }
    int r = REAL(pthread_mutex_trylock)(m);
    if (r != EBUSY)
        return r;
    /* Busy in a single-threaded child: the holder is a thread that did not
       survive the fork, unless it is this thread itself (a relock). glibc
       keeps the holder's TID in __owner for every mutex type. */
    int owner = m->__data.__owner;
    if (!holder && owner != 0 && owner != (int)forksafe__gettid())
        holder = owner;
    if (!holder)
        return -1;
    struct timespec ts;
    grace_deadline(&ts);
    r = REAL(pthread_mutex_clocklock)(m, CLOCK_MONOTONIC, &ts);
    if (r == ETIMEDOUT)
        deadlock_exit(m, KIND_MUTEX, site, holder, holder_site);
    return r;
}

/* ------------------------------------------------------------ lock hooks */

/* Every hook below keeps the contract of the glibc function it wraps
   (same result, same errno) and only adds bookkeeping: a successful
   acquire is pushed on the caller's held stack and noted in the lock
   table; a release is popped. In a child of a multi-threaded fork,
   pthread_mutex_lock and sem_wait on a lock another thread held at the
   fork wait only for the grace period, then report child-deadlock and end
   the child with FORKSAFE_AUDIT_DEADLOCK_STATUS instead of hanging. */

EXPORT int pthread_mutex_lock(pthread_mutex_t *m)
{
    void *site = __builtin_return_address(0);
    int r;
    if (UNLIKELY(LOAD(&fk.child_mt)) && !in_hook &&
        (r = child_lock(m, site)) != -1) {
        if (r == 0)
            note_acquire(m, KIND_MUTEX, site);
        return r;
    }
    r = REAL(pthread_mutex_lock)(m);
    if (r == 0 && !in_hook)
        note_acquire(m, KIND_MUTEX, site);
    return r;
}

EXPORT int pthread_mutex_trylock(pthread_mutex_t *m)
{
    int r = REAL(pthread_mutex_trylock)(m);
    if (r == 0 && !in_hook)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_timedlock(pthread_mutex_t *m,
                                   const struct timespec *ts)
{
    int r = REAL(pthread_mutex_timedlock)(m, ts);
    if (r == 0 && !in_hook)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t c,
                                   const struct timespec *ts)
{
    int r = REAL(pthread_mutex_clocklock)(m, c, ts);
    if (r == 0 && !in_hook)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_mutex_unlock(pthread_mutex_t *m)
{
    if (!in_hook)
        note_release(m);
    return REAL(pthread_mutex_unlock)(m);
}

/* The lock is going away and its address may be reused for an unrelated
   one: forget its users, and drop it from any held stack, so that nothing
   later reads a destroyed lock. */
static void forget_lock(void *lock)
{
    if (in_hook)
        return;
    struct lock_ent *e = lock_find((uintptr_t)lock, 0);
    if (e) {
        if (LOAD(&e->shared)) {
            /* It was shared while it lived: keep it for the exit report. */
            int i = __atomic_fetch_add(&nretired, 1, __ATOMIC_ACQ_REL);
            if (i < RETIRED_MAX)
                retired[i] = *e;
        }
        STORE(&e->shared, 0);
        STORE(&e->owner, 0);
    }
    while (note_release(lock))
        ;
    release_elsewhere(lock);
}

EXPORT int pthread_mutex_destroy(pthread_mutex_t *m)
{
    forget_lock(m);
    return REAL(pthread_mutex_destroy)(m);
}

EXPORT int pthread_rwlock_rdlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_rdlock)(l);
    if (r == 0 && !in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_wrlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_wrlock)(l);
    if (r == 0 && !in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_tryrdlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_tryrdlock)(l);
    if (r == 0 && !in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_trywrlock(pthread_rwlock_t *l)
{
    int r = REAL(pthread_rwlock_trywrlock)(l);
    if (r == 0 && !in_hook)
        note_acquire(l, KIND_RWLOCK, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_rwlock_unlock(pthread_rwlock_t *l)
{
    if (!in_hook)
        note_release(l);
    return REAL(pthread_rwlock_unlock)(l);
}

/* A condition wait releases the mutex while it sleeps: a thread parked in
   pthread_cond_wait does not hold it, and must not be reported as if it
   did. */
EXPORT int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    int tracked = !in_hook && note_release(m);
    int r = REAL(pthread_cond_wait)(c, m);
    if (tracked)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  const struct timespec *ts)
{
    int tracked = !in_hook && note_release(m);
    int r = REAL(pthread_cond_timedwait)(c, m, ts);
    if (tracked)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

EXPORT int pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m,
                                  clockid_t clk, const struct timespec *ts)
{
    int tracked = !in_hook && note_release(m);
    int r = REAL(pthread_cond_clockwait)(c, m, clk, ts);
    if (tracked)
        note_acquire(m, KIND_MUTEX, __builtin_return_address(0));
    return r;
}

/* Semaphores used as locks (CPython's threading.Lock is one): a successful
   wait takes it, a post releases it, possibly from another thread. */
EXPORT int sem_wait(sem_t *s)
{
    void *site = __builtin_return_address(0);
    if (UNLIKELY(LOAD(&fk.child_mt)) && !in_hook) {
        note_unsafe("sem_wait", site);
        int holder = 0;
        void *holder_site = NULL;
        for (int i = 0; i < fk.nsnap; i++)
            if (fk.snap[i].lock == (void *)s) {
                holder = fk.snap[i].holder;
                holder_site = fk.snap[i].site;
            }
        int v;
        if (holder && !LOAD(&fk.child_has_threads) && forksafe__out_enabled() &&
            !sem_pshared(s) && sem_getvalue(s, &v) == 0 && v == 0) {
            struct timespec ts;
            grace_deadline(&ts);
            int r = REAL(sem_clockwait)(s, CLOCK_MONOTONIC, &ts);
            if (r != 0 && errno == ETIMEDOUT)
                deadlock_exit(s, KIND_SEMAPHORE, site, holder, holder_site);
            if (r == 0)
                note_acquire(s, KIND_SEMAPHORE, site);
            return r;
        }
    }
    int r = REAL(sem_wait)(s);
    if (r == 0 && !in_hook)
        note_acquire(s, KIND_SEMAPHORE, site);
    return r;
}

EXPORT int sem_trywait(sem_t *s)
{
    int r = REAL(sem_trywait)(s);
    if (r == 0 && !in_hook)
        note_acquire(s, KIND_SEMAPHORE, __builtin_return_address(0));
    return r;
}

EXPORT int sem_timedwait(sem_t *s, const struct timespec *ts)
{
    int r = REAL(sem_timedwait)(s, ts);
    if (r == 0 && !in_hook)
        note_acquire(s, KIND_SEMAPHORE, __builtin_return_address(0));
    return r;
}

EXPORT int sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *ts)
{
    int r = REAL(sem_clockwait)(s, clk, ts);
    if (r == 0 && !in_hook)
        note_acquire(s, KIND_SEMAPHORE, __builtin_return_address(0));
    return r;
}

EXPORT int sem_destroy(sem_t *s)
{
    forget_lock(s);
    return REAL(sem_destroy)(s);
}

EXPORT int sem_post(sem_t *s)
{
    /* sem_post is async-signal-safe: only our own bookkeeping here. */
    if (!in_hook && !note_release(s))
        release_elsewhere(s);
    return REAL(sem_post)(s);
}

/* ------------------------------------------------------------ threads */

/* (start routine, argument) handed from pthread_create to the new thread
   through a static pool, not malloc: freeing in the new thread would make
   glibc give it its own arena, one more lock for every later fork. */
#define TRAMPS 256

struct tramp {
    void *(*fn)(void *);
    void *arg;
    int busy;
};

static struct tramp tramps[TRAMPS];

static void *trampoline(void *p)
{
    struct tramp *slot = p;
    void *(*fn)(void *) = slot->fn;
    void *arg = slot->arg;
    STORE(&slot->busy, 0);
    struct thread_rec *r = self();
    if (r)
        r->start = (void *)fn;
    return fn(arg);
}

/* pthread_create(): starts the thread through trampoline() so that its
   start routine can be named in fork-with-threads. Same result as the real
   call. */
EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr,
                          void *(*fn)(void *), void *arg)
{
    if (UNLIKELY(LOAD(&fk.child_mt)))
        STORE(&fk.child_has_threads, 1);
    for (int i = 0; i < TRAMPS; i++) {
        int expect = 0;
        if (LOAD(&tramps[i].busy) ||
            !__atomic_compare_exchange_n(&tramps[i].busy, &expect, 1, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        tramps[i].fn = fn;
        tramps[i].arg = arg;
        int r = REAL(pthread_create)(th, attr, trampoline, &tramps[i]);
        if (r != 0)
            STORE(&tramps[i].busy, 0);
        return r;
    }
    /* Pool exhausted (hundreds of threads starting at once): the thread
       runs untracked, with no start routine in reports. */
    return REAL(pthread_create)(th, attr, fn, arg);
}

/* ------------------------------------------------------------ atfork */

static int is_forksafe_object(const char *obj)
{
    const char *base = strrchr(obj, '/');
    base = base ? base + 1 : obj;
    return strncmp(base, "libforksafe", 11) == 0 &&
           strncmp(base, "libforksafe-audit", 17) != 0;
}

/* What pthread_atfork() (linked statically into every object from
   libc_nonshared.a) calls: registers with glibc as usual, then records the
   handlers with their owning object (dso is that object's __dso_handle).
   Registrations made by libforksafe count as "through the registry". */
EXPORT int __register_atfork(void (*prepare)(void), void (*parent)(void),
                             void (*child)(void), void *dso)
{
    int r = REAL(__register_atfork)(prepare, parent, child, dso);
    if (r != 0 || in_hook)
        return r;
    int seq = __atomic_add_fetch(&atfork_seq, 1, __ATOMIC_RELAXED);
    char obj[300];
    uintptr_t off;
    if (!dso || forksafe__maps_find(dso, obj, sizeof obj, &off) != 0)
        forksafe__str_copy(obj, sizeof obj, "?");
    int registry = is_forksafe_object(obj);
    __atomic_add_fetch(registry ? &atfork_registry : &atfork_raw, 1,
                       __ATOMIC_RELAXED);
    struct forksafe__rec *rec =
        forksafe__rec_begin(registry ? "atfork" : "finding");
    if (!rec)
        return r;
    if (!registry)
        rec_common(rec, "raw-atfork-handler", "warning");
    else
        forksafe__rec_int(rec, "pid", forksafe__getpid());
    forksafe__rec_int(rec, "seq", seq);
    forksafe__rec_str(rec, "object", obj);
    if (prepare)
        forksafe__rec_frame(rec, "prepare", 0, NULL, (void *)prepare);
    if (parent)
        forksafe__rec_frame(rec, "parent", 0, NULL, (void *)parent);
    if (child)
        forksafe__rec_frame(rec, "child", 0, NULL, (void *)child);
    forksafe__rec_end(rec);
    return r;
}

/* ------------------------------------------------------------ child calls */

/* Calls that are not async-signal-safe: in a child of a multi-threaded
   fork the first call from each call site is reported, then the real
   function runs (the program is never stopped here). Elsewhere they only
   forward. malloc and calloc go straight to glibc while dlsym resolves the
   real functions, since dlsym itself may allocate. */

EXPORT void *malloc(size_t n)
{
    if (UNLIKELY(in_resolve))
        return __libc_malloc(n);
    CHECK_CHILD("malloc");
    return REAL(malloc)(n);
}

EXPORT void *calloc(size_t n, size_t size)
{
    if (UNLIKELY(in_resolve))
        return __libc_calloc(n, size);
    CHECK_CHILD("calloc");
    return REAL(calloc)(n, size);
}

EXPORT void *realloc(void *p, size_t n)
{
    CHECK_CHILD("realloc");
    return REAL(realloc)(p, n);
}

EXPORT void free(void *p)
{
    if (UNLIKELY(in_resolve)) {
        __libc_free(p);
        return;
    }
    CHECK_CHILD("free");
    REAL(free)(p);
}

EXPORT int printf(const char *fmt, ...)
{
    CHECK_CHILD("printf");
    va_list ap;
    va_start(ap, fmt);
    int r = REAL(vprintf)(fmt, ap);
    va_end(ap);
    return r;
}

EXPORT int fprintf(FILE *f, const char *fmt, ...)
{
    CHECK_CHILD("fprintf");
    va_list ap;
    va_start(ap, fmt);
    int r = REAL(vfprintf)(f, fmt, ap);
    va_end(ap);
    return r;
}

EXPORT int puts(const char *s)
{
    CHECK_CHILD("puts");
    return REAL(puts)(s);
}

EXPORT int fputs(const char *s, FILE *f)
{
    CHECK_CHILD("fputs");
    return REAL(fputs)(s, f);
}

EXPORT size_t fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    CHECK_CHILD("fwrite");
    return REAL(fwrite)(p, size, n, f);
}

EXPORT int fflush(FILE *f)
{
    CHECK_CHILD("fflush");
    return REAL(fflush)(f);
}

/* ------------------------------------------------------------ exit report */

/* Libraries known to need care across fork, the forksafe adapter that
   gives it, and whether there is no safe way at all (exec instead). */
static const struct known_lib {
    const char *prefix;
    const char *adapter;
    int no_safe_way;
} known_libs[] = {
    {"libssl.so", "openssl", 0},      {"libcrypto.so", "openssl", 0},
    {"libsqlite3.so", "sqlite", 0},   {"libcurl.so", "curl", 0},
    {"libcurl-gnutls.so", "curl", 0}, {"libuv.so", "uv", 0},
    {"libevent", "event", 0},         {"libzmq.so", "zmq", 0},
    {"libglib-2.0.so", "glib", 1},    {"libgrpc", "grpc", 1},
    {"libdbus-1.so", "dbus", 1},      {"libnss3.so", "nss", 1},
    {"libcuda.so", "cuda", 1},        {"libmpi", "mpi", 1},
};
#define N_KNOWN (sizeof known_libs / sizeof known_libs[0])

/* Which known libraries are mapped: one flag per known_libs row, the
   object path of the first mapping of each in paths. */
static void scan_known(int *present, char (*paths)[256])
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char chunk[1024], line[640];
    size_t ll = 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            if (chunk[i] != '\n') {
                if (ll + 1 < sizeof line)
                    line[ll++] = chunk[i];
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            const char *path = strchr(line, '/');
            if (!path)
                continue;
            const char *base = strrchr(path, '/') + 1;
            for (size_t k = 0; k < N_KNOWN; k++)
                if (!present[k] && strncmp(base, known_libs[k].prefix,
                                           strlen(known_libs[k].prefix)) == 0) {
                    present[k] = 1;
                    forksafe__str_copy(paths[k], 256, path);
                }
        }
    }
    close(fd);
}

typedef int (*lookup_fn)(const void *, struct forksafe_info *);
typedef int (*installed_fn)(const char *);

static void report_adapters(installed_fn installed, int *present_n,
                            int *needed_n)
{
    int present[N_KNOWN] = {0};
    static char paths[N_KNOWN][256];
    scan_known(present, paths);
    for (size_t k = 0; k < N_KNOWN; k++) {
        if (!present[k])
            continue;
        int dup = 0;
        for (size_t j = 0; j < k; j++)
            dup |= present[j] &&
                   strcmp(known_libs[j].adapter, known_libs[k].adapter) == 0;
        if (dup)
            continue;
        (*needed_n)++;
        int have = !known_libs[k].no_safe_way && installed &&
                   installed(known_libs[k].adapter);
        if (have) {
            (*present_n)++;
            continue;
        }
        struct forksafe__rec *r = forksafe__rec_begin("finding");
        if (!r)
            continue;
        rec_common(r, "library-without-adapter",
                   known_libs[k].no_safe_way ? "error" : "warning");
        forksafe__rec_str(r, "library", paths[k]);
        forksafe__rec_str(r, "adapter", known_libs[k].adapter);
        forksafe__rec_int(r, "no_safe_way", known_libs[k].no_safe_way);
        forksafe__rec_end(r);
    }
}

static void report_locks(lookup_fn lookup, long *shared_n, long *reg_n)
{
    int unreported_cap = 64;
    int nret = LOAD(&nretired);
    if (nret > RETIRED_MAX)
        nret = RETIRED_MAX;
    for (size_t i = 0; i < LOCK_SLOTS + (size_t)nret; i++) {
        struct lock_ent *e =
            i < LOCK_SLOTS ? &locks[i] : &retired[i - LOCK_SLOTS];
        if (!LOAD(&e->addr) || !LOAD(&e->shared))
            continue;
        char obj[300];
        uintptr_t off;
        if (forksafe__maps_find(e->site1, obj, sizeof obj, &off) == 0 &&
            is_forksafe_object(obj))
            continue; /* libforksafe's own locks: it handles them itself */
        (*shared_n)++;
        struct forksafe_info info;
        if (lookup && lookup((void *)e->addr, &info) == 0) {
            (*reg_n)++;
            continue;
        }
        if (unreported_cap-- <= 0)
            continue;
        struct forksafe__rec *r = forksafe__rec_begin("finding");
        if (!r)
            continue;
        rec_common(r, "unregistered-shared-lock", "warning");
        forksafe__rec_hex(r, "lock", e->addr);
        forksafe__rec_str(r, "lock_kind", kind_name(e->kind));
        forksafe__rec_frame(r, "first-lock", e->tid1, NULL, e->site1);
        forksafe__rec_frame(r, "other-thread-lock", e->tid2, NULL, e->site2);
        forksafe__rec_end(r);
    }
}

static void report_order(lookup_fn lookup)
{
    if (!lookup)
        return;
    for (size_t i = 0; i < EDGE_SLOTS; i++) {
        struct edge *e = &edges[i];
        if (!LOAD(&e->ready))
            continue;
        struct forksafe_info ia, ib;
        if (lookup(e->a, &ia) != 0 || lookup(e->b, &ib) != 0 ||
            ia.rank <= ib.rank)
            continue;
        struct forksafe__rec *r = forksafe__rec_begin("finding");
        if (!r)
            continue;
        rec_common(r, "lock-order-violation", "error");
        forksafe__rec_str(r, "held_name", ia.name);
        forksafe__rec_int(r, "held_rank", (long)ia.rank);
        forksafe__rec_hex(r, "held_lock", (uintptr_t)e->a);
        forksafe__rec_str(r, "taken_name", ib.name);
        forksafe__rec_int(r, "taken_rank", (long)ib.rank);
        forksafe__rec_hex(r, "taken_lock", (uintptr_t)e->b);
        forksafe__rec_frame(r, "held-taken", e->tid, NULL, e->site_a);
        forksafe__rec_frame(r, "taken", e->tid, NULL, e->site_b);
        forksafe__rec_end(r);
    }
}

/* Registration facts (name, rank) for every registered lock this process
   used, so the CLI can say whether a lock reported as held at fork was
   covered by forksafe. */
static void report_lockinfo(lookup_fn lookup)
{
    for (size_t i = 0; i < LOCK_SLOTS; i++) {
        struct lock_ent *e = &locks[i];
        uintptr_t a = LOAD(&e->addr);
        if (!a || !lookup)
            continue;
        struct forksafe_info info;
        if (lookup((void *)a, &info) != 0)
            continue;
        struct forksafe__rec *r = forksafe__rec_begin("lockinfo");
        if (!r)
            continue;
        forksafe__rec_int(r, "pid", forksafe__getpid());
        forksafe__rec_hex(r, "lock", a);
        forksafe__rec_str(r, "name", info.name);
        forksafe__rec_int(r, "rank", (long)info.rank);
        forksafe__rec_end(r);
    }
}

/* The exit report. early: called before the loader's destructors (from
   exit() or from the handler registered when main starts), so the program's
   libraries, libforksafe included, can still be called. Late (the fallback
   handler registered by our constructor, for programs whose main we did
   not see): they may be torn down already, so no registry questions. */
static void exit_report(int early)
{
    if (__atomic_exchange_n(&exit_done, 1, __ATOMIC_ACQ_REL))
        return;
    if (!forksafe__out_enabled())
        return;
    int saved = errno;
    long shared_n = 0, reg_n = 0;
    int present_n = 0, needed_n = 0;
    in_hook++;
    /* In a child of a multi-threaded fork the registry may be unusable;
       only the summary is written there. */
    lookup_fn lookup = NULL;
    installed_fn installed = NULL;
    if (!LOAD(&fk.child_mt)) {
        if (early) {
            lookup = (lookup_fn)dlsym(RTLD_DEFAULT, "forksafe_lookup");
            installed =
                (installed_fn)dlsym(RTLD_DEFAULT, "forksafe_adapter_installed");
        }
        report_locks(lookup, &shared_n, &reg_n);
        report_order(lookup);
        report_lockinfo(lookup);
        if (LOAD(&fk.forks) > 0)
            report_adapters(installed, &present_n, &needed_n);
    }
    struct forksafe__rec *r = forksafe__rec_begin("summary");
    if (r) {
        forksafe__rec_int(r, "pid", forksafe__getpid());
        forksafe__rec_int(r, "forks", LOAD(&fk.forks));
        forksafe__rec_int(r, "shared_locks", shared_n);
        forksafe__rec_int(r, "registered_shared_locks", reg_n);
        forksafe__rec_int(r, "atfork_raw", LOAD(&atfork_raw));
        forksafe__rec_int(r, "atfork_registry", LOAD(&atfork_registry));
        forksafe__rec_int(r, "registry_available", lookup != NULL);
        forksafe__rec_int(r, "adapters_present", present_n);
        forksafe__rec_int(r, "adapters_needed", needed_n);
        forksafe__rec_end(r);
    }
    in_hook--;
    if (errno != saved)
        errno = saved;
}

static void audit_exit(void)
{
    exit_report(1);
}

static void audit_exit_late(void)
{
    exit_report(0);
}

/* exit(): the exit report first, then the real exit. */
EXPORT void exit(int status)
{
    /* Run the report while every library is still usable (a plain atexit
       handler may run after libforksafe's own teardown). */
    audit_exit();
    void (*real_exit)(int) = (void (*)(int))resolve("exit");
    real_exit(status);
    __builtin_unreachable();
}

/* The exit report must run before the dynamic loader's destructors
   (_dl_fini), while libforksafe still answers lookups. An atexit handler
   registered from our constructor would run after them: the loader
   registers _dl_fini later, in __libc_start_main. So main() is wrapped and
   the handler registered when it starts. */
typedef int (*main_fn)(int, char **, char **);
static main_fn real_main;
int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void),
                      void (*fini)(void), void (*rtld_fini)(void),
                      void *stack_end);

static int main_wrapper(int argc, char **argv, char **envp)
{
    atexit(audit_exit);
    return real_main(argc, argv, envp);
}

EXPORT int __libc_start_main(main_fn main, int argc, char **argv,
                             void (*init)(void), void (*fini)(void),
                             void (*rtld_fini)(void), void *stack_end)
{
    int (*real)(main_fn, int, char **, void (*)(void), void (*)(void),
                void (*)(void), void *) =
        (int (*)(main_fn, int, char **, void (*)(void), void (*)(void),
                 void (*)(void), void *))resolve("__libc_start_main");
    real_main = main;
    return real(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end);
}

/* ------------------------------------------------------------ exec'd fds */

static void describe_socket(int fd, char *out, size_t len)
{
    int domain = 0, type = 0;
    socklen_t sl = sizeof domain;
    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &sl);
    sl = sizeof type;
    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl);
    forksafe__str_copy(out, len,
                       domain == AF_INET    ? "ipv4 "
                       : domain == AF_INET6 ? "ipv6 "
                       : domain == AF_UNIX  ? "unix "
                                            : "other ");
    forksafe__str_cat(out, len,
                      type == SOCK_STREAM  ? "stream"
                      : type == SOCK_DGRAM ? "dgram"
                                           : "other");
}

/* A process started by exec inside the audited tree: every descriptor
   above 2 that it inherited survived an exec without close-on-exec. */
static void report_inherited_fds(void)
{
    int fds[256], dirfd = -1;
    int n = list_numeric("/proc/self/fd", fds, 256, &dirfd);
    for (int i = 0; i < n && i < 32; i++) {
        int fd = fds[i];
        if (fd <= 2 || fd == dirfd)
            continue;
        char path[64] = "/proc/self/fd/", num[24], target[400];
        forksafe__fmt_dec(num, fd);
        forksafe__str_cat(path, sizeof path, num);
        long tl = readlink(path, target, sizeof target - 1);
        if (tl < 0)
            continue;
        target[tl] = '\0';
        struct stat st;
        if (fstat(fd, &st) != 0)
            continue;
        struct forksafe__rec *r = forksafe__rec_begin("finding");
        if (!r)
            continue;
        rec_common(r, "fd-leak-on-exec", "warning");
        forksafe__rec_int(r, "fd", fd);
        forksafe__rec_str(r, "target", target);
        if (S_ISSOCK(st.st_mode)) {
            char desc[32];
            describe_socket(fd, desc, sizeof desc);
            forksafe__rec_str(r, "socket", desc);
        }
        forksafe__rec_int(r, "dev", (long)st.st_dev);
        forksafe__rec_int(r, "ino", (long)st.st_ino);
        forksafe__rec_end(r);
    }
}

/* ------------------------------------------------------------ setup */

__attribute__((constructor)) static void audit_init(void)
{
    int saved = errno;
    forksafe__out_init();
    REAL(pthread_mutex_lock);
    REAL(pthread_mutex_unlock);
    REAL(pthread_mutex_trylock);
    REAL(pthread_mutex_clocklock);
    REAL(fork);
    REAL(malloc);
    REAL(free);
    REAL(calloc);
    REAL(realloc);
    rec_key_ok = pthread_key_create(&rec_key, rec_release) == 0;
    /* A fallback for programs whose main() we did not see start; see
       main_wrapper for why that one is preferred. */
    atexit(audit_exit_late);
    self();
    const char *g = getenv("FORKSAFE_AUDIT_GRACE_MS");
    if (g && *g >= '0' && *g <= '9')
        grace_ms = strtol(g, NULL, 10);
    if (!forksafe__out_enabled()) {
        if (errno != saved)
            errno = saved;
        return;
    }
    /* The descriptor scan comes first, before our own record file is
       opened. */
    const char *root = getenv("FORKSAFE_AUDIT_ROOT");
    if (root && strtol(root, NULL, 10) != forksafe__getpid())
        report_inherited_fds();
    if (errno != saved)
        errno = saved;
}
