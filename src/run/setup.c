/* SPDX-License-Identifier: MIT */
/*
 * setup.c: the constructor of libforksafe-run.so, its settings, the
 * statistics page and the records of slow forks and of programs that
 * cannot load the library. Records go to FORKSAFE_RUN_DIR, which only
 * forksafe-run with --report or --json sets; a plain LD_PRELOAD of the
 * library writes nothing anywhere and only makes forks safe.
 */
#include "run.h"

#include "stats.h"
#include "../preload/execcheck.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* What every descendant needs, and the marker naming what an exec hook
   put back into a descendant's environment. */
static const char *const keep[] = {"FORKSAFE_RUN_DIR",
                                   "FORKSAFE_RUN_TIMEOUT_MS", NULL};
#define MARKER    "FORKSAFE_RUN_RESTORED"
#define SELF_BASE "libforksafe-run.so"

#define DEFAULT_TIMEOUT_MS 1000u
#define MAX_TIMEOUT_MS     (24u * 3600 * 1000)

HOT unsigned forksafe__run_timeout_ms = DEFAULT_TIMEOUT_MS;
HOT static struct forksafe_run_stats *stats;

/* ------------------------------------------------------------ time */

long long forksafe__run_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

void forksafe__run_deadline(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000u;
    ts->tv_nsec += (long)(ms % 1000u) * 1000000l;
    if (ts->tv_nsec >= 1000000000l) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000l;
    }
}

int forksafe__run_expired(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* ------------------------------------------------------------ statistics */

static void map_stats(void)
{
    const char *dir = getenv("FORKSAFE_RUN_DIR");
    char path[1024];
    if (!dir || strlen(dir) + sizeof FORKSAFE_RUN_STATS_NAME + 2 > sizeof path)
        return;
    forksafe__str_copy(path, sizeof path, dir);
    forksafe__str_cat(path, sizeof path, "/" FORKSAFE_RUN_STATS_NAME);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    void *p = mmap(NULL, FORKSAFE_RUN_STATS_SIZE, PROT_READ | PROT_WRITE,
                   MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return;
    struct forksafe_run_stats *st = p;
    if (st->magic != FORKSAFE_RUN_STATS_MAGIC ||
        st->size != FORKSAFE_RUN_STATS_SIZE) {
        munmap(p, FORKSAFE_RUN_STATS_SIZE);
        return;
    }
    __atomic_add_fetch(&st->images, 1, __ATOMIC_RELAXED);
    STORE(&stats, st);
}

void forksafe__run_count(int threaded)
{
    struct forksafe_run_stats *st = LOAD(&stats);
    if (!st)
        return;
    __atomic_add_fetch(&st->forks, 1, __ATOMIC_RELAXED);
    if (threaded)
        __atomic_add_fetch(&st->threaded, 1, __ATOMIC_RELAXED);
}

void forksafe__run_count_wait(const struct run_fork *fk)
{
    struct forksafe_run_stats *st = LOAD(&stats);
    if (!st || !fk->threaded)
        return;
    if (fk->waited)
        __atomic_add_fetch(&st->waited, 1, __ATOMIC_RELAXED);
    if (fk->outcome == RUN_TIMEOUT)
        __atomic_add_fetch(&st->timed_out, 1, __ATOMIC_RELAXED);
    else if (fk->outcome == RUN_STUCK)
        __atomic_add_fetch(&st->stuck, 1, __ATOMIC_RELAXED);
    uint64_t ns = fk->wait_ns > 0 ? (uint64_t)fk->wait_ns : 0;
    uint64_t i = __atomic_fetch_add(&st->nwaits, 1, __ATOMIC_ACQ_REL);
    if (i < FORKSAFE_RUN_STATS_WAITS)
        __atomic_store_n(&st->wait_ns[i], ns, __ATOMIC_RELAXED);
    uint64_t max = __atomic_load_n(&st->wait_max_ns, __ATOMIC_RELAXED);
    while (ns > max &&
           !__atomic_compare_exchange_n(&st->wait_max_ns, &max, ns, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

void forksafe__run_count_overrun(void)
{
    struct forksafe_run_stats *st = LOAD(&stats);
    if (st)
        __atomic_add_fetch(&st->overruns, 1, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------ records */

void forksafe__run_thread_name(long tid, char *name, size_t len)
{
    char path[64] = "/proc/self/task/", num[24];
    forksafe__fmt_dec(num, tid);
    forksafe__str_cat(path, sizeof path, num);
    forksafe__str_cat(path, sizeof path, "/comm");
    if (forksafe__read_small(path, name, len) < 0)
        forksafe__str_copy(name, len, "?");
}

static const char *state_name(int state)
{
    switch (state) {
    case RUN_B_TAKING:
        return "taking";
    case RUN_B_FORKWAIT:
        return "waits-to-fork";
    case RUN_B_MANY:
        return "holds-untracked";
    case RUN_B_FORKER:
        return "waits-for-forker";
    default:
        return "holds";
    }
}

/* A fork that went ahead while some thread held a lock: one "slowfork"
   record, then one "blocker" record per thread and lock that kept it
   waiting (emit.c's syntax; forksafe-run reads them). */
void forksafe__run_report_slow(const struct run_fork *fk)
{
    static unsigned seq;
    if (!forksafe__out_enabled())
        return;
    int saved = errno;
    long id = (long)__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
    char name[64];
    struct forksafe__rec *r = forksafe__rec_begin("slowfork");
    if (r) {
        forksafe__rec_int(r, "pid", forksafe__getpid());
        forksafe__rec_int(r, "ppid", getppid());
        forksafe__rec_int(r, "tid", fk->parent_tid);
        forksafe__rec_int(r, "seq", id);
        forksafe__rec_str(r, "call", fk->call);
        forksafe__rec_str(r, "reason",
                          fk->outcome == RUN_STUCK ? "stuck" : "timeout");
        forksafe__rec_int(r, "wait_us", (long)(fk->wait_ns / 1000));
        forksafe__rec_int(r, "timeout_ms", (long)forksafe__run_timeout_ms);
        forksafe__run_thread_name(fk->parent_tid, name, sizeof name);
        forksafe__rec_frame(r, "fork-call", fk->parent_tid, name, fk->site);
        forksafe__rec_end(r);
    }
    for (int i = 0; i < fk->nblockers && i < RUN_BLOCKERS_MAX; i++) {
        const struct run_blocker *b = &fk->blockers[i];
        r = forksafe__rec_begin("blocker");
        if (!r)
            break;
        forksafe__rec_int(r, "pid", forksafe__getpid());
        forksafe__rec_int(r, "seq", id);
        forksafe__rec_int(r, "tid", b->tid);
        if (b->name[0])
            forksafe__str_copy(name, sizeof name, b->name);
        else
            forksafe__run_thread_name(b->tid, name, sizeof name);
        forksafe__rec_str(r, "name", name);
        forksafe__rec_str(r, "state", state_name(b->state));
        if (b->lock) {
            forksafe__rec_hex(r, "lock", (uintptr_t)b->lock);
            forksafe__rec_str(r, "lock_kind", kind_name(b->kind));
        }
        if (b->state == RUN_B_TAKING && b->lock_holder > 0)
            forksafe__rec_int(r, "lock_holder", b->lock_holder);
        if (b->site)
            forksafe__rec_frame(
                r, b->state == RUN_B_TAKING ? "lock-call" : "lock-taken",
                b->tid, name, b->site);
        if (b->start)
            forksafe__rec_frame(r, "thread-start", b->tid, name, b->start);
        forksafe__rec_end(r);
    }
    errno = saved;
}

/* ------------------------------------------------------------ policy */

/* The core's policy functions (interpose.h). forksafe-run never asks for
   the slow acquire path (forksafe__policy_slow stays 0). */
int forksafe__policy_acquire(void *lock, int op, void *site)
{
    (void)lock;
    (void)op;
    (void)site;
    return FORKSAFE_POLICY_PASS;
}

void forksafe__policy_thread_created(void)
{
}

/* A program about to be started cannot load the library: its forks are
   not protected. The record goes to a file of its own record stream
   (rec_end_aside): this may run in a vfork child. */
void forksafe__policy_unloadable(const char *path, int reason, const char *via,
                                 long pid)
{
    struct forksafe__rec *r = forksafe__rec_begin("uncovered");
    if (!r)
        return;
    forksafe__rec_int(r, "pid", pid);
    forksafe__rec_int(
        r, "ppid", pid == forksafe__getpid() ? getppid() : forksafe__getpid());
    forksafe__rec_str(r, "program", path);
    forksafe__rec_str(r, "reason", forksafe__exec_reason_name(reason));
    forksafe__rec_str(r, "via", via);
    forksafe__rec_end_aside(r);
}

void forksafe__policy_exec_failed(void)
{
    struct forksafe__rec *r = forksafe__rec_begin("exec-failed");
    if (!r)
        return;
    forksafe__rec_int(r, "pid", forksafe__getpid());
    forksafe__rec_end_aside(r);
}

/* ------------------------------------------------------------ setup */

static unsigned parse_timeout(const char *s)
{
    if (!s || *s < '0' || *s > '9')
        return DEFAULT_TIMEOUT_MS;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v == 0 || v > MAX_TIMEOUT_MS)
        return DEFAULT_TIMEOUT_MS;
    return (unsigned)v;
}

__attribute__((constructor)) static void run_init(void)
{
    int saved = errno;
    forksafe__out_use_variable("FORKSAFE_RUN_DIR");
    forksafe__out_init();
    /* Before exec_unkeep, which may remove FORKSAFE_RUN_DIR again (an
       exec hook of the parent put it back). */
    if (forksafe__out_enabled())
        map_stats();
    forksafe__resolve_early();
    forksafe__thread_key_init();
    forksafe__run_timeout_ms = parse_timeout(getenv("FORKSAFE_RUN_TIMEOUT_MS"));
    forksafe__exec_keep_init(keep, SELF_BASE, MARKER);
    forksafe__exec_unkeep();
    forksafe__platform_init();
    forksafe__run_gate_init();
    /* Child handlers run in registration order: this one runs before
       those of the program and of libraries loaded after us (libraries
       the program links were initialised, and registered theirs, first). */
    pthread_atfork(NULL, NULL, forksafe__run_atfork_child);
    errno = saved;
}
