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
        forksafe__audit_rec_common(r, "library-without-adapter",
                                   known_libs[k].no_safe_way ? "error"
                                                             : "warning");
        forksafe__rec_str(r, "library", paths[k]);
        forksafe__rec_str(r, "adapter", known_libs[k].adapter);
        forksafe__rec_bool(r, "no_safe_way", known_libs[k].no_safe_way);
        forksafe__rec_end(r);
    }
}

static void report_lock(lookup_fn lookup, const struct lock_ent *e,
                        long *shared_n, long *reg_n, int *cap)
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
    if ((*cap)-- <= 0)
        return;
    struct forksafe__rec *r = forksafe__rec_begin("finding");
    if (!r)
        return;
    forksafe__audit_rec_common(r, "unregistered-shared-lock", "warning");
    forksafe__rec_hex(r, "lock", e->addr);
    forksafe__rec_str(r, "lock_kind", kind_name(e->kind));
    forksafe__rec_frame(r, "first-lock", e->tid1, NULL, e->site1);
    forksafe__rec_frame(r, "other-thread-lock", e->tid2, NULL, e->site2);
    forksafe__rec_end(r);
}

/* Only the entries in use are visited (a process that used a few locks
   touches a few pages), live ones first, then those that went away. */
static void report_locks(lookup_fn lookup, long *shared_n, long *reg_n)
{
    int cap = 64;
    size_t n = forksafe__lock_count();
    for (size_t i = 0; i < n; i++)
        report_lock(lookup, forksafe__lock_at(i), shared_n, reg_n, &cap);
    int nret;
    const struct lock_ent *ret = forksafe__lock_retired(&nret);
    for (int i = 0; i < nret && i < RETIRED_MAX; i++)
        report_lock(lookup, &ret[i], shared_n, reg_n, &cap);
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
static void exit_report(int early)
{
    forksafe__rec_flush();
    if (__atomic_exchange_n(&exit_done, 1, __ATOMIC_ACQ_REL))
        return;
    if (!forksafe__out_enabled())
        return;
    int saved = errno;
    long shared_n = 0, reg_n = 0;
    int present_n = 0, needed_n = 0;
    forksafe__in_hook++;
    /* In a child of a multi-threaded fork the registry may be unusable;
       only the summary is written there. */
    lookup_fn lookup = NULL;
    installed_fn installed = NULL;
    /* Most processes (a script's /bin/true) used no lock and never forked:
       then there is nothing to ask the registry, and dlsym, which
       allocates when a symbol is missing, is not called at all. */
    int busy = forksafe__lock_count() || forksafe__edge_count() ||
               forksafe__audit_forks() || LOAD(&forksafe__audit_atfork_raw) ||
               LOAD(&forksafe__audit_atfork_registry);
    if (busy && !LOAD(&forksafe__audit_fk.child_mt)) {
        if (early) {
            lookup = (lookup_fn)dlsym(RTLD_DEFAULT, "forksafe_lookup");
            installed =
                (installed_fn)dlsym(RTLD_DEFAULT, "forksafe_adapter_installed");
        }
        report_locks(lookup, &shared_n, &reg_n);
        report_order(lookup);
        report_lockinfo(lookup);
        if (forksafe__audit_forks() > 0)
            report_adapters(installed, &present_n, &needed_n);
    }
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
            forksafe__rec_end(r);
        }
    }
    forksafe__in_hook--;
    if (errno != saved)
        errno = saved;
}

static void audit_exit(void)
{
    exit_report(1);
}

void forksafe__audit_exit_late(void)
{
    exit_report(0);
}

/* exit(): the exit report first, then the real exit. */
EXPORT void exit(int status)
{
    /* Run the report while every library is still usable (a plain atexit
       handler may run after libforksafe's own teardown). */
    audit_exit();
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
/* Which descriptors from 3 up to FD_PROBE - 1 are open, with one poll()
   (an unused one comes back POLLNVAL): much cheaper than listing
   /proc/self/fd, and every exec'd program pays it. */
#define FD_PROBE 256

void forksafe__audit_report_inherited_fds(void)
{
    struct pollfd p[FD_PROBE - 3];
    struct rlimit rl;
    nfds_t n = FD_PROBE - 3;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < FD_PROBE)
        n = rl.rlim_cur > 3 ? (nfds_t)(rl.rlim_cur - 3) : 0;
    for (nfds_t i = 0; i < n; i++)
        p[i] = (struct pollfd){.fd = (int)i + 3, .events = 0};
    if (!n || poll(p, n, 0) < 0)
        return;
    int reported = 0;
    for (nfds_t i = 0; i < n && reported < 32; i++) {
        if (p[i].revents & POLLNVAL)
            continue;
        int fd = p[i].fd;
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
