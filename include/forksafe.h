/* SPDX-License-Identifier: MIT */
/*
 * forksafe.h: make fork() without exec() consistent in multi-threaded
 * programs, and make it easy to avoid where it can be avoided.
 *
 * This header is the manual. Types come first, then the functions grouped by
 * noun: registration, the fork wrapper, diagnostics, spawn, the fork server,
 * the version.
 *
 * Conventions (the same for every function unless its comment says
 * otherwise):
 *  - Registration and query functions return 0 or a positive errno value,
 *    like the pthread functions, and never set errno.
 *  - Fork-like calls return -1 and set errno on failure.
 *  - Every function is thread-safe. None is async-signal-safe (a signal
 *    handler that must fork uses _Fork(), which runs no handlers).
 *  - Every function may be called in the child of a fork, once fork() has
 *    returned there; the registry calls fail with EDEADLK only from inside
 *    a forksafe callback on the forking thread.
 *  - Bad input changes nothing: EINVAL (NULL key or name, unknown flags,
 *    non-zero reserved fields), EEXIST (key already registered), ENOENT
 *    (unknown key), ENOMEM (out of memory; the registry is unchanged).
 *  - One registry per process: when several copies of the library are
 *    loaded (a program linked with libforksafe.a, a plugin with
 *    libforksafe.so), the later ones forward every call to the first, and
 *    the report says so. A copy whose internal interface differs from the
 *    first's refuses every registration with ENOTSUP and says why in
 *    forksafe_last_error() and its report, rather than keep a second
 *    registry (docs/semantics.md, "Several copies").
 *
 * The library installs exactly one pthread_atfork() triple from a
 * constructor, so a plain fork() made by any code in the process runs the
 * coordinated handlers too. Raw pthread_atfork() handlers that other objects
 * register after that constructor are captured and run by forksafe, before
 * every entry (the process's allocator's after every entry), so that fork()
 * and forksafe_fork() see one order; this needs the shared library loaded
 * at start. See docs/semantics.md for the full contract.
 */
#ifndef FORKSAFE_H
#define FORKSAFE_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FORKSAFE_API __attribute__((visibility("default")))
#else
#define FORKSAFE_API
#endif

/* ------------------------------------------------------------------------
 * Version
 *
 * The version of this header (the library's is forksafe_version(), at the
 * end of this file). These three lines are the only place the
 * version is written: the build reads them (library file names, pkg-config
 * and CMake files, man pages). FORKSAFE_VERSION_NUM is one comparable
 * integer, MAJOR * 1000000 + MINOR * 1000 + PATCH (0.2.0 is 2000), usable
 * in #if.
 * ------------------------------------------------------------------------ */
#define FORKSAFE_VERSION_MAJOR 0
#define FORKSAFE_VERSION_MINOR 2
#define FORKSAFE_VERSION_PATCH 0

#define FORKSAFE_VERSION_NUM                                                   \
    (FORKSAFE_VERSION_MAJOR * 1000000 + FORKSAFE_VERSION_MINOR * 1000 +        \
     FORKSAFE_VERSION_PATCH)
#define FORKSAFE__STR(x)  #x
#define FORKSAFE__XSTR(x) FORKSAFE__STR(x)
/* "MAJOR.MINOR.PATCH", e.g. "0.2.0". */
#define FORKSAFE_VERSION_STRING                                                \
    FORKSAFE__XSTR(FORKSAFE_VERSION_MAJOR)                                     \
    "." FORKSAFE__XSTR(FORKSAFE_VERSION_MINOR) "." FORKSAFE__XSTR(             \
        FORKSAFE_VERSION_PATCH)

/* ------------------------------------------------------------------------
 * Ranks
 *
 * Prepare visits ranks in ascending order; the parent and child handlers
 * visit the entries in exactly the reverse order. A lower rank is an outer
 * lock: if code ever takes B while holding A, then rank(A) < rank(B). Use a
 * band and an offset inside it: FORKSAFE_RANK_LIBRARY + 10.
 *
 * The locks that share a rank are acquired as a set that assumes no order
 * among them, so a library whose internal nesting is unknown puts all its
 * locks at one rank. Prepare tries each; a busy one is waited for while the
 * rank's locks taken so far stay held, as long as its holder can be seen
 * to run or sleep (Linux: /proc/self/task/TID/syscall); when the holder
 * waits for one of the held locks (the set taken in another order), or
 * does something else for more than a few milliseconds (2, doubling each
 * time in one fork, up to 32), the rank's locks are released, the busy one
 * is waited for alone and the rank starts again holding it (std::lock
 * style). So neither a cycle nor steady use of the set can stall a fork
 * past its deadline. Then the rank's callback sets run, in registration
 * order, with its locks held.
 * ------------------------------------------------------------------------ */
#define FORKSAFE_RANK_APP 1000u     /* application locks (outermost band) */
#define FORKSAFE_RANK_LIBRARY 2000u /* third-party library locks */
#define FORKSAFE_RANK_LEAF 3000u    /* locks under which nothing is taken */

/* ------------------------------------------------------------------------
 * Registration
 *
 * An entry is one registered lock or callback set. The key is the lock's
 * address, or the ctx pointer of a callback set; the name is copied and
 * shown in diagnostics and reports. An entry disappears when either of two
 * objects is unloaded with dlclose(): the one that registered it (for a
 * callback set: the one holding its callbacks), which reports name as its
 * owner, and the one whose memory holds the key (a static lock, or a ctx in
 * an object's data). The second is found from the key's address, so it
 * holds even when a compiler turns the registration into a tail call
 * (gcc -O2), which makes forksafe see the caller's caller; a lock in heap
 * memory has only the first, so unregister it before freeing it.
 *
 * Locks must be initialised before they are registered, must not be
 * destroyed or re-initialised while registered, and must live in memory
 * that stays mapped until they are unregistered.
 *
 * A process-shared lock (PTHREAD_PROCESS_SHARED, or any spinlock, which
 * does not record it) in a MAP_SHARED mapping is one lock in the parent and
 * the child after fork(), not a copy: forksafe leaves it alone at every
 * fork (checked once, at registration, from /proc/self/maps). The child
 * then sees it as the parent does; a hold of the forking thread stays the
 * parent's. A process-shared lock in private memory is copied, and handled
 * like any other.
 *
 * Calling any registration function from a forksafe callback on the forking
 * thread fails with EDEADLK. From another thread during a fork, it waits
 * until the fork has finished.
 * ------------------------------------------------------------------------ */

/* Register a pthread mutex of any type: normal, errorcheck, recursive,
   adaptive, robust or priority-inheritance. After fork() it is in the same
   state in parent and child as before: free, or held by the forking thread
   with the same recursion depth; its type and robustness are kept.
   Returns 0, EINVAL (m or name NULL), EEXIST, ENOMEM or EDEADLK. */
FORKSAFE_API int forksafe_register_mutex(pthread_mutex_t *m, const char *name,
                                         unsigned rank);

/* pthread_rwlock_t and pthread_spinlock_t exist only with POSIX.1-2001
   features (the default gnu11 mode, _GNU_SOURCE, or _POSIX_C_SOURCE >=
   200112L); under strict -std=c11 these two functions are not declared. */
#if defined(__USE_XOPEN2K) || !defined(__GLIBC__)
/* Register a pthread rwlock. It is taken for writing in prepare, so no
   writer is inside it at the fork; in the child it is rebuilt with its own
   attributes (glibc cannot unlock it there). A write lock held by the
   forking thread is preserved. A read lock held by the forking thread
   cannot be told apart from other readers on glibc: with other threads
   alive, forksafe_fork() waits for it and fails with ETIMEDOUT, saying it
   is held for reading; when the caller is the only thread, its read locks
   are kept as they are (the child inherits exactly its read count).
   Returns 0, EINVAL, EEXIST, ENOMEM or EDEADLK. */
FORKSAFE_API int forksafe_register_rwlock(pthread_rwlock_t *l,
                                          const char *name, unsigned rank);

/* Register a pthread spinlock. Spinlocks record no owner: one held by the
   forking thread is treated like a read lock above.
   Returns 0, EINVAL, EEXIST, ENOMEM or EDEADLK. */
FORKSAFE_API int forksafe_register_spinlock(pthread_spinlock_t *l,
                                            const char *name, unsigned rank);
#endif

/* A callback set, for resources that are not a single pthread lock. */
struct forksafe_ops {
    /* Acquire or quiesce before the fork. deadline is an absolute
       CLOCK_MONOTONIC time, or NULL for none; honour it. Return 0, or a
       positive errno value to abort a forksafe_fork() (under a plain
       fork(), which cannot fail, the failure is recorded and this entry's
       parent and child callbacks are skipped for that fork). */
    int (*prepare)(void *ctx, const struct timespec *deadline);
    /* After the fork, in the parent (also when fork() itself failed). */
    void (*parent)(void *ctx);
    /* After the fork, in the child: the only thread there. */
    void (*child)(void *ctx);
};

/* Register a callback set keyed by ctx. Any callback may be NULL; *ops is
   copied. Returns 0, EINVAL (ctx, name or ops NULL), EEXIST, ENOMEM or
   EDEADLK. */
FORKSAFE_API int forksafe_register_ops(void *ctx, const char *name,
                                       unsigned rank,
                                       const struct forksafe_ops *ops);

/* Remove the entry for key (a lock address or a callback ctx).
   Returns 0, EINVAL (key NULL), ENOENT or EDEADLK. */
FORKSAFE_API int forksafe_unregister(const void *key);

/* What the registry knows about one entry; strings stay valid until the
   entry is unregistered. */
struct forksafe_info {
    const char *name;   /* as registered */
    const char *kind;   /* "mutex", "rwlock", "spinlock" or "ops" */
    unsigned rank;
    unsigned long seq;  /* registration sequence number */
};

/* Look up the entry for key. info may be NULL to test membership only.
   Returns 0, EINVAL (key NULL) or ENOENT. */
FORKSAFE_API int forksafe_lookup(const void *key, struct forksafe_info *info);

/* Adapters (libforksafe-<lib>) record themselves here, by library name
   ("stdio", "openssl", ...), so that reports and forksafe-audit can say
   which libraries are covered. Registering a name twice is harmless.
   Returns 0, EINVAL (name NULL or empty), ENOMEM, EDEADLK (called from a
   forksafe callback on the forking thread) or ENOTSUP (this copy of
   libforksafe was refused by another copy of another interface version in
   the process; see forksafe_last_error()). */
FORKSAFE_API int forksafe_register_adapter(const char *name);

/* 1 if an adapter of that name has been registered, 0 otherwise. */
FORKSAFE_API int forksafe_adapter_installed(const char *name);

/* ------------------------------------------------------------------------
 * The safe fork wrapper
 * ------------------------------------------------------------------------ */

/* Refuse to fork (EBUSY) while any thread other than the caller is alive. */
#define FORKSAFE_FORK_NO_THREADS 0x1u

struct forksafe_fork_opts {
    /* How long prepare may wait for registered locks and callbacks, in
       milliseconds. 0 means the default: FORKSAFE_TIMEOUT_MS from the
       environment when the library was loaded, else 5000. */
    unsigned timeout_ms;
    unsigned flags;        /* FORKSAFE_FORK_* */
    unsigned reserved[6];  /* must be zero: room to grow the ABI */
};

/* Like fork(), but bounded and diagnosable. Runs the coordinated prepare
   with a deadline; if it cannot finish, nothing the framework took stays
   held, no child is created, and -1 is returned with errno:
     ETIMEDOUT  a registered lock or callback did not yield in time, or
                other threads' forks held the registry that long;
     EDEADLK    a registered lock is held by the calling thread in a way the
                platform cannot preserve, or the call was made from a
                forksafe callback;
     ENOTSUP    a registered lock is of a kind the platform layer in use
                cannot hand to the child (the POSIX layer: errorcheck,
                recursive, priority-protect, robust and PI mutexes; see
                docs/platforms.md);
     EAGAIN     the POSIX platform layer could not start the thread with
                which it checks a mutex;
     EBUSY      FORKSAFE_FORK_NO_THREADS and other threads are alive;
     ENOENT, EMFILE, ENFILE  FORKSAFE_FORK_NO_THREADS and the thread count
                could not be read from /proc/self/stat (ENOENT: /proc is
                not mounted);
     EINVAL     unknown flags or non-zero reserved fields;
     any errno  returned by a prepare callback, or set by fork() itself.
   forksafe_last_error() then names the entry, its rank and, where the
   platform can tell, the holder thread (TID and name). opts may be NULL.
   Forks from several threads are serialised; a fork that waits for a lock
   whose holder is itself waiting to fork (or to register) lets that fork
   go first and starts again, within its deadline. A plain fork() runs the
   same prepare with the default timeout, counted from its start (a wait
   for another thread's fork included); what does not yield by then is
   skipped and recorded for forksafe_audit_write(). */
FORKSAFE_API pid_t forksafe_fork(const struct forksafe_fork_opts *opts);

/* A description of the calling thread's last failed forksafe_fork() or
   registry call (register, unregister, lookup, register_adapter: EINVAL,
   EEXIST naming the entry that holds the key, ENOENT, ENOMEM, EDEADLK), or
   "" if there was none. A successful call does not clear it;
   forksafe_fork() clears it when it starts. Thread-local; valid until the
   thread's next forksafe call. */
FORKSAFE_API const char *forksafe_last_error(void);

/* ------------------------------------------------------------------------
 * Diagnostics
 * ------------------------------------------------------------------------ */

/* The number of threads alive in the process now, or -errno: -ENOENT
   without /proc, -EMFILE or -ENFILE with no descriptor free. A thread that
   has begun to exit is not counted, so one that pthread_join() has
   returned for never is, though the kernel lists it for a moment more.
   Reads /proc/self/stat, and with more than one thread listed there, each
   thread's /proc/self/task/TID/stat (one small read per thread). The same
   count decides FORKSAFE_FORK_NO_THREADS and whether a busy lock can be
   only the forking thread's own (no other thread alive). */
FORKSAFE_API int forksafe_thread_count(void);

#define FORKSAFE_AUDIT_JSON 0x1u /* JSON instead of text; see docs/report.md */

/* Write a report of every entry (name, rank, kind, owner object, holder
   thread if held now), every installed adapter and every live thread (TID,
   name) to fd. Returns 0, EINVAL (bad fd or unknown flags), ENOMEM or the
   errno of a failed write. */
FORKSAFE_API int forksafe_audit_write(int fd, unsigned flags);

/* ------------------------------------------------------------------------
 * Spawn: start a child that execs, without fork()
 *
 * Built on posix_spawn() (glibc: clone(CLONE_VM|CLONE_VFORK)), or with
 * FORKSAFE_SPAWN_PIDFD on the same kind of clone() made by forksafe itself:
 * no copy of the parent's page tables, no fork handlers run, no lock is
 * inherited, and the cost does not grow with the parent's size.
 * forksafe_spawn() never sends a signal to any process. See docs/spawn.md.
 * ------------------------------------------------------------------------ */

/* Inherit every descriptor that is not close-on-exec (default: only 0, 1,
   2 and the child_fd numbers named in fd_map stay open in the child; 0, 1
   and 2 only if they are not close-on-exec, the fd_map ones whatever the
   flag of their parent_fd). */
#define FORKSAFE_SPAWN_KEEP_FDS 0x1u
/* Keep the caller's signal mask (default: empty mask in the child). */
#define FORKSAFE_SPAWN_KEEP_SIGMASK 0x2u
/* Keep ignored signals ignored (default: every disposition is reset to
   SIG_DFL; caught signals are reset by exec in any case). */
#define FORKSAFE_SPAWN_KEEP_SIGDEFAULTS 0x4u
/* file is a path, never searched in PATH even when it has no slash. */
#define FORKSAFE_SPAWN_NO_PATH_SEARCH 0x8u
/* Start a new session (setsid) in the child. */
#define FORKSAFE_SPAWN_SETSID 0x10u
/* Put the child in process group pgroup (0: a new group led by it). */
#define FORKSAFE_SPAWN_SETPGROUP 0x20u
/* Store a pidfd for the child (close-on-exec) in *pidfd_out. The kernel
   makes it together with the child (clone(CLONE_PIDFD)), so it names that
   child even if it has already exited and been reaped (SIGCHLD ignored,
   another thread's waitpid(-1)) by the time forksafe_spawn() returns. */
#define FORKSAFE_SPAWN_PIDFD 0x40u

struct forksafe_fd_map {
    int child_fd;  /* descriptor number in the child */
    int parent_fd; /* descriptor in the caller (its close-on-exec flag does
                      not matter: the child's copy never has it) */
};

struct forksafe_spawn_opts {
    unsigned flags;                      /* FORKSAFE_SPAWN_* */
    const char *cwd;                     /* NULL: inherit */
    const struct forksafe_fd_map *fd_map; /* applied as if simultaneously */
    size_t n_fd_map;
    pid_t pgroup;                        /* with FORKSAFE_SPAWN_SETPGROUP */
    int *pidfd_out;                      /* with FORKSAFE_SPAWN_PIDFD */
    void *reserved[4];                   /* must be NULL */
};

/* Start file with argv and envp and store the child's PID in *pid; the
   child is the caller's, to be reaped with waitpid(). opts may be NULL for
   the safe defaults: only descriptors 0, 1, 2 (and fd_map) inherited, empty
   signal mask, every signal disposition SIG_DFL, PATH search when file has
   no slash.

   envp NULL means the caller's current environment. It is copied in the
   calling thread before the child starts, so the child never reads environ
   while another thread's setenv() rewrites it. On glibc before 2.40,
   setenv() of a *new* name may free the old environ array; the copy then
   retries, but the read itself can race with that free (docs/spawn.md).
   PATH comes from the same copy; without PATH, "/bin:/usr/bin" is used.

   Returns 0 or an errno value, and never sets errno. Failures to exec come
   back here, not as exit status 127: ENOENT, EACCES, ENOEXEC, ENOTDIR,
   ENAMETOOLONG, ELOOP, E2BIG, ... PATH search follows execvp(): ENOENT,
   ENOTDIR, ESTALE, ENODEV and ETIMEDOUT move on to the next directory,
   EACCES is remembered, any other error stops the search with that error,
   and a candidate longer than PATH_MAX stops it with ENAMETOOLONG; a PATH
   element of PATH_MAX bytes or more is skipped. If no candidate execs, the
   result is EACCES if one said so, else the last candidate's error (ENOENT
   if there was none). Also:
     EINVAL  pid, file or argv NULL, file empty, unknown flags, reserved
             not NULL, a negative or repeated child_fd, fd_map NULL with
             n_fd_map > 0, SETPGROUP with a negative pgroup, PIDFD with
             pidfd_out NULL, SETSID together with SETPGROUP;
     EBADF   a parent_fd is not open (a negative one included), or a
             child_fd is not below the RLIMIT_NOFILE soft limit (a
             parent_fd above it, opened before the limit was lowered, is
             fine);
     EMFILE, ENFILE  no descriptor free for the pidfd (PIDFD), or for the
             close-on-exec copy made of each parent_fd that is also another
             entry's child_fd (a swap needs them; other maps do not);
     ENOSYS  PIDFD and the kernel has no pidfds (before Linux 5.3) or the
             platform is not supported (nothing is started);
     ENOMEM, EAGAIN  the child could not be created (EAGAIN: RLIMIT_NPROC);
     cwd errors (ENOENT, ENOTDIR, EACCES) when cwd cannot be entered.
   On failure no child is left behind and *pid and *pidfd_out are unchanged.
   A child that was created is reported as started even if it dies at once
   (also of a signal that reaches it before it execs: its status says so).
   Not a cancellation point: a pthread_cancel() of the calling thread takes
   effect at its next cancellation point, after this call has returned. */
FORKSAFE_API int forksafe_spawn(pid_t *pid, const char *file,
                                char *const argv[], char *const envp[],
                                const struct forksafe_spawn_opts *opts);

/* ------------------------------------------------------------------------
 * The fork server (zygote)
 *
 * A small process forked before the program starts threads, holding a
 * clean, thread-free copy of it, connected over a private socketpair.
 * Workers are forked from it on request and run an entry point registered
 * by name. The server creates each worker with clone(CLONE_PARENT), so a
 * worker is a child of the *caller*, not of the server: waitpid(), SIGCHLD,
 * kill() and pidfd_open() work on it exactly as on a fork()ed child.
 *
 * No call waits without bound, whatever state the server is in:
 * forksafe_zygote_spawn() returns within the library's default timeout
 * (the one forksafe_fork() uses: FORKSAFE_TIMEOUT_MS from the environment
 * when the library was loaded, else 5000 ms; plus at most 50 ms when it
 * reaps a worker killed for an earlier request that timed out),
 * forksafe_zygote_stop() within twice that (plus 50 ms for each late
 * worker it kills and 50 ms for the server if it must be killed), and
 * neither forksafe_zygote_pid() nor a plain fork()
 * by another thread ever waits for a request in flight.
 * Workers have the credentials the program had at forksafe_zygote_start()
 * and only descriptors 0, 1, 2 and those passed to them. See
 * docs/zygote.md.
 * ------------------------------------------------------------------------ */

#define FORKSAFE_ZYGOTE_NAME_MAX 64      /* bytes in an entry name */
#define FORKSAFE_ZYGOTE_ARG_MAX 65536    /* bytes of argument per spawn */
#define FORKSAFE_ZYGOTE_FDS_MAX 64       /* descriptors per spawn */

/* An entry point. Runs in the worker, a single-threaded copy of the program
   as it was at forksafe_zygote_start(), with arg[0..len) (8-byte aligned,
   NULL when len is 0) and the passed descriptors, renumbered, in
   fds[0..nfds); besides those it has only descriptors 0, 1 and 2. Its
   return value is the worker's exit status (modulo 256); stdio is flushed
   and _exit() called, so atexit handlers do not run. */
typedef int (*forksafe_zygote_fn)(const void *arg, size_t len, const int *fds,
                                  size_t nfds);

/* Register an entry point under name (copied). Must be called before
   forksafe_zygote_start(). Returns 0, EINVAL (name NULL, empty or longer
   than FORKSAFE_ZYGOTE_NAME_MAX; fn NULL), EEXIST (name taken), EBUSY (the
   server has been started), or ENOMEM (also when the fork server's own
   lock could not be registered with the registry: nothing was added, and
   the next call tries again). */
FORKSAFE_API int forksafe_zygote_register(const char *name,
                                          forksafe_zygote_fn fn);

/* Start the fork server. Call it early in main(), after registering the
   entry points and before any thread is started (a constructor works too).
   stdio is flushed first so that no buffered output is inherited. The
   server keeps descriptors 0, 1, 2 and its channel and closes every other
   descriptor it inherited, close-on-exec or not, so it holds no file,
   pipe or socket of the program's open. Its credentials (uids, gids,
   supplementary groups, capabilities) are the caller's now, and so are
   every worker's. The server dies with the caller: it exits when the
   channel closes and is killed (PR_SET_PDEATHSIG) when the thread that
   started it exits, so keep that thread alive (it normally is main()).
   Works without /proc: the single-thread check is unshare(CLONE_VM).
   It returns once the server has said it is ready (one round trip). A
   server that has died is reaped and replaced.
   Returns 0, EALREADY (running), EBUSY (other threads are alive; one
   joined a moment ago is waited for, up to 10 ms), ENOMEM (the fork
   server's lock could not be registered; retried by the next
   call), the errno of a failed socketpair() or fork() (EMFILE, ENFILE,
   EAGAIN, ENOMEM), or, only where a seccomp filter forbids unshare(), the
   errno of reading /proc/self/stat (ENOENT without /proc); also
     ENOTSUP    the caller's children would be in another PID namespace
                (after unshare(CLONE_NEWPID) or setns()): the server would
                not see its parent and, as the first process there, could
                not create the caller's children. With /proc this is found
                before anything is forked; without it, the server, already
                forked, says so and is reaped (a namespace whose first
                process has exited takes no more processes);
     ECHILD     the server exited before saying it was ready;
     ETIMEDOUT  it did not say so within the timeout, or 1 s if that is
                shorter (then it is killed).
   On every failure no server is left behind. */
FORKSAFE_API int forksafe_zygote_start(void);

/* Ask the server to fork a worker that runs the entry point name with a
   copy of arg[0..len) and of the descriptors fds[0..nfds) (sent with
   SCM_RIGHTS), and exits with its return value. Stores the worker's PID in
   *pid; reap it with waitpid() or forksafe_zygote_wait(). Thread-safe:
   concurrent calls are serialised over the one channel.
   Returns 0 or an errno value (errno itself is not set):
     EINVAL  name or pid NULL, name empty or too long, arg NULL with len > 0,
             fds NULL with nfds > 0, a negative descriptor;
     E2BIG   len > FORKSAFE_ZYGOTE_ARG_MAX or nfds > FORKSAFE_ZYGOTE_FDS_MAX;
     ENOENT  no entry point of that name;
     EBADF   a descriptor is not open;
     ETIMEDOUT  no answer within the timeout (the server is stopped, or
             busy, or requests of other threads queued ahead of this one
             took the time, or a fork by another thread held the fork
             server's lock, waiting for a registered lock ranked after it).
             The request is cancelled: a server that reads
             it late refuses it and makes no worker; if it had already
             forked one when the caller gave up, the late reply names it
             and the next call (or forksafe_zygote_stop()) kills it
             (SIGKILL, through its pidfd; not without pidfds) and reaps it.
             The server is kept; stop it if it must not be waited for
             again;
     EPERM   the caller's real or effective uid or gid is not what it was
             at forksafe_zygote_start() (workers would have the old ones);
     ECHILD  no server: not started, stopped, dead, or the caller is a
             forked child of the process that started it (also one with the
             same PID number in a nested PID namespace), or the program has
             closed the channel's descriptor (a daemon's cleanup of every
             descriptor): a number that no longer names the channel is never
             written to, closed or signalled through, and that server, which
             exits on EOF, is left for the program's waitpid(). No worker
             runs the entry point for a spawn that failed so, even if the
             server died after creating one (it dies of SIGKILL first;
             docs/zygote.md, "Lifetime");
     EMFILE, ENFILE  the server had no descriptor free to receive fds;
     EBUSY   the server found itself with more than one thread (or could
             not tell), and refused;
     EAGAIN, ENOMEM, ENOSYS  the server could not create the worker;
     ENOBUFS, ETOOMANYREFS  the request could not be sent (too much in
             flight);
     EPROTO  the server's reply was malformed.
   Not a cancellation point (nor are forksafe_zygote_start(),
   forksafe_zygote_pid() and forksafe_zygote_stop()): a pthread_cancel() of the caller takes effect
   at its next cancellation point, after the call has returned (within
   the call's bound above). */
FORKSAFE_API int forksafe_zygote_spawn(const char *name, const void *arg,
                                       size_t len, const int *fds, size_t nfds,
                                       pid_t *pid);

/* Wait for a worker: exactly waitpid(pid, status, options), since workers
   are the caller's children. It exists so code written against it keeps
   working on a platform where workers would have to be waited for over the
   channel. Returns the pid, 0 (WNOHANG, still running) or -1 with errno. */
FORKSAFE_API pid_t forksafe_zygote_wait(pid_t pid, int *status, int options);

/* The fork server's PID, or 0 if none is running in this process (0 as
   soon as it has died, before any spawn has noticed). Never waits for a
   request in flight; it may wait for a fork by another thread to finish,
   which holds the fork server's lock from its prepare to its parent
   handler. */
FORKSAFE_API pid_t forksafe_zygote_pid(void);

/* Stop the fork server and reap it; running workers are not affected (they
   are the caller's children), except those forked for requests that timed
   out, which are killed. Waits for a request in flight (bounded by its
   timeout), then gives the server the timeout to exit and kills it
   (SIGKILL) if it has not: a stopped or hung server cannot make this block.
   A killed server that cannot die at once (a cgroup v1 freezer holds the
   SIGKILL until the group is thawed) is given 50 ms, then left dying: a
   later fork-server call (start, spawn, stop) reaps it once it has died.
   Spawns by other threads that start after stop() has begun get ECHILD;
   stop() waits only for the one in flight, however many threads keep
   spawning. Entry points stay registered, and forksafe_zygote_start() may
   be called again. Returns 0 (also for a server that had died and is
   reaped now), ECHILD if no server is running here (never started,
   stopped, found dead and reaped by forksafe_zygote_spawn(), its channel's
   descriptor closed by the program, or the caller is not the process that
   started it), or ETIMEDOUT if a fork by another thread held the fork
   server's lock for the whole timeout (nothing was changed). */
FORKSAFE_API int forksafe_zygote_stop(void);

/* ------------------------------------------------------------------------
 * Version of the library in use
 * ------------------------------------------------------------------------ */

/* The version of the library the program runs against, as
   FORKSAFE_VERSION_NUM. It may be newer than the header the program was
   compiled with (same soname, compatible ABI): a program that needs a
   feature added in a later release checks
   forksafe_version() >= the FORKSAFE_VERSION_NUM of that release.
   Never fails. */
FORKSAFE_API unsigned forksafe_version(void);

/* The same as a constant string, "MAJOR.MINOR.PATCH". Never fails. */
FORKSAFE_API const char *forksafe_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* FORKSAFE_H */
