/* SPDX-License-Identifier: MIT */
/*
 * fork.c: fork(), _Fork() and forksafe_fork() as the audit sees them.
 * Before the real call they take a census of the threads, snapshot the
 * locks other threads hold, and note what the child inherits (pending
 * stdio, library state); while the call runs (the prepare window) they
 * see which locks the fork handlers' prepare takes; after it, the parent
 * reports the locks other threads held with whether a prepare covered
 * them (fork-with-threads, lock-held-at-fork), and the child switches the
 * audit to watching whether it runs on (child.c). Also the fork state
 * page and the small record helpers the other hook files share.
 *
 * Nothing here dereferences the program's memory directly: a lock another
 * thread took may be gone (closed, unmapped, freed), so its state is read
 * fault-safe from a copy (safemem.c), and so is stdio's buffer state. When
 * the thread census cannot run (no descriptor left to open
 * /proc/self/task), the fork is counted in the run page as "could not
 * count threads" and treated as multi-threaded, so that the child keeps
 * its deadlock guard.
 */
#include "audit.h"

#include "runpage.h"

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/single_threaded.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "forksafe.h"

/* ------------------------------------------------------------ fork state */

/* Everything fork() and the child write, in one page: after fork() every
   page either process writes is copied, so keeping this state together
   costs one copy-on-write fault per process instead of one per variable. */
char forksafe__audit_fk_space[2 * 4096];
_Static_assert(sizeof(struct fork_state) <= 4096,
               "fork state must fit in one page");
struct snap_name forksafe__audit_snap_names[SNAP_MAX];

HOT forksafe__lookup_fn forksafe__audit_lookup;
TLS int forksafe__audit_forking;
HOT uintptr_t forksafe__audit_core_lo, forksafe__audit_core_hi;

#define fk forksafe__audit_fk

/* The forks this process made (and those made while other threads were
   alive). The counts carry the pid they belong to, so that a child, which
   inherits them, need not reset them: a single-threaded fork writes
   nothing in the child (every page the child writes is a copy-on-write
   fault, and shell scripts fork all the time). */
HOT static long forks_n, forks_mt_n, forks_pid;

static void count_fork(int mt, long pid)
{
    if (LOAD(&forks_pid) != pid) {
        STORE(&forks_n, 0);
        STORE(&forks_mt_n, 0);
        STORE(&forks_pid, pid);
    }
    __atomic_add_fetch(&forks_n, 1, __ATOMIC_RELAXED);
    if (mt)
        __atomic_add_fetch(&forks_mt_n, 1, __ATOMIC_RELAXED);
}

/* A program image that never forked (forks_pid 0) needs no getpid. */
long forksafe__audit_forks(void)
{
    long pid = LOAD(&forks_pid);
    return pid && pid == forksafe__getpid() ? LOAD(&forks_n) : 0;
}

long forksafe__audit_forks_mt(void)
{
    long pid = LOAD(&forks_pid);
    return pid && pid == forksafe__getpid() ? LOAD(&forks_mt_n) : 0;
}

/* 1 the first time key is offered (0 when already seen or the set is
   full, so a flood of findings is capped). */
int forksafe__audit_once_first(struct once *o, uintptr_t key)
{
    int n = LOAD(&o->n);
    if (n >= ONCE_MAX)
        return 0; /* full: no atomic write on every call from now on */
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

void forksafe__audit_thread_name(long tid, char *name, size_t len)
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
int forksafe__audit_list_numeric(const char *dir, int *out, int max,
                                 int *dirfd_out)
{
    int fd = forksafe__open_spare(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return -(errno ? errno : EIO);
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

void forksafe__audit_rec_common(struct forksafe__rec *r, const char *kind,
                                const char *sev)
{
    forksafe__rec_str(r, "kind", kind);
    forksafe__rec_str(r, "severity", sev);
    forksafe__rec_int(r, "pid", forksafe__getpid());
    forksafe__rec_int(r, "ppid", getppid());
    forksafe__rec_int(r, "tid", forksafe__gettid());
}

/* ------------------------------------------------------------ prepare */

/* The locks taken inside the prepare window of the last fork that owned
   the set: in the parent until its next fork, in the child for good (the
   child inherits it). Filled in order, so a fork touches as many pages of
   it as its prepare takes locks; sorted lazily in a child that asks. */
#define PREP_MAX 16384
static void *prepared[PREP_MAX];
HOT static int prep_n;      /* locks noted; more than PREP_MAX: overflow */
HOT static int prep_sorted; /* prepared[0, prep_n) is sorted */
HOT static int prep_busy;   /* an open window owns the set */
HOT static int windows;     /* windows open in this process */
static TLS int prep_depth;  /* windows open on this thread */
static TLS int prep_owner;  /* this thread's outermost window owns the set */

/* "b taken while a was held" inside a prepare window. */
#define PREP_EDGES 64
static struct {
    void *a, *b;
} prep_edges[PREP_EDGES];
HOT static int prep_edges_n;

static void window_open(void)
{
    if (prep_depth++)
        return;
    int expect = 0;
    prep_owner = __atomic_compare_exchange_n(&prep_busy, &expect, 1, 0,
                                             __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    if (prep_owner) {
        if (LOAD(&prep_n))
            STORE(&prep_n, 0);
        if (LOAD(&prep_sorted))
            STORE(&prep_sorted, 0);
    }
    if (__atomic_add_fetch(&windows, 1, __ATOMIC_ACQ_REL) == 1 &&
        !LOAD(&forksafe__policy_slow))
        STORE(&forksafe__policy_slow, 1);
}

static void window_close(void)
{
    if (!prep_depth || --prep_depth)
        return;
    if (prep_owner) {
        STORE(&prep_busy, 0);
        prep_owner = 0;
    }
    if (__atomic_sub_fetch(&windows, 1, __ATOMIC_ACQ_REL) == 0 &&
        !LOAD(&fk.watch))
        STORE(&forksafe__policy_slow, 0);
}

/* In the child: its only thread's windows are over. */
static void window_child(void)
{
    if (prep_depth)
        prep_depth = 0;
    if (prep_owner)
        prep_owner = 0;
    if (LOAD(&windows))
        STORE(&windows, 0);
    if (LOAD(&prep_busy))
        STORE(&prep_busy, 0);
}

static void prep_edge_add(void *a, void *b)
{
    int n = LOAD(&prep_edges_n);
    for (int i = 0; i < n && i < PREP_EDGES; i++)
        if (prep_edges[i].a == a && prep_edges[i].b == b)
            return;
    if (n >= PREP_EDGES)
        return;
    prep_edges[n].a = a;
    prep_edges[n].b = b;
    STORE(&prep_edges_n, n + 1);
}

int forksafe__audit_prepare_edge(const void *a, const void *b)
{
    int n = LOAD(&prep_edges_n);
    for (int i = 0; i < n && i < PREP_EDGES; i++)
        if (prep_edges[i].a == a && prep_edges[i].b == b)
            return 1;
    return 0;
}

/* A lock this thread took inside its prepare window. */
static void prepare_note(void *lock, void *site)
{
    if (!prep_owner)
        return;
    int n = LOAD(&prep_n);
    if (n < PREP_MAX)
        prepared[n] = lock;
    if (n <= PREP_MAX)
        STORE(&prep_n, n + 1);
    struct thread_rec *r = forksafe__self_rec;
    struct held *top = r ? held_entry(r, r->more, r->nheld - 1) : NULL;
    if (r && r->nheld >= 2 && top && top->lock == lock) {
        /* Every lock this thread holds, not only the innermost: a raw
           handler's lock is held under the registry's own lock by the
           time forksafe's prepare takes the registered ones. The lock
           calls note only the innermost pair (the fast path), and none
           for a try acquire; here, in the prepare window, every pair is
           noted, tries too: forksafe's prepare takes the registered locks
           with tries and a deadline, so the order it meets is a fork that
           fails instead of one that hangs, still a violation. */
        for (int i = r->nheld - 2; i >= 0; i--) {
            struct held *h = held_entry(r, r->more, i);
            void *outer = h ? h->lock : NULL;
            if (!outer || outer == lock)
                continue;
            prep_edge_add(outer, lock);
            forksafe__edge_note(h, lock, site, r);
        }
    }
    /* A lock another thread held when the fork began: a prepare waited
       for it and took it, so the child does not inherit it held. */
    for (int i = 0; i < fk.nsnap && i < SNAP_MAX; i++) {
        struct snap *s = &fk.snap[i];
        if (s->lock != lock || s->covered)
            continue;
        uintptr_t a = (uintptr_t)site;
        /* Taken from libforksafe's code: a registered lock, or a
           callback's taken in a tail call, which the registry tells
           apart. It is asked after the fork (resolve_covers()), not here:
           the first lock libforksafe's prepare takes is the registry's
           own, before its fork state is set, and forksafe_lookup() would
           wait for it on this very thread. */
        s->ask = a >= LOAD(&forksafe__audit_core_lo) &&
                 a < LOAD(&forksafe__audit_core_hi);
        s->covered = COVER_PREPARE;
    }
}

/* In the parent after the fork (its handlers have released the registry
   lock): which of the covered locks libforksafe took are registered, with
   their names. A lock unregistered between the parent handler and here is
   reported as covered by a prepare, not by the registry. */
static void resolve_covers(void)
{
    forksafe__lookup_fn lookup = LOAD(&forksafe__audit_lookup);
    for (int i = 0; i < fk.nsnap && i < SNAP_MAX; i++) {
        struct snap *s = &fk.snap[i];
        if (!s->ask)
            continue;
        s->ask = 0;
        struct forksafe_info info;
        int found = 0;
        if (lookup) {
            forksafe__in_hook++;
            found = lookup(s->lock, &info) == 0;
            forksafe__in_hook--;
        }
        if (!found)
            continue;
        s->covered = COVER_REGISTRY;
        forksafe__str_copy(forksafe__audit_snap_names[i].name,
                           sizeof forksafe__audit_snap_names[i].name,
                           info.name);
        forksafe__audit_snap_names[i].rank = (long)info.rank;
        s->named = 1;
    }
}

/* Sort prepared[0, n) in place (heapsort: no allocation, no recursion). */
static void sift(void **a, int start, int end)
{
    int root = start;
    while (2 * root + 1 < end) {
        int child = 2 * root + 1;
        if (child + 1 < end && (uintptr_t)a[child] < (uintptr_t)a[child + 1])
            child++;
        if ((uintptr_t)a[root] >= (uintptr_t)a[child])
            return;
        void *t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

int forksafe__audit_prepared(const void *lock)
{
    int n = LOAD(&prep_n);
    if (n > PREP_MAX)
        return 1; /* the set overflowed: treat every lock as covered */
    if (n <= 32) {
        for (int i = 0; i < n; i++)
            if (prepared[i] == lock)
                return 1;
        return 0;
    }
    if (!LOAD(&prep_sorted)) {
        for (int i = n / 2 - 1; i >= 0; i--)
            sift(prepared, i, n);
        for (int end = n - 1; end > 0; end--) {
            void *t = prepared[0];
            prepared[0] = prepared[end];
            prepared[end] = t;
            sift(prepared, 0, end);
        }
        STORE(&prep_sorted, 1);
    }
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if ((uintptr_t)prepared[mid] < (uintptr_t)lock)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && prepared[lo] == lock;
}

/* Every successful acquire while forksafe__policy_slow is set: inside a
   prepare window, or in a watched child (child.c). */
void forksafe__policy_acquired(void *lock, int kind, const char *fn,
                               void *site)
{
    if (prep_depth) {
        prepare_note(lock, site);
        return;
    }
    if (forksafe__audit_forking)
        return; /* a watched child's own fork handlers: not running on */
    if (LOAD(&fk.watch))
        forksafe__child_acquired(lock, kind, fn, site);
}

/* libforksafe (or anything else) is unloaded: forget what pointed into
   it. */
void forksafe__policy_unloaded(uintptr_t lo, uintptr_t hi)
{
    uintptr_t f = (uintptr_t)LOAD(&forksafe__audit_lookup);
    if (f >= lo && f < hi)
        STORE(&forksafe__audit_lookup, NULL);
    if (LOAD(&forksafe__audit_core_lo) < hi &&
        lo < LOAD(&forksafe__audit_core_hi)) {
        STORE(&forksafe__audit_core_lo, 0);
        STORE(&forksafe__audit_core_hi, 0);
    }
    forksafe__audit_libs_unloaded(lo, hi);
}

/* ------------------------------------------------------------ reports */

static void report_fork_threads(void *site, const int *tids, int n, int me,
                                const char *call, int coordinated)
{
    if (!forksafe__audit_once_first(&fk.once_fork, (uintptr_t)site))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    forksafe__audit_rec_common(r, "fork-with-threads", "warning");
    forksafe__rec_str(r, "call", call);
    forksafe__rec_int(r, "threads", n);
    forksafe__rec_bool(r, "forksafe", coordinated);
    char name[64];
    forksafe__audit_thread_name(me, name, sizeof name);
    forksafe__rec_frame(r, "fork-call", me, name, site);
    for (int i = 0; i < n && i < 24; i++) {
        if (tids[i] == me)
            continue;
        struct thread_rec *t = forksafe__thread_by_tid(tids[i]);
        forksafe__audit_thread_name(tids[i], name, sizeof name);
        forksafe__rec_frame(r, "thread-start", tids[i], name,
                            t ? t->start : NULL);
    }
    forksafe__rec_end(r);
}

/* A lock another thread held at the fork: reported by the parent after
   the fork, when it is known whether a prepare took it. named: its index
   in the snapshot (for the names kept beside it), -1 when it is not in
   it. */
/* One lock-held-at-fork; untracked is what its holder's record says it
   held and could not record (holder_untracked, when not 0). */
static void report_held(void *site, const struct snap *s, int named,
                        unsigned untracked)
{
    if (!forksafe__audit_once_first(&fk.once_held,
                                    (uintptr_t)s->lock ^ (uintptr_t)s->site))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    forksafe__audit_rec_common(r, "lock-held-at-fork",
                               s->covered ? "info" : "warning");
    forksafe__rec_hex(r, "lock", (uintptr_t)s->lock);
    forksafe__rec_str(r, "lock_kind", kind_name(s->kind));
    forksafe__rec_int(r, "holder_tid", s->holder);
    char name[64];
    if (named >= 0 && forksafe__audit_snap_names[named].holder[0])
        forksafe__str_copy(name, sizeof name,
                           forksafe__audit_snap_names[named].holder);
    else
        forksafe__audit_thread_name(s->holder, name, sizeof name);
    forksafe__rec_str(r, "holder_name", name);
    forksafe__rec_bool(r, "registered", s->covered == COVER_REGISTRY);
    if (untracked)
        forksafe__rec_int(r, "holder_untracked", (long)untracked);
    if (s->covered)
        forksafe__rec_str(r, "covered_by",
                          s->covered == COVER_REGISTRY ? "registry"
                                                       : "prepare");
    if (named >= 0 && s->named) {
        forksafe__rec_str(r, "lock_name", forksafe__audit_snap_names[named].name);
        forksafe__rec_int(r, "rank", forksafe__audit_snap_names[named].rank);
    }
    forksafe__rec_frame(r, "fork-call", forksafe__gettid(), NULL, site);
    forksafe__rec_frame(r, "lock-taken", s->holder, name, s->site);
    forksafe__rec_end(r);
}

/* The TIDs of the threads our table knows (a lower bound of the census,
   for when /proc cannot be read). */
static int table_census(int *tids, int max)
{
    int n = 0, hwm = LOAD(&forksafe__threads_hwm);
    for (int i = 0; i < hwm; i++) {
        int tid = LOAD(&forksafe__threads[i].tid);
        if (tid) {
            if (n < max)
                tids[n] = tid;
            n++;
        }
    }
    return n;
}

static void set_long(long *p, long v)
{
    if (LOAD(p) != v)
        STORE(p, v);
}

/* What the child may inherit besides threads: pending stdio, library
   state. Returns 1 if there is something (the child must be watched).
   Writes the fork state only when a value changes. */
static int inheritance(void)
{
    set_long(&fk.stdio_pending[0], (long)forksafe__file_pending(stdout));
    set_long(&fk.stdio_pending[1], (long)forksafe__file_pending(stderr));
    forksafe__audit_libs_snapshot();
    return fk.stdio_pending[0] || fk.stdio_pending[1] || LOAD(&fk.nlibs);
}

struct fork_ctx {
    void *site;
    int mt;      /* other threads were (or may have been) alive */
    int watch;   /* the child must be watched */
    int snapped; /* this fork owns the snapshot */
    int window;  /* this fork opened a prepare window */
};

/* 1 if a fork-with-threads finding is still due for this site: only then
   does the fork need the threads' TIDs, that is the listing of
   /proc/self/task (open, two getdents, close), and not just their
   number. A full set reports nothing more, as in once_first. */
static int fork_report_due(uintptr_t site)
{
    int n = LOAD(&fk.once_fork.n);
    if (n >= ONCE_MAX)
        return 0;
    for (int i = 0; i < n; i++)
        if (LOAD(&fk.once_fork.key[i]) == site)
            return 0;
    return 1;
}

/* Everything fork() must look at before the real fork: the thread census,
   locks held by other threads, what the child inherits. */
static void before_fork(struct fork_ctx *c, const char *call)
{
    /* Records this process kept back are written now, not by both. */
    forksafe__rec_flush();
    /* Small stack frames here: after fork() both processes copy every
       stack page they write. */
    int tids[64];
    int me = (int)forksafe__gettid();
    struct thread_rec *mine = forksafe__self();
    /* A single-threaded child keeps its parent's TID in its record until
       it forks or starts a thread itself (see after_fork). */
    if (mine && mine->tid != me)
        STORE(&mine->tid, me);
    /* The listing only when its TIDs are needed (a finding not yet
       made for this site) or the count is unknown; otherwise the count
       alone says whether other threads are alive. */
    int n = forksafe__task_count(), listed = 0;
    if (n < 0 || (n > 1 && fork_report_due((uintptr_t)c->site))) {
        n = forksafe__audit_list_numeric("/proc/self/task", tids, 64, NULL);
        listed = n > 0;
    }
    int unknown = n < 0;
    if (unknown) {
        forksafe__run_event(FORKSAFE_RUN_CENSUS, -n);
        n = table_census(tids, 64);
        listed = 1;
    }
    c->mt = unknown || n > 1;
    long pid = forksafe__getpid(); /* one getpid for the fork's counts */
    count_fork(c->mt, pid);
    c->snapped = 0;
    c->window = 0;
    /* libforksafe's handler runs for every fork() once it is registered;
       _Fork() runs no handler. */
    int coordinated = call[0] != '_' && LOAD(&forksafe__audit_atfork_registry);
    if (c->mt) {
        /* The snapshot of held locks the child will need; another thread
           forking at the same time keeps the one it took. */
        int expect = 0;
        c->snapped = __atomic_compare_exchange_n(&fk.snap_busy, &expect, 1, 0,
                                                 __ATOMIC_ACQ_REL,
                                                 __ATOMIC_RELAXED);
        if (c->snapped)
            fk.nsnap = 0;
        if (n > 1 && listed)
            report_fork_threads(c->site, tids, n, me, call, coordinated);
        int hwm = LOAD(&forksafe__threads_hwm);
        for (int i = 0; i < hwm; i++) {
            struct thread_rec *t = &forksafe__threads[i];
            if (t == mine || LOAD(&t->tid) == 0)
                continue;
            int nh = LOAD(&t->nheld);
            struct held *more = LOAD(&t->more), *e;
            for (int j = 0; j < nh && (e = held_entry(t, more, j)) != NULL;
                 j++) {
                struct held h = *e;
                if (!h.lock)
                    continue;
                /* A process-shared lock is one lock for every process that
                   maps it: the thread that holds it releases it for the
                   child too. A semaphore is held while its value is 0; one
                   posted since, or whose memory is gone, is not. */
                int value;
                int pshared = forksafe__lock_pshared_copy(h.lock, h.kind,
                                                          &value);
                if (pshared == 1 || (h.kind == KIND_SEMAPHORE && value != 0))
                    continue;
                struct snap s = {h.lock, h.site, t->tid,
                                 (unsigned char)h.kind, COVER_NONE, 0, 0};
                if (c->snapped && fk.nsnap < SNAP_MAX) {
                    /* The holder's name now: it may be gone when the
                       fork is reported. */
                    struct snap_name *sn = &forksafe__audit_snap_names[fk.nsnap];
                    forksafe__audit_thread_name(t->tid, sn->holder,
                                                sizeof sn->holder);
                    sn->untracked = LOAD(&t->dropped);
                    fk.snap[fk.nsnap++] = s;
                } else {
                    /* no room: as it is */
                    report_held(c->site, &s, -1, LOAD(&t->dropped));
                }
            }
        }
        window_open();
        c->window = 1;
    }
    c->watch = inheritance() || c->mt || LOAD(&fk.child_mt);
    if (c->watch) {
        set_long(&fk.fork_pid, pid);
        if (LOAD(&fk.fork_site) != c->site)
            STORE(&fk.fork_site, c->site);
        if (LOAD(&fk.coordinated) != coordinated)
            STORE(&fk.coordinated, coordinated);
    }
}

static void after_fork(pid_t pid, struct fork_ctx *c)
{
    if (pid != 0) {
        if (pid > 0)
            forksafe__run_count_fork();
        if (c->window)
            window_close();
        if (c->snapped) {
            if (pid > 0) {
                resolve_covers();
                for (int i = 0; i < fk.nsnap && i < SNAP_MAX; i++)
                    report_held(c->site, &fk.snap[i], i,
                                forksafe__audit_snap_names[i].untracked);
            }
            STORE(&fk.snap_busy, 0);
        }
        return;
    }
    window_child();
    once_reset(&fk.once_fork);
    once_reset(&fk.once_held);
    once_reset(&fk.once_unsafe);
    once_reset(&fk.once_stdio);
    if (!c->watch) {
        /* A single-threaded fork with nothing to pass on: nothing changes
           for the child but its "report once" sets, which are empty
           unless it reported before (no write, no page copy, when they
           are). */
        if (LOAD(&fk.watch))
            STORE(&fk.watch, 0);
        return;
    }
    /* A fork handler's prepare (forksafe-stdio's) may have written out
       what was pending when fork() was called: the child inherited only
       what is pending now. */
    for (int i = 0; i < 2; i++) {
        long was = LOAD(&fk.stdio_pending[i]);
        if (was > 0) {
            long now = (long)forksafe__file_pending(i ? stderr : stdout);
            if (now < was)
                set_long(&fk.stdio_pending[i], now);
        }
    }
    int saved = errno;
    STORE(&fk.watch, 1);
    STORE(&fk.ran_on, 0);
    STORE(&forksafe__policy_slow, 1);
    if (c->mt) {
        /* In the child of a multi-threaded fork: only this thread exists.
           Keep the snapshot (that is what child-deadlock detection needs)
           and forget the other threads. */
        STORE(&fk.child_mt, 1);
        STORE(&fk.child_has_threads, 0);
        forksafe__threads_after_fork_child();
        if (!c->snapped)
            fk.nsnap = 0;
        STORE(&fk.snap_busy, 0);
    }
    if (errno != saved)
        errno = saved;
}

/* fork() and _Fork(): the real call, preceded by the census, the held
   lock snapshot and what the child inherits, and followed in the parent
   by the held-lock findings and in the child by the switch to watching
   it. Same return value and errno as the real call; async-signal-safe as
   long as the real call is. */
/* Set while forksafe_fork() runs on this thread: its caller's site. */
static TLS void *wrapper_site;

EXPORT pid_t fork(void)
{
    struct fork_ctx c = {.site = __builtin_return_address(0)};
    const char *call = "fork";
    if (wrapper_site) {
        /* forksafe_fork() calling fork(): the program's call is the
           wrapper's. */
        c.site = wrapper_site;
        call = "forksafe_fork";
        wrapper_site = NULL;
    }
    int saved = errno;
    before_fork(&c, call);
    if (errno != saved)
        errno = saved;
    forksafe__audit_forking++;
    pid_t pid = REAL(fork)();
    forksafe__audit_forking--;
    saved = errno;
    after_fork(pid, &c);
    if (errno != saved)
        errno = saved;
    return pid;
}

EXPORT pid_t _Fork(void)
{
    struct fork_ctx c = {.site = __builtin_return_address(0)};
    int saved = errno;
    before_fork(&c, "_Fork");
    if (errno != saved)
        errno = saved;
    forksafe__audit_forking++;
    pid_t pid = REAL(_Fork)();
    forksafe__audit_forking--;
    saved = errno;
    after_fork(pid, &c);
    if (errno != saved)
        errno = saved;
    return pid;
}

/* forksafe_fork() runs libforksafe's prepare before it calls fork(): the
   prepare window opens here, so the locks it takes count as covered. */
typedef pid_t (*forksafe_fork_fn)(const struct forksafe_fork_opts *);
HOT static forksafe_fork_fn real_forksafe_fork;

EXPORT pid_t forksafe_fork(const struct forksafe_fork_opts *opts)
{
    forksafe_fork_fn real = LOAD(&real_forksafe_fork);
    if (!real) {
        real = (forksafe_fork_fn)forksafe__audit_resolve_lib(
            "forksafe_fork", (void *)forksafe_fork,
            __builtin_return_address(0));
        if (!real) {
            errno = ENOSYS;
            return -1;
        }
        STORE(&real_forksafe_fork, real);
    }
    int open = !__libc_single_threaded;
    if (open)
        window_open();
    wrapper_site = __builtin_return_address(0);
    pid_t pid = real(opts);
    wrapper_site = NULL;
    if (pid != 0 && open) {
        int saved = errno;
        window_close();
        errno = saved;
    }
    return pid;
}
