/* SPDX-License-Identifier: MIT */
/*
 * platform/posix.c: the lock layer that reads no C library internals,
 * only what POSIX functions return. It is the layer for C libraries
 * forksafe has no layer for, and the fallback when the glibc layer's
 * self-check fails.
 *
 * DESIGN. Without internals nothing says who holds a lock or what type it
 * is, and no libc is bound to let the child's thread release a lock the
 * parent's thread took (glibc and musl refuse it for every mutex type that
 * records an owner). So this layer keeps only the cases it can prove:
 * a mutex that prepare takes is asked its type with a timed lock whose
 * deadline has passed (0: recursive, EDEADLK: errorcheck, ETIMEDOUT:
 * normal) and pthread_mutex_getprioceiling (succeeds only for
 * priority-protect); only a normal one is kept, and only if a thread other
 * than its holder can release it (a short-lived helper thread tries, see
 * probe_release), because the child's thread will have to. It is released
 * in the child with pthread_mutex_unlock. Every other case is refused
 * before the fork: ENOTSUP for a type or protocol it cannot hand to the
 * child (recursive, errorcheck, priority-protect, and robust or PI, which
 * POSIX cannot query but the helper's failed release reveals), EDEADLK
 * for an errorcheck, robust or PI mutex the forking thread holds. Should
 * a child's unlock still fail, the layer says so on stderr and in the
 * report, and the mutex stays locked there. rwlocks are re-initialised in
 * the child with default attributes (their attributes cannot be read
 * back); spinlocks are unlocked.
 */
#include "platform.h"

#include <errno.h>
#include <link.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int multithreaded(void)
{
    return 1;
}

/* A fact of the C library, not of this layer: musl holds its handler
   lock across fork (see platform.h); glibc does not; elsewhere assume it
   does not (FreeBSD takes a shared lock). */
#ifdef FORKSAFE_LIBC_MUSL
#define LIBC_ATFORK_SERIALIZED 1
#else
#define LIBC_ATFORK_SERIALIZED 0
#endif

void forksafe__posix_realtime(const struct timespec *deadline,
                              struct timespec *rt)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    clock_gettime(CLOCK_REALTIME, rt);
    long long ns = (deadline->tv_sec - now.tv_sec) * 1000000000ll +
                   (deadline->tv_nsec - now.tv_nsec);
    if (ns < 0)
        ns = 0;
    ns += rt->tv_nsec;
    rt->tv_sec += ns / 1000000000ll;
    rt->tv_nsec = ns % 1000000000ll;
}

struct object_query {
    uintptr_t addr;
    uintptr_t base;
};

static int find_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct object_query *q = arg;
    for (size_t i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
        if (ph->p_type == PT_LOAD && q->addr >= start &&
            q->addr - start < (uintptr_t)ph->p_memsz) {
            q->base = (uintptr_t)info->dlpi_addr;
            return 1;
        }
    }
    return 0;
}

uintptr_t forksafe__posix_object_base(const void *addr)
{
    struct object_query q = {(uintptr_t)addr, 0};
    if (addr)
        dl_iterate_phdr(find_object, &q);
    return q.base;
}

/* ------------------------------------------------------------ mutex */

static unsigned mutex_kind(const pthread_mutex_t *m)
{
    (void)m;
    return FS_MX_UNKNOWN;
}

static pid_t mutex_holder(const pthread_mutex_t *m)
{
    (void)m;
    return FS_HOLDER_UNKNOWN;
}

static int mutex_lock_until(pthread_mutex_t *m, const struct timespec *deadline)
{
    if (!deadline)
        return pthread_mutex_lock(m);
    struct timespec rt;
    forksafe__posix_realtime(deadline, &rt);
    return pthread_mutex_timedlock(m, &rt);
}

/* The type of a mutex the caller holds, told by what a relock with an
   expired deadline returns; a recursive one is relocked and let go. */
static unsigned probe_type(pthread_mutex_t *m)
{
    static const struct timespec past = {0, 0};
    int r = pthread_mutex_timedlock(m, &past);
    if (r == 0) {
        pthread_mutex_unlock(m);
        return FS_MX_RECURSIVE;
    }
    if (r == EDEADLK)
        return FS_MX_ERRORCHECK;
    if (r == ETIMEDOUT)
        return FS_MX_NORMAL;
    return FS_MX_UNKNOWN;
}

static const char *refusal;

static int refuse(int err, const char *why)
{
    refusal = why;
    return err;
}

/* Whether a thread other than the one that holds m can release it, which
   is what the child's only thread will have to do. POSIX has no query for
   robustness or priority inheritance, and a robust or PI mutex of the
   normal type answers every other probe like a plain one; but glibc and
   musl (and FreeBSD, for every type) refuse its unlock from another
   thread with EPERM and leave it as it was. So a helper thread tries:
   EPERM means the child could not release it; success means it could,
   and the helper takes it again at once, so that m stays held through
   the fork (which thread holds a mutex that any thread may release does
   not matter). The helper runs with every signal blocked and is joined
   before this returns, so no thread is left for the fork. */
struct release_probe {
    pthread_mutex_t *m;
    const struct timespec *deadline;
    int unlocked; /* pthread_mutex_unlock's answer */
    int retaken;  /* taking it again: 0, or the error */
};

static void *try_release(void *arg)
{
    struct release_probe *p = arg;
    p->unlocked = pthread_mutex_unlock(p->m);
    if (p->unlocked == 0) {
        /* Another thread may slip in between; then wait as prepare would. */
        p->retaken = pthread_mutex_trylock(p->m);
        if (p->retaken == EBUSY)
            p->retaken = mutex_lock_until(p->m, p->deadline);
    }
    return NULL;
}

/* 0: another thread can release m (and m is held again); EPERM: it cannot
   (m is still held by the caller); otherwise the error, with *still_held
   saying whether m is still held. */
static int probe_release(pthread_mutex_t *m, const struct timespec *deadline,
                         int *still_held)
{
    struct release_probe p = {m, deadline, -1, -1};
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int r = pthread_create(&t, NULL, try_release, &p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return r;
    pthread_join(t, NULL);
    if (p.unlocked != 0)
        return EPERM;
    if (p.retaken != 0) {
        *still_held = 0;
        return p.retaken;
    }
    return 0;
}

/* What probe_release learned, per mutex, so that it runs once per
   registration and not at every fork (a thread start costs some 30 us):
   a direct-mapped table of (address | verdict) words, 0 for empty; a
   collision only costs another probe. Written under the registry lock by
   mutex_vet, cleared without it by mutex_registered, after any fork that
   could have seen an earlier registration at that address is over.
   Mapped when a check first needs it, not static: 32 KiB of .bss would be a
   mapping of its own in every process that links forksafe, whichever layer it
   runs (each mapping is a cost of every fork), and only this layer needs it.
   Without it (no memory) every check probes again. */
#define MEMO_SLOTS      4096
#define MEMO_RELEASABLE 1u
#define MEMO_OWNED      2u
static uintptr_t *memo;

static uintptr_t *memo_table(void)
{
    uintptr_t *t = __atomic_load_n(&memo, __ATOMIC_ACQUIRE);
    if (t)
        return t;
    void *p = mmap(NULL, MEMO_SLOTS * sizeof *t, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (__atomic_compare_exchange_n(&memo, &t, (uintptr_t *)p, 0,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return p;
    munmap(p, MEMO_SLOTS * sizeof *t); /* another thread's came first */
    return t;
}

static size_t memo_slot(const void *m)
{
    uintptr_t a = (uintptr_t)m;
    return (size_t)((a >> 3) ^ (a >> 15)) % MEMO_SLOTS;
}

static void mutex_registered(const pthread_mutex_t *m)
{
    uintptr_t *t = __atomic_load_n(&memo, __ATOMIC_ACQUIRE);
    if (!t)
        return; /* nothing learnt yet, nothing to forget */
    uintptr_t *slot = &t[memo_slot(m)];
    uintptr_t v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if ((v & ~(uintptr_t)3) == (uintptr_t)m)
        __atomic_compare_exchange_n(slot, &v, 0, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
}

static int releasable(pthread_mutex_t *m, const struct timespec *deadline,
                      int *still_held)
{
    uintptr_t *t = memo_table();
    if (!t)
        return probe_release(m, deadline, still_held);
    uintptr_t *slot = &t[memo_slot(m)];
    uintptr_t v = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if ((v & ~(uintptr_t)3) == (uintptr_t)m && (v & 3))
        return (v & 3) == MEMO_RELEASABLE ? 0 : EPERM;
    int r = probe_release(m, deadline, still_held);
    if (r == 0 || r == EPERM)
        __atomic_store_n(slot,
                         (uintptr_t)m | (r ? MEMO_OWNED : MEMO_RELEASABLE),
                         __ATOMIC_RELEASE);
    return r;
}

static int mutex_vet(pthread_mutex_t *m, enum forksafe_vet how,
                     const struct timespec *deadline, int *still_held)
{
    refusal = NULL;
    if (how == FS_VET_RECOVERED)
        return refuse(ENOTSUP, "a robust mutex: the POSIX platform layer "
                               "cannot hand it to the child");
    unsigned type = probe_type(m);
    if (how == FS_VET_STRAY) {
        /* Left as it is: fine unless the child must be able to release it
           and cannot: an errorcheck mutex held by this very thread, or one
           that records its owner (robust, PI). A recursive one nests. */
        if (type == FS_MX_ERRORCHECK)
            return refuse(EDEADLK, "an errorcheck mutex held by the forking "
                                   "thread: the POSIX platform layer cannot "
                                   "hand it to the child");
        if (type != FS_MX_NORMAL)
            return 0;
        int r = releasable(m, deadline, still_held);
        if (r == EPERM)
            return refuse(EDEADLK, "a mutex held by the forking thread (or "
                                   "a thread that is gone) that no other "
                                   "thread may release (robust or priority "
                                   "inheritance): the POSIX platform layer "
                                   "cannot hand it to the child");
        if (r)
            return refuse(r, "the POSIX platform layer could not check "
                             "whether the child can release this mutex");
        return 0;
    }
    switch (type) {
    case FS_MX_NORMAL: {
        int ceiling;
        if (pthread_mutex_getprioceiling(m, &ceiling) == 0)
            return refuse(ENOTSUP, "a priority-protect mutex: the POSIX "
                                   "platform layer cannot hand it to the "
                                   "child");
        int r = releasable(m, deadline, still_held);
        if (r == EPERM)
            return refuse(ENOTSUP, "a mutex that no other thread may "
                                   "release (robust or priority "
                                   "inheritance): the POSIX platform layer "
                                   "cannot hand it to the child");
        if (r)
            return refuse(r, "the POSIX platform layer could not check "
                             "whether the child can release this mutex");
        return 0;
    }
    case FS_MX_RECURSIVE:
        return refuse(ENOTSUP, "a recursive mutex: the POSIX platform layer "
                               "cannot hand it to the child");
    case FS_MX_ERRORCHECK:
        return refuse(ENOTSUP, "an errorcheck mutex: the POSIX platform layer "
                               "cannot hand it to the child");
    default:
        return refuse(ENOTSUP, "a mutex of a type the POSIX platform layer "
                               "cannot tell");
    }
}

static const char *vet_refusal(void)
{
    return refusal;
}

static unsigned long child_failures;

FS_CHILD_PATH static void child_mutex(pthread_mutex_t *m, int held, pid_t self)
{
    (void)self;
    if (held)
        return; /* never: this layer sees no holder, so nothing is kept */
    if (pthread_mutex_unlock(m) == 0)
        return;
    child_failures++;
    static const char msg[] =
        "forksafe: the POSIX platform layer could not release a registered "
        "mutex in the child; it stays locked in this process\n";
    (void)!write(2, msg, sizeof msg - 1);
}

static unsigned long failures(void)
{
    return child_failures;
}

/* ------------------------------------------------------------ rwlock */

static unsigned rwlock_kind(const pthread_rwlock_t *l)
{
    (void)l;
    return FS_RW_UNKNOWN;
}

static pid_t rwlock_holder(const pthread_rwlock_t *l)
{
    (void)l;
    return FS_HOLDER_UNKNOWN;
}

static int rwlock_wrlock_until(pthread_rwlock_t *l,
                               const struct timespec *deadline)
{
    if (!deadline)
        return pthread_rwlock_wrlock(l);
    struct timespec rt;
    forksafe__posix_realtime(deadline, &rt);
    return pthread_rwlock_timedwrlock(l, &rt);
}

static int rwlock_vet(pthread_rwlock_t *l, enum forksafe_vet how)
{
    refusal = NULL;
    if (how != FS_VET_STRAY)
        return 0;
    /* Left as it is: a write lock of this thread's that the libc checks
       (glibc) cannot be released in the child; glibc says EDEADLK for
       it. Read locks carry no owner. */
    static const struct timespec past = {0, 0};
    int r = pthread_rwlock_timedwrlock(l, &past);
    if (r == 0) {
        pthread_rwlock_unlock(l); /* freed meanwhile: nothing held */
        return 0;
    }
    return r == EDEADLK ? refuse(EDEADLK, "an rwlock the forking thread "
                                          "holds for writing: the POSIX "
                                          "platform layer cannot hand it to "
                                          "the child")
                        : 0;
}

/* Unlocking in the child is not safe on every libc (glibc takes the
   reader path and leaves the lock busy), so the lock is made anew. */
FS_CHILD_PATH static void child_rwlock(pthread_rwlock_t *l, int held,
                                       pid_t self)
{
    (void)self;
    pthread_rwlock_init(l, NULL);
    if (held)
        pthread_rwlock_wrlock(l);
}

/* ------------------------------------------------------------ spinlock */

static pid_t spin_holder(const pthread_spinlock_t *l)
{
    (void)l;
    return FS_HOLDER_UNKNOWN;
}

FS_CHILD_PATH static void child_spin(pthread_spinlock_t *l)
{
    pthread_spin_unlock(l);
}

static pid_t *tid_slot(void)
{
    return NULL;
}

static int sem_pshared(const sem_t *s)
{
    (void)s;
    return -1;
}

const struct forksafe_platform forksafe__platform_posix = {
    .name = "posix",
    .check = NULL,
    .multithreaded = multithreaded,
    .atfork_serialized = LIBC_ATFORK_SERIALIZED,
    .mutex_kind = mutex_kind,
    .mutex_holder = mutex_holder,
    .mutex_lock_until = mutex_lock_until,
    .mutex_vet = mutex_vet,
    .mutex_registered = mutex_registered,
    .vet_refusal = vet_refusal,
    .child_mutex = child_mutex,
    .child_failures = failures,
    .rwlock_kind = rwlock_kind,
    .rwlock_holder = rwlock_holder,
    .rwlock_wrlock_until = rwlock_wrlock_until,
    .rwlock_vet = rwlock_vet,
    .child_rwlock = child_rwlock,
    .spin_holder = spin_holder,
    .child_spin = child_spin,
    .tid_slot = tid_slot,
    .object_base = forksafe__posix_object_base,
    .sem_pshared = sem_pshared,
};
