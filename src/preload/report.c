/* SPDX-License-Identifier: MIT */
/*
 * report.c: what the audit writes at the end and at the start of a
 * process. At exit: unregistered shared locks, lock-order violations,
 * libraries without their adapter, registration facts and the summary,
 * written before the loader's destructors while the registry still
 * answers. At start, in a process exec'd inside the audited tree: the
 * descriptors it inherited without close-on-exec.
 */
#include "audit.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forksafe.h"

/* ------------------------------------------------------------ exit report */

typedef int (*lookup_fn)(const void *, struct forksafe_info *);

/* Shared locks listed per process; the others are counted in the
   summary (shared_locks_unlisted). */
#define SHARED_LIST_MAX 32

static void report_lock(lookup_fn lookup, const struct lock_ent *e,
                        long *shared_n, long *reg_n, int *cap, long *unlisted)
{
    if (!LOAD(&e->addr) || !LOAD(&e->shared))
        return;
    char obj[300];
    uintptr_t off;
    if (forksafe__maps_find(e->site1, obj, sizeof obj, &off) == 0 &&
        forksafe__audit_is_forksafe_object(obj))
        return; /* libforksafe's own locks: it handles them itself */
    (*shared_n)++;
    struct forksafe_info info;
    if (lookup && lookup((void *)e->addr, &info) == 0) {
        (*reg_n)++;
        return;
    }
    /* A coverage gap matters only to a process that forks with other
       threads alive (forksafe-audit keeps it only when a child of such a
       fork ran on): inventory, not a hazard by itself. */
    if (!forksafe__audit_forks_mt())
        return;
    if ((*cap)-- <= 0) {
        (*unlisted)++;
        return;
    }
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    forksafe__audit_rec_common(r, "unregistered-shared-lock", "info");
    forksafe__rec_hex(r, "lock", e->addr);
    forksafe__rec_str(r, "lock_kind", kind_name(e->kind));
    forksafe__rec_frame(r, "first-lock", e->tid1, NULL, e->site1);
    forksafe__rec_frame(r, "other-thread-lock", e->tid2, NULL, e->site2);
    forksafe__rec_end(r);
}

/* Only the entries in use are visited (a process that used a few locks
   touches a few pages), live ones first, then those that went away. */
static void report_locks(lookup_fn lookup, long *shared_n, long *reg_n,
                         long *unlisted)
{
    int cap = SHARED_LIST_MAX;
    size_t n = forksafe__lock_count();
    for (size_t i = 0; i < n; i++)
        report_lock(lookup, forksafe__lock_at(i), shared_n, reg_n, &cap,
                    unlisted);
    int nret;
    const struct lock_ent *ret = forksafe__lock_retired(&nret);
    for (int i = 0; i < nret && i < RETIRED_MAX; i++)
        report_lock(lookup, &ret[i], shared_n, reg_n, &cap, unlisted);
}

static void report_order(lookup_fn lookup)
{
    if (!lookup)
        return;
    size_t n = forksafe__edge_count();
    for (size_t i = 0; i < n; i++) {
        const struct edge *e = forksafe__edge_at(i);
        if (!e)
            continue;
        struct forksafe_info ia, ib;
        if (lookup(e->a, &ia) != 0 || lookup(e->b, &ib) != 0 ||
            ia.rank <= ib.rank)
            continue;
        struct forksafe__rec *r = forksafe__rec_begin("finding");
        if (!r)
            continue;
        forksafe__audit_rec_common(r, "lock-order-violation", "error");
        forksafe__rec_str(r, "held_name", ia.name);
        forksafe__rec_int(r, "held_rank", (long)ia.rank);
        forksafe__rec_hex(r, "held_lock", (uintptr_t)e->a);
        forksafe__rec_str(r, "taken_name", ib.name);
        forksafe__rec_int(r, "taken_rank", (long)ib.rank);
        forksafe__rec_hex(r, "taken_lock", (uintptr_t)e->b);
        /* Made inside a fork's prepare: a fork handler (a raw one, when
           the first lock was taken from its object) orders it so. */
        forksafe__rec_bool(r, "in_prepare",
                           forksafe__audit_prepare_edge(e->a, e->b));
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
    if (!lookup)
        return;
    size_t n = forksafe__lock_count();
    for (size_t i = 0; i < n; i++) {
        uintptr_t a = LOAD(&forksafe__lock_at(i)->addr);
        struct forksafe_info info;
        if (!a || lookup((void *)a, &info) != 0)
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

HOT static int exit_done;

/* The exit report. early: called before the loader's destructors (from
   exit() or from the handler registered when main starts), so the program's
   libraries, libforksafe included, can still be called. Late (the fallback
   handler registered by our constructor, for programs whose main we did
   not see): they may be torn down already, so no registry questions. */
static void exit_report(int early, void *site)
{
    /* A watched child that calls exit() runs on: its atexit handlers run,
       and stdio writes out what is pending, the parent's bytes included. */
    /* forksafe__policy_slow (hot data) is set whenever the child is
       watched: a process that was never a watched child does not touch
       the fork state's page (one page fault fewer per program image). */
    if (LOAD(&forksafe__policy_slow) && LOAD(&forksafe__audit_fk.watch)) {
        forksafe__audit_ran_on();
        forksafe__audit_stdio_check(NULL, 1, site);
    }
    forksafe__rec_flush();
    if (__atomic_exchange_n(&exit_done, 1, __ATOMIC_ACQ_REL))
        return;
    if (!forksafe__out_enabled())
        return;
    int saved = errno;
    long shared_n = 0, reg_n = 0, unlisted = 0;
    int present_n = 0, needed_n = 0;
    forksafe__in_hook++;
    /* In a child of a multi-threaded fork the registry may be unusable;
       only the summary is written there. */
    lookup_fn lookup = NULL;
    /* Most processes (a script's /bin/true) used no lock and never forked:
       then there is nothing to ask the registry, and dlsym, which
       allocates when a symbol is missing, is not called at all. */
    int busy = forksafe__lock_count() || forksafe__edge_count() ||
               forksafe__audit_forks() || LOAD(&forksafe__audit_atfork_raw) ||
               LOAD(&forksafe__audit_atfork_registry);
    if (busy && !LOAD(&forksafe__audit_fk.child_mt)) {
        if (early) {
            lookup = LOAD(&forksafe__audit_lookup);
            if (!lookup)
                lookup = (lookup_fn)dlsym(RTLD_DEFAULT, "forksafe_lookup");
        }
        report_locks(lookup, &shared_n, &reg_n, &unlisted);
        report_order(lookup);
        report_lockinfo(lookup);
    }
    forksafe__audit_libs_needed(&needed_n, &present_n);
    /* A process with nothing to say (the common case: a short-lived
       program exec'd by a script) writes no summary, and so costs no
       record file; the run page counts it. */
    long forks = forksafe__audit_forks();
    long untracked = forksafe__lock_untracked();
    int raw = LOAD(&forksafe__audit_atfork_raw);
    int reg = LOAD(&forksafe__audit_atfork_registry);
    if (forks || shared_n || raw || reg || needed_n || untracked ||
        forksafe__rec_written()) {
        struct forksafe__rec *r = forksafe__rec_begin("summary");
        if (r) {
            forksafe__rec_int(r, "pid", forksafe__getpid());
            forksafe__rec_int(r, "forks", forks);
            forksafe__rec_int(r, "shared_locks", shared_n);
            forksafe__rec_int(r, "registered_shared_locks", reg_n);
            forksafe__rec_int(r, "atfork_raw", raw);
            forksafe__rec_int(r, "atfork_registry", reg);
            forksafe__rec_bool(r, "registry_available", lookup != NULL);
            forksafe__rec_int(r, "adapters_present", present_n);
            forksafe__rec_int(r, "adapters_needed", needed_n);
            forksafe__rec_int(r, "locks_untracked", untracked);
            forksafe__rec_int(r, "shared_locks_unlisted", unlisted);
            forksafe__rec_int(r, "forks_with_threads",
                              forksafe__audit_forks_mt());
            forksafe__rec_end(r);
        }
    }
    forksafe__in_hook--;
    if (errno != saved)
        errno = saved;
}

static void audit_exit(void)
{
    exit_report(1, NULL);
}

void forksafe__audit_exit_late(void)
{
    exit_report(0, NULL);
}

/* exit(): the exit report first, then the real exit. */
EXPORT void exit(int status)
{
    /* Run the report while every library is still usable (a plain atexit
       handler may run after libforksafe's own teardown). */
    exit_report(1, __builtin_return_address(0));
    void (*real_exit)(int) = (void (*)(int))forksafe__resolve("exit");
    real_exit(status);
    __builtin_unreachable();
}

/* The exit report must run before the dynamic loader's destructors
   (_dl_fini), while libforksafe still answers lookups. An atexit handler
   registered from our constructor would run after them: the loader
   registers _dl_fini later, in __libc_start_main. So main() is wrapped and
   the handler registered when it starts. */
typedef int (*main_fn)(int, char **, char **);
HOT static main_fn real_main;
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
                 void (*)(void), void *))forksafe__resolve("__libc_start_main");
    real_main = main;
    return real(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end);
}

/* ------------------------------------------------------------ exec'd fds */

/* A process started by exec inside the audited tree: every descriptor
   above 2 that it inherited survived an exec without close-on-exec. It is
   a leak unless the parent passed it on purpose, which it says by naming
   the descriptor to the new program:
     - in its arguments, as a whole number (--fd=5, /dev/fd/5, "5", 3,4);
     - in the environment: a jobserver in MAKEFLAGS or MFLAGS
       (--jobserver-auth=R,W, --jobserver-fds=R,W), systemd's LISTEN_FDS=N
       (descriptors 3 to N + 2), or a variable whose name says it holds a
       descriptor (contains FD, FILENO, SOCKET, PIPE or HANDLE), as a whole
       number in its value. */

static int word_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || c == '_';
}

/* 1 if s holds fd as a whole decimal number (not part of a word). */
static int names_fd(const char *s, int fd)
{
    for (const char *p = s; p && *p;) {
        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        const char *start = p;
        long v = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if (v < 1000000)
                v = v * 10 + (*p - '0');
        if ((start == s || !word_char(start[-1])) && !word_char(*p) && v == fd)
            return 1;
    }
    return 0;
}

/* The pair after "--jobserver-auth=" or "--jobserver-fds=" in a MAKEFLAGS
   value. */
static int jobserver_fd(const char *v, int fd)
{
    static const char *const keys[] = {"--jobserver-auth=", "--jobserver-fds="};
    for (int k = 0; v && k < 2; k++) {
        const char *p = strstr(v, keys[k]);
        if (!p)
            continue;
        p += strlen(keys[k]);
        long r = -1, w = -1;
        if (*p >= '0' && *p <= '9') {
            r = strtol(p, (char **)&p, 10);
            if (*p == ',')
                w = strtol(p + 1, NULL, 10);
        }
        if (fd == r || fd == w)
            return 1;
    }
    return 0;
}

static int fd_variable(const char *e, size_t namelen)
{
    static const char *const words[] = {"FD", "FILENO", "SOCKET", "PIPE",
                                        "HANDLE"};
    char name[128];
    if (namelen >= sizeof name)
        return 0;
    for (size_t i = 0; i < namelen; i++)
        name[i] = (char)(e[i] >= 'a' && e[i] <= 'z' ? e[i] - 32 : e[i]);
    name[namelen] = '\0';
    if (strncmp(name, "FORKSAFE_", 9) == 0 || strcmp(name, "LD_PRELOAD") == 0)
        return 0;
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
        if (strstr(name, words[w]))
            return 1;
    return 0;
}

static int fd_named(int fd, int argc, char **argv)
{
    for (int i = 1; i < argc && argv && argv[i]; i++)
        if (names_fd(argv[i], fd))
            return 1;
    if (jobserver_fd(getenv("MAKEFLAGS"), fd) ||
        jobserver_fd(getenv("MFLAGS"), fd))
        return 1;
    const char *lf = getenv("LISTEN_FDS");
    if (lf && *lf >= '0' && *lf <= '9') {
        long n = strtol(lf, NULL, 10);
        if (fd >= 3 && fd < 3 + n)
            return 1;
    }
    extern char **environ;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && fd_variable(*e, (size_t)(eq - *e)) && names_fd(eq + 1, fd))
            return 1;
    }
    return 0;
}

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

/* Which descriptors from 3 up to FD_PROBE - 1 are open, with one poll()
   (an unused one comes back POLLNVAL): much cheaper than listing
   /proc/self/fd, and every exec'd program pays it. */
#define FD_PROBE 256

void forksafe__audit_report_inherited_fds(int argc, char **argv, char **envp)
{
    (void)envp; /* environ, after the exec hooks' additions are removed */
    struct pollfd p[FD_PROBE - 3];
    nfds_t n = FD_PROBE - 3;
    for (nfds_t i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = (int)i + 3, .events = 0};
    /* poll() refuses more entries than RLIMIT_NOFILE allows (EINVAL):
       only then is the limit asked for, and the probe shortened. */
    int got = poll(p, n, 0);
    if (got < 0 && errno == EINVAL) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= FD_PROBE)
            return;
        n = rl.rlim_cur > 3 ? (nfds_t)(rl.rlim_cur - 3) : 0;
        got = n ? poll(p, n, 0) : -1;
    }
    if (got < 0)
        return;
    int reported = 0;
    for (nfds_t i = 0; i < n && reported < 32; i++) {
        if (p[i].revents & POLLNVAL)
            continue;
        int fd = p[i].fd;
        if (fd_named(fd, argc, argv))
            continue;
        reported++;
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
        forksafe__audit_rec_common(r, "fd-leak-on-exec", "warning");
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
