/* SPDX-License-Identifier: MIT */
/*
 * zygote.c: the fork server. forksafe_zygote_start() forks a small process
 * while the program is still single-threaded; later, from any thread,
 * forksafe_zygote_spawn() asks it to fork a worker that runs an entry point
 * registered by name. Workers therefore start from a clean, thread-free
 * image, and their creation costs what forking that small image costs,
 * whatever the size the program has grown to since.
 *
 * DESIGN.
 *  - Channel: one socketpair(AF_UNIX, SOCK_SEQPACKET), so it has no name
 *    anyone else could connect to; one record per request or reply, the
 *    descriptors in SCM_RIGHTS. The server checks SO_PEERCRED once and the
 *    kernel-stamped SCM_CREDENTIALS of every request (a forked child of the
 *    program inherits the client end; its requests are refused).
 *  - Waiting: workers are created with clone(CLONE_PARENT), so they are the
 *    program's children: waitpid(), SIGCHLD, kill() and pidfds work on them
 *    as on any child, and nothing has to be relayed. The kernel is asked to
 *    store the worker's TID in the libc's thread descriptor, as fork() does
 *    (CLONE_CHILD_SETTID at the address the platform layer names), and
 *    the worker re-registers its robust-mutex list, as glibc's fork child
 *    does. Fork handlers do not run in workers: they ran once, when the
 *    server itself was forked.
 *  - Bounds: every wait of the client ends by one deadline, the library's
 *    default timeout (FORKSAFE_TIMEOUT_MS, else 5 s): the wait for other
 *    threads' requests, the send and the reply. The deadline travels in
 *    the request, and a server that reads a request after it refuses it, so
 *    a request given up on by the client is not carried out later. If the
 *    server had already forked the worker when the client gave up, the late
 *    reply carries the worker's pidfd, and the next round trip kills and
 *    reaps that worker through it. Two locks: zmu guards the client state
 *    and is registered with the core (a plain fork() waits for it, so a
 *    child never inherits it held), but it is held only for a few loads
 *    and stores and two non-blocking system calls, never across a
 *    blocking call, and taken with the call's deadline (a fork by another
 *    thread holds it while it waits for locks ranked after it); zrt
 *    serialises round trips and is not registered, so a fork never waits
 *    for a round trip. A child has no use for zrt: the fork server is its
 *    parent's. stop() takes the server out of the state before it waits
 *    for zrt, so it waits only for the round trip in flight.
 *  - Start: the server's first record (a hello) says it is ready, or why
 *    it cannot be (its parent is in another PID namespace), and carries
 *    its clock, so that deadlines mean the same instant on both ends when
 *    the server is in another time namespace.
 *  - Ownership: the owner is the process whose PID is recorded *and* that
 *    created the channel (SO_PEERCRED, translated into the caller's PID
 *    namespace), and the channel and pidfd numbers are used only while they
 *    still name the files they named at start (fstat), because the program
 *    may close every descriptor it does not know and reuse the numbers.
 *  - Census: both ends check that they are single-threaded with
 *    unshare(CLONE_VM), which needs neither /proc nor a descriptor; the
 *    thread count from /proc is the fallback where unshare() is filtered.
 *  - Lifetime: the server exits on EOF (the program closed the channel or
 *    died) and is killed by PR_SET_PDEATHSIG when the thread that started
 *    it dies; getppid() is checked after setting it, for the case where the
 *    parent died first. It blocks every signal, so signals sent to the
 *    process group neither run the program's handlers in it nor end it
 *    early; workers get the program's mask back. It never runs atexit
 *    handlers. The client holds a pidfd for it, so stopping a server that
 *    does not exit (it was stopped with SIGSTOP) kills exactly it.
 *  - Hygiene: at start the server closes every descriptor but 0, 1, 2 and
 *    its channel. Every request is decoded by the pure
 *    forksafe__zygote_decode() and wiped (explicit_bzero) once the worker
 *    has been forked, so a later worker cannot read an earlier one's
 *    arguments. A bad request gets an error reply and the server goes on
 *    serving.
 *  - Credentials: workers have the server's, which are the program's at
 *    forksafe_zygote_start(). A program whose uids or gids have changed
 *    since gets EPERM rather than workers with its former credentials.
 */
#include "internal.h"
#include "platform/platform.h"
#include "spawn-zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_PARENT
#define CLONE_PARENT 0x00008000
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

struct zygote_entry {
    char name[FORKSAFE_ZYGOTE_NAME_MAX + 1];
    size_t len;
    forksafe_zygote_fn fn;
};

/* Client state, guarded by zmu. zowner is the process that started the
   server: in a fork()ed child of it the state is a stale copy. zpid, zfd
   and zpidfd are cleared together once the server is stopped or found
   dead (and reaped). zuid.. are the credentials at start. */
static pthread_mutex_t zmu = PTHREAD_MUTEX_INITIALIZER;
static int zmu_registered; /* atomic */
static struct zygote_entry *zentries;
static size_t zn_entries, zcap_entries;
static int zfd = -1;
static pid_t zpid;
static int zpidfd = -1;
static pid_t zowner;
static uint64_t zseq;
static uid_t zuid, zeuid;
static gid_t zgid, zegid;

/* Held across a round trip (and by stop), by one thread at a time. */
static pthread_mutex_t zrt = PTHREAD_MUTEX_INITIALIZER;

/* Server state: only ever touched in the server process. The receive
   buffer is one byte larger than the largest valid request, so an
   oversized one shows up as MSG_TRUNC. */
#define SRV_BUF_LEN (FORKSAFE__ZYGOTE_REQ_MAX + 1)
static unsigned char *srv_buf; /* SRV_BUF_LEN bytes, in the server only */
static union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * FORKSAFE_ZYGOTE_FDS_MAX) +
             CMSG_SPACE(sizeof(struct ucred))];
} srv_ctl;
static int srv_fds[FORKSAFE_ZYGOTE_FDS_MAX];
static pid_t *srv_tid_addr;
static void *srv_robust_head;
static size_t srv_robust_len;
static sigset_t srv_worker_mask; /* the program's mask, for the workers */

/* ------------------------------------------------------------ common */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds from now to deadline (ns), rounded up; 0 once it passed. */
static int ms_left(uint64_t deadline)
{
    uint64_t now = mono_ns();
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + 999999u) / 1000000u;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

static uint64_t deadline_after(unsigned ms)
{
    return mono_ns() + (uint64_t)ms * 1000000u;
}

/* 0 if the calling process is single-threaded and shares its memory with
   no other process, EBUSY if it is not, or the errno that kept it from
   telling. unshare(CLONE_VM) changes nothing and succeeds exactly when
   the caller is alone (Linux kernel/fork.c, check_unshare_flags(): "pretend
   it works if there is nothing to unshare"); it needs neither /proc nor a
   free descriptor. Where a seccomp filter forbids unshare(), the thread
   count in /proc/self/stat is used instead. */
static int census(void)
{
    /* A thread joined a moment ago still holds the address space: the
       kernel lets go of it just after pthread_join() returns. Look again
       for up to 10 ms before saying other threads are alive. */
    for (int tries = 0;; tries++) {
        if (unshare(CLONE_VM) == 0)
            return 0;
        if (errno != EINVAL)
            break;
        if (tries == 10)
            return EBUSY;
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    int t = forksafe_thread_count();
    if (t < 0)
        return -t;
    return t == 1 ? 0 : EBUSY;
}

/* ------------------------------------------------------------ server */

/* clone_args as in linux/sched.h (version 0, 64 bytes); declared here
   because that header clashes with glibc's <sched.h>. */
struct zygote_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        stack_size, tls;
};

static long clone_once(uint64_t flags, int *pidfd)
{
    struct zygote_clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.pidfd = (uint64_t)(uintptr_t)pidfd;
    a.child_tid = (uint64_t)(uintptr_t)srv_tid_addr;
    /* clone3() insists on 0 with CLONE_PARENT: the worker inherits the
       server's exit signal, SIGCHLD, as the program's child. */
    a.exit_signal = 0;
    long r = -1;
#ifdef SYS_clone3
    r = syscall(SYS_clone3, &a, sizeof a);
    if (r >= 0 || errno != ENOSYS)
        return r;
#endif
        /* clone3() filtered out (some seccomp profiles): the old clone(),
           whose argument order depends on the architecture; CLONE_PIDFD puts
           the pidfd where the parent TID would go. */
#if defined(__x86_64__)
    r = syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0L, pidfd,
                srv_tid_addr, 0L);
#elif defined(__aarch64__) || defined(__riscv)
    r = syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0L, pidfd, 0L,
                srv_tid_addr);
#else
    errno = ENOSYS;
#endif
    return r;
}

/* Fork a worker as a sibling of the server: a child of the program. With
   a pidfd for it in *pidfd where the kernel can make one (and a descriptor
   is free); without, *pidfd is -1. */
static pid_t worker_clone(int *pidfd)
{
    uint64_t flags = CLONE_PARENT;
    if (srv_tid_addr != NULL)
        flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    *pidfd = -1;
    long r = clone_once(flags | CLONE_PIDFD, pidfd);
    if (r < 0 && (errno == EINVAL || errno == EMFILE || errno == ENFILE)) {
        *pidfd = -1;
        r = clone_once(flags, NULL);
    }
    return (pid_t)r;
}

/* The worker: never returns. It holds nothing of the server but memory.
   gate is a pipe (or -1, -1 when the server had no descriptors for one):
   the worker runs fn only once the server has sent the reply that names
   it, and dies of SIGKILL if the server dies or cannot reply first, so a
   spawn that fails (ECHILD) never has a worker running the program's
   code behind it. */
static _Noreturn void worker_run(int sock, forksafe_zygote_fn fn,
                                 const struct forksafe__zygote_req *req,
                                 const int gate[2])
{
    if (srv_robust_head != NULL)
        syscall(SYS_set_robust_list, srv_robust_head, srv_robust_len);
    close(sock);
    if (gate[0] >= 0) {
        close(gate[1]);
        char go = 0;
        ssize_t n;
        while ((n = read(gate[0], &go, 1)) < 0 && errno == EINTR) {
        }
        close(gate[0]);
        if (n != 1) {
            raise(SIGKILL); /* signals are all blocked, but not this one */
            _exit(127);
        }
    }
    /* Signals pending on the server are not inherited; the worker gets the
       program's mask as it was at forksafe_zygote_start(). */
    sigprocmask(SIG_SETMASK, &srv_worker_mask, NULL);
    int rc =
        fn(req->arg, req->arg_len, req->nfds > 0 ? srv_fds : NULL, req->nfds);
    fflush(NULL);
    _exit(rc & 0xff);
}

static forksafe_zygote_fn entry_find(const char *name, size_t len)
{
    for (size_t i = 0; i < zn_entries; i++)
        if (zentries[i].len == len && memcmp(zentries[i].name, name, len) == 0)
            return zentries[i].fn;
    return NULL;
}

/* Send rep, with the worker's pidfd attached when there is one. Returns 0,
   or -1 when the channel is gone. */
static int send_reply(int sock, const struct forksafe__zygote_reply *rep,
                      int pidfd)
{
    struct iovec iov = {(void *)(uintptr_t)rep, sizeof *rep};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (pidfd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pidfd, sizeof pidfd);
    }
    for (;;) {
        if (sendmsg(sock, &mh, MSG_NOSIGNAL) >= 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (mh.msg_control != NULL &&
            (errno == ETOOMANYREFS || errno == ENOBUFS || errno == ENOMEM)) {
            mh.msg_control = NULL; /* the reply matters more than the fd */
            mh.msg_controllen = 0;
            continue;
        }
        return -1;
    }
}

/* Serve one request: receive, check, fork, wipe, reply. Returns 0 to go
   on, or 1 when the channel is closed and the server should exit. */
static int serve_one(int sock, pid_t parent)
{
    struct iovec iov = {srv_buf, SRV_BUF_LEN};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = srv_ctl.buf;
    mh.msg_controllen = sizeof srv_ctl.buf;
    ssize_t n = recvmsg(sock, &mh, 0);
    if (n < 0)
        return errno == EINTR ? 0 : 1;
    if (n == 0)
        return 1;

    size_t nfds = 0;
    int creds_ok = 0, too_many = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL;
         c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_CREDENTIALS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred uc;
            memcpy(&uc, CMSG_DATA(c), sizeof uc);
            creds_ok =
                uc.pid == parent && uc.uid == getuid() && uc.gid == getgid();
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (nfds < FORKSAFE_ZYGOTE_FDS_MAX) {
                    srv_fds[nfds++] = fd;
                } else {
                    close(fd);
                    too_many = 1;
                }
            }
        }
    }

    struct forksafe__zygote_req req;
    int err = forksafe__zygote_decode(srv_buf, (size_t)n, nfds, &req);
    if (!creds_ok) {
        err = EPERM;
    } else if (too_many || (mh.msg_flags & MSG_TRUNC)) {
        err = E2BIG;
    } else if (mh.msg_flags & MSG_CTRUNC) {
        /* Descriptors were dropped: because there were more than the
           buffer holds (E2BIG), or because this process had no free
           descriptor to put them in, in which case fewer than declared
           arrived (EMFILE). */
        struct forksafe__zygote_hdr h;
        size_t declared = 0;
        if ((size_t)n >= sizeof h) {
            memcpy(&h, srv_buf, sizeof h);
            declared = h.nfds;
        }
        err = declared <= FORKSAFE_ZYGOTE_FDS_MAX && nfds < declared ? EMFILE
                                                                     : E2BIG;
    }
    if (err == 0 && req.deadline != 0 && mono_ns() > req.deadline)
        err = ETIMEDOUT; /* the client has given up on it */
    forksafe_zygote_fn fn = NULL;
    if (err == 0 && (fn = entry_find(req.name, req.name_len)) == NULL)
        err = ENOENT;
    /* A second thread here could hold any lock at the moment of the fork:
       exactly what the server exists to avoid. Refuse rather than fork
       (also when that cannot be told: only exhaustion is named as such). */
    if (err == 0 && (err = census()) != 0 && err != EMFILE && err != ENFILE)
        err = EBUSY;
    pid_t pid = 0;
    int pidfd = -1;
    int gate[2] = {-1, -1};
    if (err == 0) {
        /* No free descriptor for the gate: the worker runs ungated, as
           it would on a server killed before it could reply. */
        if (pipe2(gate, O_CLOEXEC) != 0)
            gate[0] = gate[1] = -1;
        pid = worker_clone(&pidfd);
        if (pid == 0)
            worker_run(sock, fn, &req, gate);
        if (pid < 0)
            err = errno;
        if (gate[0] >= 0)
            close(gate[0]);
    }

    for (size_t i = 0; i < nfds; i++)
        close(srv_fds[i]);
    explicit_bzero(srv_buf, (size_t)n);
    explicit_bzero(&srv_ctl, sizeof srv_ctl);
    explicit_bzero(srv_fds, sizeof srv_fds);

    struct forksafe__zygote_reply rep;
    memset(&rep, 0, sizeof rep);
    rep.magic = FORKSAFE__ZYGOTE_REPLY;
    rep.err = err;
    rep.pid = err == 0 ? pid : 0;
    rep.seq = req.seq;
    explicit_bzero(&req, sizeof req);
    int gone = send_reply(sock, &rep, pidfd);
    if (gate[1] >= 0) {
        /* Let the worker run now that the client has been told of it;
           without a reply it dies when the gate closes. */
        if (!gone && err == 0)
            while (write(gate[1], "", 1) < 0 && errno == EINTR) {
            }
        close(gate[1]);
    }
    if (pidfd >= 0)
        close(pidfd);
    return gone ? 1 : 0;
}

/* Tell the client that the server is ready (err 0) or why it is not, with
   this process's clock for the client to compare with its own. Returns 0,
   or -1 when the channel is gone. */
static int send_hello(int sock, int err)
{
    struct forksafe__zygote_hello h;
    memset(&h, 0, sizeof h);
    h.magic = FORKSAFE__ZYGOTE_HELLO;
    h.err = err;
    h.pid = (int32_t)getpid();
    h.mono = mono_ns();
    while (send(sock, &h, sizeof h, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

static _Noreturn void server_main(int sock, pid_t parent)
{
    /* Die with the parent. If it died before prctl() took effect we have
       already been re-parented, and no signal will ever come. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pid_t pp = getppid();
    if (pp == 0) {
        /* The parent is outside this PID namespace: the program called
           unshare(CLONE_NEWPID) or setns() and this process is the first
           of the new namespace (its init), which the kernel does not let
           make siblings (CLONE_PARENT). start() checks this through /proc
           before forking; without /proc it learns it here. */
        send_hello(sock, ENOTSUP);
        _exit(0);
    }
    if (pp != parent)
        _exit(0);
    /* Keep only the standard descriptors and the channel: a copy of any
       other would keep it open (a pipe would never reach EOF) for as long
       as the server lives. */
    if (sock > 3)
        forksafe__close_span(3, (unsigned)sock - 1);
    forksafe__close_span(sock >= 3 ? (unsigned)sock + 1 : 3, ~0u);
    /* Block every signal: the server shares the program's process group
       and its copied handlers, and neither a terminal's ^C nor a
       supervisor's SIGTERM to the group should run the program's handlers
       here or end the server before its parent. It ends with the channel
       or the parent (SIGKILL cannot be blocked). */
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &srv_worker_mask);
    /* The request buffer exists only here: static, it would add a mapping
       to every program that links libforksafe, and each mapping costs
       every fork() (docs/semantics.md, "Cost"). */
    srv_buf = malloc(SRV_BUF_LEN);
    if (!srv_buf)
        _exit(1);
    struct ucred pc;
    socklen_t pl = sizeof pc;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &pc, &pl) != 0 ||
        pc.pid != parent || pc.uid != getuid())
        _exit(1);
    /* Where the libc keeps this thread's TID, so workers get theirs
       written there as fork() children do. Without it (kernel lacking
       CONFIG_CHECKPOINT_RESTORE, or a platform layer that does not know)
       workers keep the server's TID in the libc's descriptor;
       docs/zygote.md says what that affects. */
    srv_tid_addr = forksafe__platform()->tid_slot();
    if (syscall(SYS_get_robust_list, 0, &srv_robust_head, &srv_robust_len) != 0)
        srv_robust_head = NULL;
    if (send_hello(sock, 0) != 0)
        _exit(0);
    while (serve_one(sock, parent) == 0) {
    }
    _exit(0);
}

/* ------------------------------------------------------------ client */

/* Register zmu with the core, once: on first use of the fork server, so
   programs that never use it see no extra entry. It makes a plain fork()
   by another thread wait until no thread is inside zmu, so the child never
   inherits it held. zmu is a leaf: nothing registered is taken under it.
   Returns 0, or ENOMEM/EDEADLK from the registration, which is retried
   by the next call: the fork server never runs with zmu unregistered. */
static int zmu_ensure(void)
{
    if (__atomic_load_n(&zmu_registered, __ATOMIC_ACQUIRE))
        return 0;
    int r = forksafe_register_mutex(&zmu, "forksafe.zygote",
                                    FORKSAFE_RANK_LEAF + 900);
    if (r == EEXIST) /* another thread won the race */
        r = 0;
    if (r == 0)
        __atomic_store_n(&zmu_registered, 1, __ATOMIC_RELEASE);
    return r;
}

/* m within deadline (ns): 0 or ETIMEDOUT. pthread_mutex_clocklock()
   (glibc 2.30) waits on CLOCK_MONOTONIC; elsewhere the remaining time is
   turned into a CLOCK_REALTIME deadline for pthread_mutex_timedlock().
   zmu is taken this way too: a fork by another thread holds it from its
   prepare to its parent handler, and that fork may wait, with a timeout
   of its own, for a registered lock ranked after zmu. */
static int lock_until(pthread_mutex_t *m, uint64_t deadline)
{
    int r;
#if defined(__GLIBC__) &&                                                      \
    (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
    struct timespec ts = {(time_t)(deadline / 1000000000u),
                          (long)(deadline % 1000000000u)};
    while ((r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts)) == EINTR) {
    }
#else
    uint64_t left = deadline > mono_ns() ? deadline - mono_ns() : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t abs =
        (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + left;
    ts.tv_sec = (time_t)(abs / 1000000000u);
    ts.tv_nsec = (long)(abs % 1000000000u);
    while ((r = pthread_mutex_timedlock(m, &ts)) == EINTR) {
    }
#endif
    return r == 0 ? 0 : ETIMEDOUT;
}

/* Which open file a descriptor number stood for when it was recorded. The
   program may close every descriptor it does not know of (a daemon's
   cleanup) and open its own, which then get the numbers of the channel and
   of the server's pidfd: those numbers are used only while they still name
   the same file. */
struct fd_ident {
    dev_t dev;
    ino_t ino;
};

static void fd_ident_of(int fd, struct fd_ident *id)
{
    struct stat st;
    memset(id, 0, sizeof *id);
    if (fd >= 0 && fstat(fd, &st) == 0) {
        id->dev = st.st_dev;
        id->ino = st.st_ino;
    }
}

/* 1 if fd still names the file id was taken from. Exact for the channel
   (a socket inode of its own). For a pidfd it is exact with pidfs (Linux
   6.9), where each process's pidfd has an inode of its own; before that
   every pidfd shares one anonymous inode, so only a non-pidfd is told
   apart. */
static int fd_is(int fd, const struct fd_ident *id)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == id->dev &&
           st.st_ino == id->ino;
}

static struct fd_ident zfd_id, zpidfd_id;
/* The server's CLOCK_MONOTONIC minus ours (ns), from its hello. */
static int64_t zclock_off;

/* What the calling process can do with the state it holds. zmu held. */
enum zstate {
    Z_NONE,    /* no server */
    Z_FOREIGN, /* a copy of another process's state (a fork()ed child) */
    Z_LOST,    /* ours, but the program closed the channel's number */
    Z_OURS
};

static enum zstate state_locked(void)
{
    if (zfd < 0)
        return Z_NONE;
    if (zowner != getpid())
        return Z_FOREIGN;
    if (!fd_is(zfd, &zfd_id))
        return Z_LOST;
    /* The PID alone does not tell the owner: a descendant that is PID 1 of
       a nested PID namespace has the same number as an owner that is PID 1
       of its own. The channel does: for a socketpair SO_PEERCRED names the
       process that created it, translated into the caller's namespace (0
       where it is not visible). */
    struct ucred uc;
    socklen_t l = sizeof uc;
    int saved = errno;
    int mine = getsockopt(zfd, SOL_SOCKET, SO_PEERCRED, &uc, &l) == 0 &&
               uc.pid == getpid();
    errno = saved;
    return mine ? Z_OURS : Z_FOREIGN;
}

/* A server the client has let go of, to be ended by server_end(). */
struct zserver {
    int fd, pidfd; /* -1 when not to be touched */
    pid_t pid;     /* 0 when not to be waited for by PID */
};

/* Move the state out (zmu held): Z_OURS gives everything; Z_LOST gives
   the pidfd only if it still names its file, and never the channel, whose
   number is the program's now. Without a trusted pidfd a lost server is
   not waited for: it exits at EOF, and the program's own waitpid()
   collects it. */
static struct zserver state_take_locked(enum zstate st)
{
    struct zserver z = {-1, -1, 0};
    if (st == Z_OURS) {
        z.fd = zfd;
        z.pidfd = zpidfd;
        z.pid = zpid;
    } else if (st == Z_LOST && fd_is(zpidfd, &zpidfd_id)) {
        z.pidfd = zpidfd;
        z.pid = zpid;
    }
    zfd = -1;
    zpidfd = -1;
    zpid = 0;
    return z;
}

/* 1 if the server of Z_OURS has exited (zmu held). Never waits. */
static int server_exited_locked(void)
{
    int saved = errno, dead;
    if (fd_is(zpidfd, &zpidfd_id)) {
        struct pollfd p = {zpidfd, POLLIN, 0};
        dead = poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
    } else {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid(P_PID, (id_t)zpid, &si, WEXITED | WNOHANG | WNOWAIT);
        dead = (r == 0 && si.si_pid == zpid) || (r < 0 && errno == ECHILD);
    }
    errno = saved;
    return dead;
}

/* Called single-threaded, in start(), when the state is a copy of another
   process's (a fork()ed child) or when nothing is known of zrt: the
   channel belongs to the parent, and zrt may be a copy taken by a thread
   that does not exist here. The copies are closed only where their
   numbers still name them. zmu came through the fork consistent (it is
   registered). */
static void state_forget(void)
{
    if (fd_is(zfd, &zfd_id))
        close(zfd);
    if (fd_is(zpidfd, &zpidfd_id))
        close(zpidfd);
    zfd = -1;
    zpidfd = -1;
    zpid = 0;
    __atomic_store_n(&zowner, 0, __ATOMIC_RELAXED);
}

/* Servers and late workers killed but not yet dead: a SIGKILL takes
   effect only when the process next runs, which a cgroup v1 freezer can
   put off for ever. Their pidfds wait here, and each later call of the
   fork server reaps those that have died since (dying_reap()); when every
   slot is taken, the pidfd is closed and the dead process is left for the
   program's waitpid(). Slots are swapped atomically: no lock, so a fork()ed
   child that inherits them merely finds servers that are not its children
   (ECHILD) and closes its copies. */
#define ZYGOTE_DYING 8
static int zdying[ZYGOTE_DYING] = {-1, -1, -1, -1, -1, -1, -1, -1};

static void dying_park(int pidfd)
{
    for (int i = 0; i < ZYGOTE_DYING; i++) {
        int none = -1;
        if (__atomic_compare_exchange_n(&zdying[i], &none, pidfd, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            return;
    }
    close(pidfd);
}

/* Reap what has died of the servers parked by dying_park(). Never
   waits. */
static void dying_reap(void)
{
    for (int i = 0; i < ZYGOTE_DYING; i++) {
        if (__atomic_load_n(&zdying[i], __ATOMIC_RELAXED) < 0)
            continue;
        int fd = __atomic_exchange_n(&zdying[i], -1, __ATOMIC_ACQ_REL);
        if (fd < 0)
            continue;
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
        if (r == 0 && si.si_pid == 0)
            dying_park(fd); /* still not dead */
        else
            close(fd); /* reaped, or not ours to reap (ECHILD, EBADF) */
    }
}

/* Kill and reap a worker whose reply came after its request was given up
   on (the caller got ETIMEDOUT), through its pidfd, which names exactly
   it; it is given wait_ms to die (SIGKILL takes microseconds, unless the
   worker is stuck in the kernel), also when signals interrupt the wait,
   and reaped if it did. Without a pidfd nothing is signalled: the worker
   runs to its end. */
static void stale_worker(const struct forksafe__zygote_reply *rep, int wfd,
                         int wait_ms)
{
    if (wfd < 0)
        return;
    if (rep->err == 0 && rep->pid > 0 &&
        syscall(SYS_pidfd_send_signal, wfd, SIGKILL, NULL, 0) == 0) {
        uint64_t deadline = deadline_after((unsigned)wait_ms);
        struct pollfd p = {wfd, POLLIN, 0};
        while (poll(&p, 1, ms_left(deadline)) < 0 && errno == EINTR) {
        }
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid((idtype_t)P_PIDFD, (id_t)wfd, &si, WEXITED | WNOHANG) == 0 &&
            si.si_pid == 0) {
            dying_park(wfd); /* frozen: reaped once it has died */
            return;
        }
    }
    close(wfd);
}

/* Receive one reply record, with a worker's pidfd if one came along (else
 *wfd is -1). Never blocks. Returns what recvmsg() does. */
static ssize_t reply_recv(int fd, struct forksafe__zygote_reply *rep, int *wfd)
{
    struct iovec iov = {rep, sizeof *rep};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 4)];
    } ctl;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl.buf;
    mh.msg_controllen = sizeof ctl.buf;
    *wfd = -1;
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c != NULL;
         c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int x;
            memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof x);
            if (*wfd < 0)
                *wfd = x;
            else
                close(x); /* never sent; never kept */
        }
    }
    return n;
}

/* Read every reply already queued on fd (after the server has exited):
   workers of requests given up on are killed and reaped. */
static void replies_drain(int fd)
{
    for (;;) {
        struct forksafe__zygote_reply rep;
        int wfd;
        ssize_t n = reply_recv(fd, &rep, &wfd);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        if ((size_t)n == sizeof rep && rep.magic == FORKSAFE__ZYGOTE_REPLY)
            stale_worker(&rep, wfd, 50);
        else if (wfd >= 0)
            close(wfd);
    }
}

/* End a server the client has let go of (z, no longer in the shared
   state). The server is told (EOF) and given until wait_ms to exit, then
   killed: through its pidfd, or, without one, by PID while waitpid() still
   shows it as our unreaped child. Then it is reaped and the replies it
   left are read. */
/* How long a killed server is given to die before it is parked. */
#define ZYGOTE_KILL_WAIT_MS 50

static void server_end(struct zserver z, unsigned wait_ms)
{
    /* shutdown(), not just close(): a fork()ed child of ours may hold a
       copy of this end, and the server must see EOF. */
    if (z.fd >= 0)
        shutdown(z.fd, SHUT_WR);
    uint64_t deadline = deadline_after(wait_ms);
    if (z.pidfd >= 0) {
        struct pollfd p = {z.pidfd, POLLIN, 0};
        while (poll(&p, 1, ms_left(deadline)) < 0 && errno == EINTR) {
        }
        if (!(p.revents & POLLIN) &&
            syscall(SYS_pidfd_send_signal, z.pidfd, SIGKILL, NULL, 0) == 0) {
            /* Dead within microseconds, unless it cannot run (a frozen
               cgroup): then it is reaped later, not waited for here. */
            uint64_t kd = deadline_after(ZYGOTE_KILL_WAIT_MS);
            p.revents = 0;
            while (poll(&p, 1, ms_left(kd)) < 0 && errno == EINTR) {
            }
        }
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r;
        while ((r = waitid((idtype_t)P_PIDFD, (id_t)z.pidfd, &si,
                           WEXITED | WNOHANG)) < 0 &&
               errno == EINTR) {
        }
        if (r == 0 && si.si_pid == 0)
            dying_park(z.pidfd);
        else
            close(z.pidfd);
    } else if (z.pid > 0) {
        for (;;) {
            pid_t r = waitpid(z.pid, NULL, WNOHANG);
            if (r == z.pid || (r < 0 && errno != EINTR))
                break; /* reaped, or someone else's waitpid() got it */
            if (r == 0 && ms_left(deadline) == 0) {
                /* Still our unreaped child, so the PID is still its. If
                   it cannot die at once (a frozen cgroup) it is left for
                   the program's waitpid(): by PID alone it cannot be
                   reaped later without risking another child's. */
                kill(z.pid, SIGKILL);
                uint64_t kd = deadline_after(ZYGOTE_KILL_WAIT_MS);
                while (waitpid(z.pid, NULL, WNOHANG) == 0 && ms_left(kd) > 0)
                    usleep(1000);
                break;
            }
            usleep(1000);
        }
    }
    if (z.fd >= 0) {
        replies_drain(z.fd);
        close(z.fd);
    }
}

/* The channel failed during a round trip that must end by deadline: the
   server is exiting (it closes its end only by exiting) or gone. zrt
   held. If zmu cannot be had in time the state stays, and the next call
   finds the broken channel again. */
static void server_lost(uint64_t deadline)
{
    if (lock_until(&zmu, deadline + 50000000u) != 0)
        return;
    enum zstate st = state_locked();
    struct zserver z = {-1, -1, 0};
    if (st == Z_OURS || st == Z_LOST)
        z = state_take_locked(st);
    pthread_mutex_unlock(&zmu);
    int ms = ms_left(deadline);
    server_end(z, ms > 50 ? (unsigned)ms : 50u);
}

/* Contract in forksafe.h. */
FORKSAFE_API int forksafe_zygote_register(const char *name,
                                          forksafe_zygote_fn fn)
{
    if (name == NULL || fn == NULL)
        return EINVAL;
    size_t len = strnlen(name, FORKSAFE_ZYGOTE_NAME_MAX + 1);
    if (len == 0 || len > FORKSAFE_ZYGOTE_NAME_MAX)
        return EINVAL;
    int r = zmu_ensure();
    if (r != 0)
        return r;
    pthread_mutex_lock(&zmu);
    if (state_locked() == Z_OURS) {
        r = EBUSY;
    } else if (entry_find(name, len) != NULL) {
        r = EEXIST;
    } else {
        if (zn_entries == zcap_entries) {
            size_t cap = zcap_entries ? zcap_entries * 2 : 8;
            void *p = realloc(zentries, cap * sizeof *zentries);
            if (p == NULL)
                r = ENOMEM;
            else {
                zentries = p;
                zcap_entries = cap;
            }
        }
        if (r == 0) {
            struct zygote_entry *e = &zentries[zn_entries];
            memcpy(e->name, name, len);
            e->name[len] = '\0';
            e->len = len;
            e->fn = fn;
            zn_entries++;
        }
    }
    pthread_mutex_unlock(&zmu);
    return r;
}

/* 1 if this process's children would be in another PID namespace than
   itself (after unshare(CLONE_NEWPID), or setns() to one): the server
   would not see its parent and, as the first process there, could not
   make siblings. 0 if they are in the same one, or /proc cannot tell (the
   server then reports it in its hello). */
static int pidns_differs(void)
{
    static const char kids[] = "/proc/self/ns/pid_for_children";
    struct stat a, b;
    int saved = errno, r = 0;
    if (stat("/proc/self/ns/pid", &a) == 0 && lstat(kids, &b) == 0) {
        if (stat(kids, &b) == 0)
            r = a.st_dev != b.st_dev || a.st_ino != b.st_ino;
        else /* a namespace that has no first process yet (Linux says
                ENOENT then): just made by unshare(CLONE_NEWPID) */
            r = errno == ENOENT;
    }
    errno = saved;
    return r;
}

/* Wait until deadline for the server's hello on fd. Returns 0 with the
   clock offset in *off, the error the server gave, ECHILD if it exited
   without one, or ETIMEDOUT. */
static int hello_wait(int fd, uint64_t deadline, int64_t *off)
{
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, ms_left(deadline));
        struct forksafe__zygote_hello h;
        ssize_t n = recv(fd, &h, sizeof h, MSG_DONTWAIT);
        uint64_t now = mono_ns();
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (ms_left(deadline) == 0)
                return ETIMEDOUT;
            continue;
        }
        if (n != (ssize_t)sizeof h || h.magic != FORKSAFE__ZYGOTE_HELLO)
            return ECHILD;
        if (h.err != 0)
            return h.err > 0 ? h.err : EPROTO;
        *off = (int64_t)(h.mono - now);
        return 0;
    }
}

static int start_impl(void)
{
    dying_reap();
    pid_t me = getpid();
    if (__atomic_load_n(&zowner, __ATOMIC_RELAXED) == me) {
        pthread_mutex_lock(&zmu);
        int running = state_locked() == Z_OURS && !server_exited_locked();
        pthread_mutex_unlock(&zmu);
        if (running)
            return EALREADY;
    }
    int r = zmu_ensure();
    if (r != 0)
        return r;
    if ((r = census()) != 0)
        return r;
    /* From here on this is the only thread: nothing else can touch the
       state, nothing can hold zrt (a copy of it taken by a thread of a
       parent process is made free again), and the fork below copies no
       lock held elsewhere. */
    pthread_mutex_init(&zrt, NULL);
    enum zstate st = state_locked();
    if (st == Z_OURS || st == Z_LOST) {
        /* A server that died (or whose channel the program closed):
           reap it before starting anew. */
        server_end(state_take_locked(st), forksafe__default_timeout_ms());
    } else if (zowner != 0) {
        state_forget();
    }
    if (pidns_differs())
        return ENOTSUP;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return errno;
    /* Before the fork, so that the very first request already carries
       its sender's credentials. */
    int one = 1;
    if (setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return e;
    }
    fflush(NULL); /* or buffered output would be written again later */
    /* The hello comes once the server has closed its inherited descriptors
       and set itself up: the timeout, but never less than a second, so
       that a tiny FORKSAFE_TIMEOUT_MS meant for forks does not fail it. */
    unsigned hello_ms = forksafe__default_timeout_ms();
    uint64_t deadline = deadline_after(hello_ms > 1000u ? hello_ms : 1000u);
    pid_t p = fork();
    if (p < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return e;
    }
    if (p == 0) {
        close(sv[0]);
        zfd = -1;
        zpid = 0;
        zpidfd = -1;
        zowner = 0;
        server_main(sv[1], me);
    }
    close(sv[1]);
    /* No other thread exists to reap the server before this (only a
       SIGCHLD of SIG_IGN could, if it died at once): the pidfd names it.
       Without pidfds (Linux before 5.3), or with no descriptor free, the
       PID is used. */
    long pidfd = syscall(SYS_pidfd_open, (long)p, 0L);
    int64_t off = 0;
    r = hello_wait(sv[0], deadline, &off);
    if (r != 0) {
        /* Refused (ENOTSUP), exited (ECHILD) or silent (ETIMEDOUT): end
           and reap it, so that nothing is left. */
        struct zserver z = {sv[0], pidfd >= 0 ? (int)pidfd : -1, p};
        server_end(z, r == ETIMEDOUT ? 0u : forksafe__default_timeout_ms());
        return r;
    }
    pthread_mutex_lock(&zmu);
    zfd = sv[0];
    zpid = p;
    zpidfd = pidfd >= 0 ? (int)pidfd : -1;
    fd_ident_of(zfd, &zfd_id);
    fd_ident_of(zpidfd, &zpidfd_id);
    zclock_off = off;
    zuid = getuid();
    zeuid = geteuid();
    zgid = getgid();
    zegid = getegid();
    __atomic_store_n(&zowner, me, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&zmu);
    return 0;
}

/* Contract in forksafe.h. */
FORKSAFE_API int forksafe_zygote_start(void)
{
    int saved = errno, cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    int r = start_impl();
    pthread_setcancelstate(cancel, NULL);
    errno = saved;
    return r;
}

/* Send one request and wait for its reply, until deadline (ns, our clock;
   srv_deadline is the same instant on the server's); zrt held, zmu not.
   fd is the channel, seq the request's number. Returns 0 with *pid set,
   an errno value, or ECHILD when the channel is broken. */
static int request(int fd, uint64_t seq, uint64_t deadline,
                   uint64_t srv_deadline, const char *name, size_t name_len,
                   const void *arg, size_t len, const int *fds, size_t nfds,
                   pid_t *pid)
{
    struct forksafe__zygote_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = FORKSAFE__ZYGOTE_MAGIC;
    h.kind = FORKSAFE__ZYGOTE_SPAWN;
    h.name_len = (uint32_t)name_len;
    h.arg_len = (uint32_t)len;
    h.nfds = (uint32_t)nfds;
    h.seq = seq;
    h.deadline = srv_deadline != 0 ? srv_deadline : 1;
    struct iovec iov[3] = {{&h, sizeof h},
                           {(void *)(uintptr_t)arg, len},
                           {(void *)(uintptr_t)name, name_len}};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * FORKSAFE_ZYGOTE_FDS_MAX)];
    } ctl;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = 3;
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    while (sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int ms = ms_left(deadline);
            if (ms == 0)
                return ETIMEDOUT;
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, ms);
            continue;
        }
        if (errno == EBADF)
            return EBADF; /* one of fds: fd itself is known open */
        if (errno == EMSGSIZE)
            return E2BIG;
        if (errno == ENOBUFS || errno == ENOMEM || errno == ETOOMANYREFS)
            return errno;
        return ECHILD;
    }
    for (;;) {
        /* Wait, then read without blocking; once the deadline has passed
           a reply already queued is still taken (a last look). */
        struct pollfd p = {fd, POLLIN, 0};
        poll(&p, 1, ms_left(deadline));
        struct forksafe__zygote_reply rep;
        int wfd;
        ssize_t n = reply_recv(fd, &rep, &wfd);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (ms_left(deadline) == 0)
                return ETIMEDOUT;
            continue;
        }
        if (n <= 0)
            return ECHILD;
        if ((size_t)n != sizeof rep || rep.magic != FORKSAFE__ZYGOTE_REPLY) {
            if (wfd >= 0)
                close(wfd);
            return EPROTO;
        }
        if (rep.seq != seq) {
            /* The late reply to a request given up on. */
            int ms = ms_left(deadline);
            stale_worker(&rep, wfd, ms > 50 ? ms : 50);
            continue;
        }
        if (wfd >= 0)
            close(wfd);
        if (rep.err != 0)
            return rep.err > 0 ? rep.err : EPROTO;
        if (rep.pid <= 0)
            return EPROTO;
        *pid = rep.pid;
        return 0;
    }
}

static int spawn_impl(const char *name, const void *arg, size_t len,
                      const int *fds, size_t nfds, pid_t *pid)
{
    if (name == NULL || pid == NULL || (arg == NULL && len > 0) ||
        (fds == NULL && nfds > 0))
        return EINVAL;
    size_t name_len = strnlen(name, FORKSAFE_ZYGOTE_NAME_MAX + 1);
    if (name_len == 0 || name_len > FORKSAFE_ZYGOTE_NAME_MAX)
        return EINVAL;
    if (len > FORKSAFE_ZYGOTE_ARG_MAX || nfds > FORKSAFE_ZYGOTE_FDS_MAX)
        return E2BIG;
    for (size_t i = 0; i < nfds; i++)
        if (fds[i] < 0)
            return EINVAL;
    /* In a fork()ed child of the owner the channel is the parent's. */
    if (__atomic_load_n(&zowner, __ATOMIC_RELAXED) != getpid())
        return ECHILD;
    int saved = errno;
    dying_reap();
    uint64_t deadline = deadline_after(forksafe__default_timeout_ms());
    uid_t uid = getuid(), euid = geteuid();
    gid_t gid = getgid(), egid = getegid();
    int r = lock_until(&zmu, deadline);
    if (r == 0) {
        r = zfd < 0 ? ECHILD : 0;
        if (r == 0 &&
            (uid != zuid || euid != zeuid || gid != zgid || egid != zegid))
            r = EPERM; /* workers would have the credentials of the start */
        pthread_mutex_unlock(&zmu);
    }
    if (r == 0 && (r = lock_until(&zrt, deadline)) == 0) {
        /* zrt held: no other round trip, and stop() does not close the
           channel until it has zrt. */
        int fd = -1;
        uint64_t seq = 0;
        int64_t off = 0;
        struct zserver lost = {-1, -1, 0};
        r = lock_until(&zmu, deadline);
        if (r == 0) {
            enum zstate st = state_locked();
            if (st == Z_OURS) {
                fd = zfd;
                seq = ++zseq;
                off = zclock_off;
            } else {
                if (st == Z_LOST)
                    lost = state_take_locked(st);
                r = ECHILD;
            }
            pthread_mutex_unlock(&zmu);
        }
        if (fd >= 0) {
            r = request(fd, seq, deadline, deadline + (uint64_t)off, name,
                        name_len, arg, len, fds, nfds, pid);
            if (r == ECHILD)
                server_lost(deadline);
        } else {
            server_end(lost, 50);
        }
        pthread_mutex_unlock(&zrt);
    }
    errno = saved;
    return r;
}

/* Contract in forksafe.h. Not a cancellation point, although poll(),
   sendmsg() and recvmsg() are: a thread cancelled in the middle of a
   round trip would leave zrt held for ever (every later spawn would time
   out and stop() would block) and a worker it asked for unreported. The
   call is bounded by the timeout, so a cancellation waits at most that
   long, and takes effect at the caller's next cancellation point. */
FORKSAFE_API int forksafe_zygote_spawn(const char *name, const void *arg,
                                       size_t len, const int *fds, size_t nfds,
                                       pid_t *pid)
{
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    int r = spawn_impl(name, arg, len, fds, nfds, pid);
    pthread_setcancelstate(cancel, NULL);
    return r;
}

/* Contract in forksafe.h. */
FORKSAFE_API pid_t forksafe_zygote_wait(pid_t pid, int *status, int options)
{
    return waitpid(pid, status, options);
}

/* Contract in forksafe.h. */
FORKSAFE_API pid_t forksafe_zygote_pid(void)
{
    if (__atomic_load_n(&zowner, __ATOMIC_RELAXED) != getpid())
        return 0;
    /* poll() and waitid() are cancellation points, and zmu is held
       around them: cancelled there, the thread would leave the lock every
       fork() waits for held for ever. */
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    pthread_mutex_lock(&zmu);
    pid_t p = state_locked() == Z_OURS && !server_exited_locked() ? zpid : 0;
    pthread_mutex_unlock(&zmu);
    pthread_setcancelstate(cancel, NULL);
    return p;
}

static int stop_impl(void)
{
    if (__atomic_load_n(&zowner, __ATOMIC_RELAXED) != getpid())
        return ECHILD;
    int saved = errno;
    dying_reap();
    unsigned t = forksafe__default_timeout_ms();
    /* The state is taken out first, so that spawns from now on see no
       server; only round trips already in flight hold zrt for long, and
       each of those ends by its own deadline, which is before ours. */
    int r = lock_until(&zmu, deadline_after(t));
    if (r == 0) {
        enum zstate st = state_locked();
        struct zserver z = {-1, -1, 0};
        if (st == Z_OURS || st == Z_LOST)
            z = state_take_locked(st);
        pthread_mutex_unlock(&zmu);
        r = st == Z_OURS ? 0 : ECHILD; /* never started, stopped, lost */
        if (st == Z_OURS || st == Z_LOST) {
            pthread_mutex_lock(&zrt);
            server_end(z, st == Z_OURS ? t : 50u);
            pthread_mutex_unlock(&zrt);
        }
    }
    errno = saved;
    return r;
}

/* Contract in forksafe.h. Not a cancellation point, for the reasons
   forksafe_zygote_spawn() is not: cancelled while it waits for the
   server, it would leave zrt held and the server unreaped. */
FORKSAFE_API int forksafe_zygote_stop(void)
{
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    int r = stop_impl();
    pthread_setcancelstate(cancel, NULL);
    return r;
}

/* Contract in spawn-zygote.h. */
int forksafe__zygote_fd(void)
{
    pthread_mutex_lock(&zmu);
    int fd = state_locked() == Z_OURS ? zfd : -1;
    pthread_mutex_unlock(&zmu);
    return fd;
}
