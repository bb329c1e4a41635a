/* SPDX-License-Identifier: MIT */
/*
 * fork.c: fork() and _Fork() as the audit sees them. Before the real call
 * they take a census of the threads, snapshot the locks other threads hold
 * and check stdio for unflushed output (fork-with-threads,
 * lock-held-at-fork, stdio-unflushed-at-fork); in the child they switch the
 * audit to child mode. Also the fork state page and the small record
 * helpers the other hook files share.
 *
 * Nothing here dereferences the program's memory directly: a semaphore
 * another thread took may be gone (closed, unmapped, freed), so its value
 * is read fault-safe (safemem.c), and so is stdio's buffer state. When
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
#include <sys/syscall.h>
#include <unistd.h>

/* ------------------------------------------------------------ fork state */

/* Everything fork() and the child write, in one page: after fork() every
   page either process writes is copied, so keeping this state together
   costs one copy-on-write fault per process instead of one per variable. */
struct fork_state forksafe__audit_fk __attribute__((aligned(4096)));
_Static_assert(sizeof forksafe__audit_fk <= 4096,
               "fork state must fit in one page");

/* The forks this process made. The count carries the pid it belongs to,
   so that a child, which inherits it, need not reset it: a single-threaded
   fork writes nothing in the child (every page the child writes is a
   copy-on-write fault, and shell scripts fork all the time). */
HOT static long forks_n, forks_pid;

static void count_fork(void)
{
    long pid = forksafe__getpid();
    if (LOAD(&forks_pid) != pid) {
        STORE(&forks_n, 0);
        STORE(&forks_pid, pid);
    }
    __atomic_add_fetch(&forks_n, 1, __ATOMIC_RELAXED);
}

long forksafe__audit_forks(void)
{
    return LOAD(&forks_pid) == forksafe__getpid() ? LOAD(&forks_n) : 0;
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
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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

static void report_fork_threads(void *site, const int *tids, int n, int me,
                                const char *call)
{
    if (!forksafe__audit_once_first(&forksafe__audit_fk.once_fork,
                                    (uintptr_t)site))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    forksafe__audit_rec_common(r, "fork-with-threads", "warning");
    forksafe__rec_str(r, "call", call);
    forksafe__rec_int(r, "threads", n);
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

static void report_held(void *site, const struct thread_rec *t,
                        const struct held *h)
{
    if (!forksafe__audit_once_first(&forksafe__audit_fk.once_held,
                                    (uintptr_t)h->lock ^ (uintptr_t)h->site))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    forksafe__audit_rec_common(r, "lock-held-at-fork", "warning");
    forksafe__rec_hex(r, "lock", (uintptr_t)h->lock);
    forksafe__rec_str(r, "lock_kind", kind_name(h->kind));
    forksafe__rec_int(r, "holder_tid", t->tid);
    char name[64];
    forksafe__audit_thread_name(t->tid, name, sizeof name);
    forksafe__rec_str(r, "holder_name", name);
    forksafe__rec_frame(r, "fork-call", forksafe__gettid(), NULL, site);
    forksafe__rec_frame(r, "lock-taken", t->tid, name, h->site);
    forksafe__rec_end(r);
}

static void report_stdio(void *site, FILE *f, const char *stream)
{
    size_t pending = forksafe__file_pending(f);
    if (!pending || !forksafe__audit_once_first(&forksafe__audit_fk.once_stdio,
                                                (uintptr_t)f))
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    forksafe__audit_rec_common(r, "stdio-unflushed-at-fork", "warning");
    forksafe__rec_str(r, "stream", stream);
    forksafe__rec_int(r, "bytes", (long)pending);
    forksafe__rec_frame(r, "fork-call", forksafe__gettid(), NULL, site);
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

/* Everything fork() must look at before the real fork: the thread census,
   locks held by other threads, pending stdio. Returns 1 if the process is
   (or may be) multi-threaded; *snapped says whether this fork owns the
   snapshot. */
static int before_fork(void *site, const char *call, int *snapped)
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
    int n = forksafe__audit_list_numeric("/proc/self/task", tids, 64, NULL);
    int unknown = n < 0;
    if (unknown) {
        forksafe__run_event(FORKSAFE_RUN_CENSUS, -n);
        n = table_census(tids, 64);
    }
    int mt = unknown || n > 1;
    count_fork();
    *snapped = 0;
    if (mt) {
        /* The snapshot of held locks the child will need; another thread
           forking at the same time keeps the one it took. */
        int expect = 0;
        *snapped = __atomic_compare_exchange_n(&forksafe__audit_fk.snap_busy,
                                               &expect, 1, 0, __ATOMIC_ACQ_REL,
                                               __ATOMIC_RELAXED);
        if (*snapped)
            forksafe__audit_fk.nsnap = 0;
        if (n > 1)
            report_fork_threads(site, tids, n, me, call);
        int hwm = LOAD(&forksafe__threads_hwm);
        for (int i = 0; i < hwm; i++) {
            struct thread_rec *t = &forksafe__threads[i];
            if (t == mine || LOAD(&t->tid) == 0)
                continue;
            int nh = LOAD(&t->nheld);
            for (int j = 0; j < nh && j < MAX_HELD; j++) {
                struct held h = t->held[j];
                if (!h.lock)
                    continue;
                /* A semaphore is held while its value is 0; one posted
                   since, or whose memory is gone, is not. */
                if (h.kind == KIND_SEMAPHORE &&
                    forksafe__sem_value(h.lock) != 0)
                    continue;
                if (*snapped && forksafe__audit_fk.nsnap < SNAP_MAX)
                    forksafe__audit_fk.snap[forksafe__audit_fk.nsnap++] =
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
        if (pid > 0)
            forksafe__run_count_fork();
        if (snapped)
            STORE(&forksafe__audit_fk.snap_busy, 0);
        return;
    }
    if (!mt) {
        /* A single-threaded fork: nothing changes for the child but its
           "report once" sets, which are empty unless it reported before
           (no write, no page copy, when they are). */
        once_reset(&forksafe__audit_fk.once_fork);
        once_reset(&forksafe__audit_fk.once_held);
        once_reset(&forksafe__audit_fk.once_unsafe);
        once_reset(&forksafe__audit_fk.once_stdio);
        return;
    }
    /* In the child of a multi-threaded fork: only this thread exists.
       Keep the snapshot (that is what child-deadlock detection needs) and
       forget the other threads. */
    int saved = errno;
    STORE(&forksafe__audit_fk.child_mt, 1);
    STORE(&forksafe__audit_fk.child_has_threads, 0);
    STORE(&forksafe__policy_slow, 1);
    forksafe__threads_after_fork_child();
    if (!snapped)
        forksafe__audit_fk.nsnap = 0;
    STORE(&forksafe__audit_fk.snap_busy, 0);
    once_reset(&forksafe__audit_fk.once_fork);
    once_reset(&forksafe__audit_fk.once_held);
    once_reset(&forksafe__audit_fk.once_unsafe);
    once_reset(&forksafe__audit_fk.once_stdio);
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
