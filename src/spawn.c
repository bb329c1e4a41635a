/* SPDX-License-Identifier: MIT */
/*
 * spawn.c: forksafe_spawn(), a posix_spawn() with safe defaults. A child
 * that will exec needs none of fork()'s copying and none of its hazards, so
 * this is the cheapest and safest way to start one: no page tables copied,
 * no fork handlers run, no inherited locks.
 *
 * DESIGN. Everything is decided in the parent. The child shares our memory
 * until it execs (CLONE_VM|CLONE_VFORK), so it must run nothing but
 * system calls on data prepared for it:
 *  - the fd_map is planned here: a source that is also another entry's
 *    target is first copied (F_DUPFD_CLOEXEC) to a number this process
 *    owns, so the child can apply the map in any order and no temporary
 *    ever lands on a descriptor the child should inherit or goes past
 *    RLIMIT_NOFILE; the copies are close-on-exec and vanish at exec;
 *  - descriptor hygiene closes everything that is not 0-2 or a target;
 *  - PATH search uses the PATH of a copy of environ, because
 *    posix_spawnp() would call getenv() in the child while other threads of
 *    the parent may be running setenv(); the child's environment, when the
 *    caller passes none, is that same copy, for the same reason.
 * Without FORKSAFE_SPAWN_PIDFD the plan becomes glibc posix_spawn()
 * attributes and file actions. With it, the child is created here with
 * clone(CLONE_VM|CLONE_VFORK|CLONE_PIDFD): the kernel makes the pidfd
 * together with the child, so a child that exits (and is reaped by a
 * SIGCHLD=SIG_IGN disposition or another thread's waitpid(-1)) before we
 * look at it still has its pidfd, and no PID is ever signalled. glibc 2.39
 * has pidfd_spawn() for this; 2.36 does not, so the child's few steps are
 * written out below, as raw system calls.
 */
#include "forksafe.h"
#include "spawn-zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define SPAWN_KNOWN_FLAGS                                                      \
    (FORKSAFE_SPAWN_KEEP_FDS | FORKSAFE_SPAWN_KEEP_SIGMASK |                   \
     FORKSAFE_SPAWN_KEEP_SIGDEFAULTS | FORKSAFE_SPAWN_NO_PATH_SEARCH |         \
     FORKSAFE_SPAWN_SETSID | FORKSAFE_SPAWN_SETPGROUP | FORKSAFE_SPAWN_PIDFD)

/* The PATH execvp() uses when the environment has none (glibc's
   _CS_PATH). */
#define SPAWN_DEFAULT_PATH "/bin:/usr/bin"

/* The clone() path needs the kernel's struct sigaction layout (handler
   first, then flags; see spawn_ksigaction) and, for a pidfd, CLONE_PIDFD
   (Linux 5.2; pidfd_open(), which is probed, came in 5.3). Elsewhere
   FORKSAFE_SPAWN_PIDFD reports ENOSYS. */
#if defined(__linux__) && defined(CLONE_PIDFD) && defined(SYS_pidfd_open) &&   \
    (defined(__x86_64__) || defined(__i386__) || defined(__aarch64__) ||       \
     defined(__riscv))
#define SPAWN_HAVE_CLONE 1
#else
#define SPAWN_HAVE_CLONE 0
#endif

/* posix_spawn_file_actions_addclosefrom_np() came with glibc 2.34; musl
   has none. Without it, spawns that must close descriptors take the
   clone() path, which uses close_range(). */
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
#define SPAWN_HAVE_ADDCLOSEFROM 1
#else
#define SPAWN_HAVE_ADDCLOSEFROM 0
#endif

/* Copy the pointers of environ into a new NULL-terminated array. Another
   thread may run setenv()/unsetenv() meanwhile: glibc never frees the
   strings it installs (they stay reachable from its value tree), so copying
   the pointers is enough; what can change is the array itself, which
   setenv() of a new name reallocates. We re-read environ after copying and
   retry if it moved, so the copy is never a mix of two arrays. On success
   *out must be freed by the caller. */
static int env_copy(char ***out)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        char **cur = __atomic_load_n(&environ, __ATOMIC_ACQUIRE);
        size_t n = 0;
        if (cur != NULL)
            while (__atomic_load_n(&cur[n], __ATOMIC_RELAXED) != NULL)
                n++;
        char **copy = malloc((n + 1) * sizeof *copy);
        if (copy == NULL)
            return ENOMEM;
        size_t k = 0;
        for (; k < n; k++) {
            /* unsetenv() shifts entries left in place: stop at the first
               NULL rather than trusting the count taken above. */
            copy[k] = __atomic_load_n(&cur[k], __ATOMIC_RELAXED);
            if (copy[k] == NULL)
                break;
        }
        copy[k] = NULL;
        if (__atomic_load_n(&environ, __ATOMIC_ACQUIRE) == cur) {
            *out = copy;
            return 0;
        }
        free(copy);
    }
    return EAGAIN;
}

/* The value of PATH in env, or NULL. */
static const char *env_path(char *const *env)
{
    for (; env != NULL && *env != NULL; env++)
        if (strncmp(*env, "PATH=", 5) == 0)
            return *env + 5;
    return NULL;
}

/* 1 if the running kernel has pidfds, else 0; probed once with
   pidfd_open() on the calling process itself, which is always a valid
   target. */
static int pidfd_supported(void)
{
    static int cached = -1; /* -1 unknown, 0 no, 1 yes */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v >= 0)
        return v;
#if SPAWN_HAVE_CLONE
    long fd = syscall(SYS_pidfd_open, (long)getpid(), 0L);
    if (fd >= 0) {
        close((int)fd);
        v = 1;
    } else {
        v = errno == ENOSYS ? 0 : 1;
    }
#else
    v = 0;
#endif
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}

/* 1 if close_range() works here. glibc's closefrom file action uses it,
   and falls back to listing /proc/self/fd; with neither (a seccomp
   profile that hides close_range(), or Linux before 5.9, in a chroot or
   sandbox without /proc) that action fails the whole spawn with ENOENT,
   so such spawns take the clone() path, whose child can also count up to
   the limit. Asked each time (one system call), since a seccomp filter
   can be installed at any moment; a "no" is final, as filters cannot be
   removed and the kernel does not change. Closing a number that cannot
   be open is a no-op that returns 0 where close_range() exists. */
static int close_range_works(void)
{
#ifdef SYS_close_range
    static int hidden; /* atomic */
    if (__atomic_load_n(&hidden, __ATOMIC_RELAXED))
        return 0;
    int saved = errno;
    long r = syscall(SYS_close_range, (unsigned)INT_MAX, (unsigned)INT_MAX, 0);
    errno = saved;
    if (r == 0)
        return 1;
    __atomic_store_n(&hidden, 1, __ATOMIC_RELAXED);
#endif
    return 0;
}

/* Check opts for EINVAL that needs no allocation. */
static int opts_check(const struct forksafe_spawn_opts *o)
{
    if ((o->flags & ~SPAWN_KNOWN_FLAGS) != 0)
        return EINVAL;
    for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; i++)
        if (o->reserved[i] != NULL)
            return EINVAL;
    if ((o->flags & FORKSAFE_SPAWN_SETSID) &&
        (o->flags & FORKSAFE_SPAWN_SETPGROUP))
        return EINVAL; /* a session leader cannot change its group */
    if ((o->flags & FORKSAFE_SPAWN_SETPGROUP) && o->pgroup < 0)
        return EINVAL;
    if ((o->flags & FORKSAFE_SPAWN_PIDFD) && o->pidfd_out == NULL)
        return EINVAL;
    if (o->n_fd_map > 0 && o->fd_map == NULL)
        return EINVAL;
    if (o->n_fd_map > (size_t)INT_MAX / 2)
        return EINVAL;
    /* A negative parent_fd is merely not open: EBADF, from plan_build(). */
    for (size_t i = 0; i < o->n_fd_map; i++)
        if (o->fd_map[i].child_fd < 0)
            return EINVAL;
    return 0;
}

/* ------------------------------------------------- closing descriptors */

/* struct linux_dirent64, as getdents64() fills it. */
struct spawn_dirent {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

/* Contract in spawn-zygote.h. The fallbacks matter under seccomp profiles
   that hide close_range() and on kernels before 5.9: listing /proc/self/fd
   (as glibc's closefrom() does) also finds descriptors above a lowered
   RLIMIT_NOFILE, which counting up to the limit would miss. */
__attribute__((no_sanitize("address", "undefined"))) void
forksafe__close_span(unsigned lo, unsigned hi)
{
    if (lo > hi)
        return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lo, hi, 0) == 0)
        return;
#endif
    long dfd = syscall(SYS_openat, (long)AT_FDCWD, "/proc/self/fd",
                       (long)(O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd >= 0) {
        _Alignas(8) char buf[2048];
        long n = 0;
        int closed = 1;
        /* Closing changes the listing: read it again until a pass closes
           nothing. */
        while (closed && n >= 0) {
            closed = 0;
            syscall(SYS_lseek, dfd, 0L, (long)SEEK_SET);
            while ((n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
                for (long at = 0; at < n;) {
                    const struct spawn_dirent *d =
                        (const struct spawn_dirent *)(const void *)(buf + at);
                    at += d->reclen;
                    unsigned long fd = 0;
                    const char *c = d->name;
                    if (*c < '0' || *c > '9')
                        continue;
                    for (; *c >= '0' && *c <= '9'; c++)
                        fd = fd * 10 + (unsigned long)(*c - '0');
                    if (fd >= lo && fd <= hi && fd != (unsigned long)dfd) {
                        syscall(SYS_close, (long)fd);
                        closed = 1;
                    }
                }
            }
        }
        syscall(SYS_close, dfd);
        if (n == 0)
            return;
    }
    /* Neither: every number up to the limit. */
    struct {
        uint64_t cur, max;
    } rl;
    unsigned long limit = 1ul << 20;
#ifdef SYS_prlimit64
    if (syscall(SYS_prlimit64, 0L, (long)RLIMIT_NOFILE, NULL, &rl) == 0 &&
        rl.cur < limit)
        limit = (unsigned long)rl.cur;
#endif
    for (unsigned long fd = lo; fd <= hi && fd < limit; fd++)
        syscall(SYS_close, (long)fd);
}

/* ------------------------------------------------------------ the plan */

/* How the fd_map is carried out. src[i] is the descriptor the child copies
   onto fd_map[i].child_fd: parent_fd itself, or a close-on-exec copy made
   here when parent_fd is another entry's target (the child would otherwise
   overwrite it before using it). targets holds the child_fd numbers in
   ascending order; held holds every descriptor opened here, to be closed
   after the spawn. src_high is set when a source is at or above
   RLIMIT_NOFILE (open before the limit was lowered): glibc's
   posix_spawn_file_actions_adddup2() refuses such a descriptor with EBADF
   although dup2() takes it, so those spawns take the clone() path. */
struct spawn_plan {
    int *src;
    int *targets;
    int *held;
    size_t n, nheld;
    unsigned long fd_limit; /* the RLIMIT_NOFILE soft limit */
    int src_high;
};

static int int_cmp(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int is_target(const struct spawn_plan *p, int fd)
{
    return bsearch(&fd, p->targets, p->n, sizeof(int), int_cmp) != NULL;
}

/* The highest descriptor the child keeps open: 2 or the highest target. */
static int plan_top(const struct spawn_plan *p)
{
    return p->n > 0 && p->targets[p->n - 1] > 2 ? p->targets[p->n - 1] : 2;
}

static void plan_free(struct spawn_plan *p)
{
    for (size_t i = 0; i < p->nheld; i++)
        close(p->held[i]);
    free(p->src);
    memset(p, 0, sizeof *p);
}

/* Build the plan for o. Returns 0, EINVAL (a repeated child_fd), EBADF (a
   parent_fd not open, a child_fd at or past RLIMIT_NOFILE), or EMFILE /
   ENFILE / ENOMEM (no room for the copies); on error nothing is held. */
static int plan_build(struct spawn_plan *p, const struct forksafe_spawn_opts *o)
{
    memset(p, 0, sizeof *p);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = RLIM_INFINITY;
    p->fd_limit = rl.rlim_cur > (rlim_t)INT_MAX ? (unsigned long)INT_MAX + 1
                                                : (unsigned long)rl.rlim_cur;
    size_t n = o->n_fd_map;
    if (n == 0)
        return 0;
    /* src, targets, and up to 2n held descriptors (a copy per entry, plus
       placeholders: see below). */
    if (n > SIZE_MAX / (4 * sizeof(int)))
        return ENOMEM;
    int *mem = malloc(4 * n * sizeof *mem);
    if (mem == NULL)
        return ENOMEM;
    p->src = mem;
    p->targets = mem + n;
    p->held = mem + 2 * n;
    p->n = n;
    for (size_t i = 0; i < n; i++)
        p->targets[i] = o->fd_map[i].child_fd;
    qsort(p->targets, n, sizeof(int), int_cmp);
    int r = 0;
    for (size_t i = 1; i < n && r == 0; i++)
        if (p->targets[i] == p->targets[i - 1])
            r = EINVAL;
    for (size_t i = 0; i < n && r == 0; i++) {
        const struct forksafe_fd_map *m = &o->fd_map[i];
        if (fcntl(m->parent_fd, F_GETFD) < 0 ||
            (unsigned long)m->child_fd >= p->fd_limit)
            r = EBADF;
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        const struct forksafe_fd_map *m = &o->fd_map[i];
        p->src[i] = m->parent_fd;
        /* Without the clone() path, a source above the limit is copied
           below it, like a source that is another entry's target. */
        int high =
            !SPAWN_HAVE_CLONE && (unsigned long)m->parent_fd >= p->fd_limit;
        if (!high &&
            (!is_target(p, m->parent_fd) || m->parent_fd == m->child_fd))
            continue;
        /* parent_fd is some other entry's target: copy it to a free number
           that is no target. The copy is ours, so no other thread can open
           anything there; a number that is a target is kept open as a
           placeholder (the child's dup onto it replaces it) and the next
           free one is tried. */
        for (;;) {
            int c = fcntl(m->parent_fd, F_DUPFD_CLOEXEC, 3);
            if (c < 0) {
                r = errno == EINVAL ? EMFILE : errno;
                break;
            }
            p->held[p->nheld++] = c;
            if (!is_target(p, c)) {
                p->src[i] = c;
                break;
            }
        }
    }
    for (size_t i = 0; i < n && r == 0; i++)
        if ((unsigned long)p->src[i] >= p->fd_limit)
            p->src_high = 1;
    if (r != 0)
        plan_free(p);
    return r;
}

/* --------------------------------------------------- posix_spawn() path */

/* Turn the plan into file actions. glibc ignores EBADF from a close action
   on a descriptor that is not open, so holes below the highest target can
   be closed blindly; the highest target is below RLIMIT_NOFILE. */
static int actions_build(posix_spawn_file_actions_t *fa,
                         const struct forksafe_spawn_opts *o,
                         const struct spawn_plan *p)
{
    int r;
    if (o->cwd != NULL &&
        (r = posix_spawn_file_actions_addchdir_np(fa, o->cwd)) != 0)
        return r;
    /* adddup2(x, x) clears x's close-on-exec flag (glibc 2.29+). */
    for (size_t i = 0; i < p->n; i++)
        if ((r = posix_spawn_file_actions_adddup2(fa, p->src[i],
                                                  o->fd_map[i].child_fd)) != 0)
            return r;
    if (o->flags & FORKSAFE_SPAWN_KEEP_FDS)
        return 0; /* the copies are close-on-exec */
    int top = plan_top(p);
    size_t k = 0;
    for (int fd = 3; fd <= top; fd++) {
        while (k < p->n && p->targets[k] < fd)
            k++;
        if (k < p->n && p->targets[k] == fd)
            continue;
        if ((r = posix_spawn_file_actions_addclose(fa, fd)) != 0)
            return r;
    }
    /* Then everything from top + 1 on. glibc refuses a start at the limit;
       spawn_impl() takes the clone() path then, which can also close what
       a lowered limit left open above it. */
    if ((unsigned long)top + 1 >= p->fd_limit)
        return 0;
#if SPAWN_HAVE_ADDCLOSEFROM
    return posix_spawn_file_actions_addclosefrom_np(fa, top + 1);
#else
    /* Only where the clone() path is not built either: one close action
       per descriptor up to the limit. */
    for (unsigned long fd = (unsigned long)top + 1; fd < p->fd_limit; fd++)
        if ((r = posix_spawn_file_actions_addclose(fa, (int)fd)) != 0)
            return r;
    return 0;
#endif
}

static int attr_build(posix_spawnattr_t *at,
                      const struct forksafe_spawn_opts *o)
{
    short fl = 0;
    int r;
    if (!(o->flags & FORKSAFE_SPAWN_KEEP_SIGMASK)) {
        sigset_t none;
        sigemptyset(&none);
        if ((r = posix_spawnattr_setsigmask(at, &none)) != 0)
            return r;
        fl |= POSIX_SPAWN_SETSIGMASK;
    }
    if (!(o->flags & FORKSAFE_SPAWN_KEEP_SIGDEFAULTS)) {
        sigset_t all;
        sigfillset(&all);
        if ((r = posix_spawnattr_setsigdefault(at, &all)) != 0)
            return r;
        fl |= POSIX_SPAWN_SETSIGDEF;
    }
    if (o->flags & FORKSAFE_SPAWN_SETSID)
        fl |= POSIX_SPAWN_SETSID;
    if (o->flags & FORKSAFE_SPAWN_SETPGROUP) {
        if ((r = posix_spawnattr_setpgroup(at, o->pgroup)) != 0)
            return r;
        fl |= POSIX_SPAWN_SETPGROUP;
    }
    return posix_spawnattr_setflags(at, fl);
}

/* How PATH search treats an exec error, as execvp() does (glibc
   posix/execvpe.c): 1 to try the next directory, 0 to stop with it. */
static int search_goes_on(int err)
{
    return err == ENOENT || err == ENOTDIR || err == ESTALE || err == ENODEV ||
           err == ETIMEDOUT || err == EACCES;
}

/* Search PATH like execvp() (glibc posix/execvpe.c): the first candidate
   that execs wins; the errors search_goes_on() names move on (EACCES is
   remembered), any other stops the search, and a candidate longer than
   PATH_MAX stops it with ENAMETOOLONG, as the kernel would. An element of
   PATH_MAX bytes or more, which no path can contain, is skipped. When no
   candidate execs, the result is EACCES if one said so, else the last
   candidate's error (ENOENT when there was none). Absolute candidates that
   access() says do not exist are skipped without starting a child. */
static int spawn_search(pid_t *pid, const char *file, const char *path,
                        const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *at, char *const argv[],
                        char *const envp[])
{
    size_t flen = strlen(file);
    int seen_eacces = 0, last = ENOENT;
    char buf[PATH_MAX];
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dlen = end != NULL ? (size_t)(end - p) : strlen(p);
        /* An empty element means the current directory (POSIX legacy). */
        const char *dir = dlen > 0 ? p : ".";
        size_t dl = dlen > 0 ? dlen : 1;
        if (dl < PATH_MAX) {
            if (dl + 1 + flen + 1 > sizeof buf)
                return ENAMETOOLONG;
            memcpy(buf, dir, dl);
            buf[dl] = '/';
            memcpy(buf + dl + 1, file, flen + 1);
            int skip = buf[0] == '/' && access(buf, F_OK) != 0 &&
                       (errno == ENOENT || errno == ENOTDIR);
            int r = skip ? errno : posix_spawn(pid, buf, fa, at, argv, envp);
            if (r == 0)
                return 0;
            if (!search_goes_on(r))
                return r;
            seen_eacces |= r == EACCES;
            last = r;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return seen_eacces ? EACCES : last;
}

static int spawn_posix(pid_t *pid, const char *file, const char *path,
                       char *const argv[], char *const envp[],
                       const struct forksafe_spawn_opts *o,
                       const struct spawn_plan *p)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int r;
    if ((r = posix_spawn_file_actions_init(&fa)) != 0)
        return r;
    if ((r = posix_spawnattr_init(&at)) != 0)
        goto out_fa;
    if ((r = actions_build(&fa, o, p)) != 0 || (r = attr_build(&at, o)) != 0)
        goto out_attr;
    if (path != NULL)
        r = spawn_search(pid, file, path, &fa, &at, argv, envp);
    else
        r = posix_spawn(pid, file, &fa, &at, argv, envp);
out_attr:
    posix_spawnattr_destroy(&at);
out_fa:
    posix_spawn_file_actions_destroy(&fa);
    return r;
}

/* ------------------------------------------------------- clone() path */

#if SPAWN_HAVE_CLONE

/* The kernel's struct sigaction for rt_sigaction() on x86-64, i386 and
   arm64; riscv has no sa_restorer, which only moves sa_mask, so an
   all-zero value (SIG_DFL) and a read of the handler are right there too.
   glibc's sigaction() cannot be used in the child: it refuses glibc's
   own signals (SIGCANCEL, SIGSETXID) and sanitizers interpose it. */
struct spawn_ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask[2];
};

#define SPAWN_KSIGSET 8 /* bytes of the kernel's signal set (_NSIG / 8) */
#define SPAWN_NSIG    65

/* What the child needs; on the parent's stack, which the child shares. */
struct spawn_child {
    const struct forksafe_spawn_opts *o;
    const struct spawn_plan *p;
    const char *file; /* exec'd as is when path is NULL */
    const char *path; /* PATH to search for file, or NULL */
    size_t flen;      /* strlen(file) */
    char *const *argv;
    char *const *envp;
    sigset_t mask;    /* the child's signal mask at exec */
    volatile int err; /* set by the child if it fails before exec */
};

/* The child, between clone() and exec. It runs on its own stack in the
   parent's memory, beside the parent's other threads, with every signal
   blocked: system calls only, no locks, no allocation, no libc state.
   Returns only on failure (the clone() wrapper then exits with 127). */
__attribute__((no_sanitize("address", "undefined"))) static int
spawn_child_main(void *arg)
{
    struct spawn_child *c = arg;
    const struct forksafe_spawn_opts *o = c->o;
    const struct spawn_plan *p = c->p;
    /* No handler of the parent's may run here, in its memory: every caught
       signal goes back to SIG_DFL (ignored ones too, unless kept). */
    int keep_ign = (o->flags & FORKSAFE_SPAWN_KEEP_SIGDEFAULTS) != 0;
    for (int sig = 1; sig < SPAWN_NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        struct spawn_ksigaction dfl, cur;
        memset(&dfl, 0, sizeof dfl);
        if (syscall(SYS_rt_sigaction, sig, NULL, &cur, SPAWN_KSIGSET) != 0)
            continue;
        if (cur.handler == (void *)SIG_DFL ||
            (keep_ign && cur.handler == (void *)SIG_IGN))
            continue;
        syscall(SYS_rt_sigaction, sig, &dfl, NULL, SPAWN_KSIGSET);
    }
    if ((o->flags & FORKSAFE_SPAWN_SETSID) && syscall(SYS_setsid) < 0)
        goto fail;
    if ((o->flags & FORKSAFE_SPAWN_SETPGROUP) &&
        syscall(SYS_setpgid, 0L, (long)o->pgroup) != 0)
        goto fail;
    if (o->cwd != NULL && syscall(SYS_chdir, o->cwd) != 0)
        goto fail;
    for (size_t i = 0; i < p->n; i++) {
        long from = p->src[i], to = o->fd_map[i].child_fd;
        if (from == to) {
            long fl = syscall(SYS_fcntl, to, (long)F_GETFD);
            if (fl < 0 ||
                syscall(SYS_fcntl, to, (long)F_SETFD, fl & ~FD_CLOEXEC) != 0)
                goto fail;
        } else if (syscall(SYS_dup3, from, to, 0L) < 0) {
            goto fail;
        }
    }
    if (!(o->flags & FORKSAFE_SPAWN_KEEP_FDS)) {
        unsigned lo = 3;
        for (size_t k = 0; k < p->n; k++) {
            unsigned t = (unsigned)p->targets[k];
            if (t < lo)
                continue;
            if (t > lo)
                forksafe__close_span(lo, t - 1);
            lo = t + 1;
        }
        forksafe__close_span(lo, ~0u);
    }
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &c->mask, NULL, SPAWN_KSIGSET);
    if (c->path == NULL) {
        syscall(SYS_execve, c->file, c->argv, c->envp);
        goto fail;
    }
    /* PATH search, as spawn_search() does it, in this one child. */
    char buf[PATH_MAX];
    int seen_eacces = 0, last = ENOENT;
    const char *s = c->path;
    for (;;) {
        const char *end = s;
        while (*end != '\0' && *end != ':')
            end++;
        size_t dl = end > s ? (size_t)(end - s) : 1;
        const char *dir = end > s ? s : ".";
        if (dl < PATH_MAX) { /* longer elements are skipped */
            if (dl + 1 + c->flen + 1 > sizeof buf) {
                errno = ENAMETOOLONG;
                goto fail;
            }
            memcpy(buf, dir, dl);
            buf[dl] = '/';
            memcpy(buf + dl + 1, c->file, c->flen + 1);
            syscall(SYS_execve, buf, c->argv, c->envp);
            if (!search_goes_on(errno))
                goto fail;
            seen_eacces |= errno == EACCES;
            last = errno;
        }
        if (*end == '\0')
            break;
        s = end + 1;
    }
    errno = seen_eacces ? EACCES : last;
fail:
    c->err = errno > 0 ? errno : EINVAL;
    return 127;
}

/* Size of the child's stack: its frame holds a PATH_MAX buffer; the rest
   is system-call wrappers. A guard page sits below it. */
#define SPAWN_STACK (64u * 1024)

/* Start the child with clone(); with pidfd_out, with CLONE_PIDFD and the
   pidfd stored there. Returns 0 or an errno value; on failure nothing is
   left running. */
static int spawn_clone(pid_t *pid, int *pidfd_out, const char *file,
                       const char *path, char *const argv[], char *const envp[],
                       const struct forksafe_spawn_opts *o,
                       const struct spawn_plan *p)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = SPAWN_STACK + pg;
    char *stk = mmap(NULL, len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stk == MAP_FAILED)
        return errno;
    mprotect(stk, pg, PROT_NONE);

    struct spawn_child c;
    memset(&c, 0, sizeof c);
    c.o = o;
    c.p = p;
    c.file = file;
    c.path = path;
    c.flen = strlen(file);
    c.argv = argv;
    c.envp = envp;
    /* Block everything, glibc's own signals included (hence the raw
       call), so that nothing runs in the child before its handlers are
       reset; and no cancellation while the child borrows our memory. */
    sigset_t all, old;
    memset(&all, 0xff, sizeof all);
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, SPAWN_KSIGSET);
    if (o->flags & FORKSAFE_SPAWN_KEEP_SIGMASK)
        c.mask = old;
    else
        sigemptyset(&c.mask);
    int pidfd = -1;
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    if (pidfd_out != NULL)
        flags |= CLONE_PIDFD;
    pid_t child = clone(spawn_child_main, stk + len, flags, &c, &pidfd);
    int e = errno;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, SPAWN_KSIGSET);
    pthread_setcancelstate(cancel, NULL);
    munmap(stk, len);
    if (child < 0)
        return e; /* nothing was started: EAGAIN, ENOMEM, EMFILE, ... */
    if (c.err != 0) {
        /* It failed before exec and has exited: reap it. On the pidfd,
           exactly it, whatever else happens (ECHILD if SIGCHLD is ignored
           or another thread reaped it). Without one, by PID, as
           posix_spawn() itself does. */
        siginfo_t si;
        if (pidfd_out != NULL) {
            while (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 &&
                   errno == EINTR) {
            }
            close(pidfd);
        } else {
            while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
            }
        }
        return c.err;
    }
    *pid = child;
    if (pidfd_out != NULL)
        *pidfd_out = pidfd;
    return 0;
}

#else

static int spawn_clone(pid_t *pid, int *pidfd_out, const char *file,
                       const char *path, char *const argv[], char *const envp[],
                       const struct forksafe_spawn_opts *o,
                       const struct spawn_plan *p)
{
    (void)pid, (void)pidfd_out, (void)file, (void)path, (void)argv;
    (void)envp, (void)o, (void)p;
    return ENOSYS;
}

#endif

/* ------------------------------------------------------------ entry */

static int spawn_impl(pid_t *pid, const char *file, char *const argv[],
                      char *const envp[],
                      const struct forksafe_spawn_opts *opts)
{
    static const struct forksafe_spawn_opts defaults;
    const struct forksafe_spawn_opts *o = opts != NULL ? opts : &defaults;
    if (pid == NULL || file == NULL || argv == NULL || file[0] == '\0')
        return EINVAL;
    int r = opts_check(o);
    if (r != 0)
        return r;
    struct spawn_plan plan;
    if ((r = plan_build(&plan, o)) != 0)
        return r;
    if ((o->flags & FORKSAFE_SPAWN_PIDFD) && !pidfd_supported()) {
        plan_free(&plan);
        return ENOSYS;
    }
    int search = !(o->flags & FORKSAFE_SPAWN_NO_PATH_SEARCH) &&
                 strchr(file, '/') == NULL;
    char **env = NULL;
    if ((envp == NULL || search) && (r = env_copy(&env)) != 0) {
        plan_free(&plan);
        return r;
    }
    const char *path = NULL;
    if (search) {
        path = env_path(env);
        if (path == NULL)
            path = SPAWN_DEFAULT_PATH;
    }
    char *const *cenv = envp != NULL ? envp : env;
    pid_t child;
    if (o->flags & FORKSAFE_SPAWN_PIDFD) {
        int pidfd = -1;
        r = spawn_clone(&child, &pidfd, file, path, argv, cenv, o, &plan);
        if (r == 0)
            *o->pidfd_out = pidfd;
    } else if (SPAWN_HAVE_CLONE &&
               (plan.src_high || (!(o->flags & FORKSAFE_SPAWN_KEEP_FDS) &&
                                  (!SPAWN_HAVE_ADDCLOSEFROM ||
                                   plan_top(&plan) + 1ul >= plan.fd_limit ||
                                   !close_range_works())))) {
        /* A source glibc would refuse (above a lowered limit), no
           closefrom file action here, one glibc would refuse (a start at
           the limit, while descriptors above a lowered limit may still be
           open), or one that could fail (no close_range(): glibc would
           need /proc). */
        r = spawn_clone(&child, NULL, file, path, argv, cenv, o, &plan);
    } else {
        r = spawn_posix(&child, file, path, argv, cenv, o, &plan);
    }
    if (r == 0)
        *pid = child;
    plan_free(&plan);
    free(env);
    return r;
}

/* Contract in forksafe.h. The errno value the caller had is preserved:
   results travel only in the return value. forksafe_spawn() is not a
   cancellation point: close(), waitid() and waitpid() inside it are, and
   a thread cancelled there would leave the child it made unreported (a
   zombie nobody knows of) and the pidfd, the plan's copies and the
   environment copy behind. A pending cancellation takes effect at the
   caller's next cancellation point instead; the call itself never
   blocks for long (the child only runs until it execs). */
FORKSAFE_API int forksafe_spawn(pid_t *pid, const char *file,
                                char *const argv[], char *const envp[],
                                const struct forksafe_spawn_opts *opts)
{
    int saved = errno, cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    int r = spawn_impl(pid, file, argv, envp, opts);
    pthread_setcancelstate(cancel, NULL);
    errno = saved;
    return r;
}
