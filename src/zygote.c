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
 *    store the worker's TID in glibc's thread descriptor, as fork() does
 *    (CLONE_CHILD_SETTID at the address PR_GET_TID_ADDRESS reports), and
 *    the worker re-registers its robust-mutex list, as glibc's fork child
 *    does. Fork handlers do not run in workers: they ran once, when the
 *    server itself was forked.
 *  - Lifetime: the server exits on EOF (the program closed the channel or
 *    died) and is killed by PR_SET_PDEATHSIG when the thread that started
 *    it dies; getppid() is checked after setting it, for the case where the
 *    parent died first. It blocks every signal, so signals sent to the
 *    process group neither run the program's handlers in it nor end it
 *    early; workers get the program's mask back. It never runs atexit
 *    handlers.
 *  - Hygiene: every request is decoded by the pure forksafe__zygote_decode()
 *    and wiped (explicit_bzero) once the worker has been forked, so a later
 *    worker cannot read an earlier one's arguments. A bad request gets an
 *    error reply and the server goes on serving.
 */
#include "forksafe.h"
#include "platform/platform.h"
#include "spawn-zygote.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PR_GET_TID_ADDRESS
#define PR_GET_TID_ADDRESS 40
#endif
#ifndef CLONE_PARENT
#define CLONE_PARENT 0x00008000
#endif

struct zygote_entry {
    char name[FORKSAFE_ZYGOTE_NAME_MAX + 1];
    size_t len;
    forksafe_zygote_fn fn;
};

/* Client state, guarded by zmu. zowner is the process that started the
   server: in a fork()ed child of it the state is a stale copy. zpid
   and zfd are cleared together once the server is stopped or found dead
   (and reaped). */
static pthread_mutex_t zmu = PTHREAD_MUTEX_INITIALIZER;
static struct zygote_entry *zentries;
static size_t zn_entries, zcap_entries;
static int zfd = -1;
static pid_t zpid;
static pid_t zowner;
static uint64_t zseq;

/* Server state: only ever touched in the server process. The receive
   buffer is one byte larger than the largest valid request, so an
   oversized one shows up as MSG_TRUNC. */
static _Alignas(16) unsigned char srv_buf[FORKSAFE__ZYGOTE_REQ_MAX + 1];
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

/* ------------------------------------------------------------------ server */

/* clone_args as in linux/sched.h (version 0, 64 bytes); declared here
   because that header clashes with glibc's <sched.h>. */
struct zygote_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        stack_size, tls;
};

/* Fork a worker as a sibling of the server: a child of the program. */
static pid_t worker_clone(void)
{
    uint64_t flags = CLONE_PARENT;
    if (srv_tid_addr != NULL)
        flags |= CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
    struct zygote_clone_args a;
    memset(&a, 0, sizeof a);
    a.flags = flags;
    a.child_tid = (uint64_t)(uintptr_t)srv_tid_addr;
    /* clone3() insists on 0 with CLONE_PARENT: the worker inherits the
       server's exit signal, SIGCHLD, as the program's child. */
    a.exit_signal = 0;
    long r = -1;
#ifdef SYS_clone3
    r = syscall(SYS_clone3, &a, sizeof a);
    if (r >= 0 || errno != ENOSYS)
        return (pid_t)r;
#endif
    /* clone3() filtered out (some seccomp profiles): the old clone(),
       whose argument order depends on the architecture. */
#if defined(__x86_64__)
    r = syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0L, 0L,
                srv_tid_addr, 0L);
#elif defined(__aarch64__) || defined(__riscv)
    r = syscall(SYS_clone, (unsigned long)(flags | SIGCHLD), 0L, 0L, 0L,
                srv_tid_addr);
#else
    errno = ENOSYS;
#endif
    return (pid_t)r;
}

/* The worker: never returns. It holds nothing of the server but memory. */
static _Noreturn void worker_run(int sock, forksafe_zygote_fn fn,
                                 const struct forksafe__zygote_req *req)
{
    if (srv_robust_head != NULL)
        syscall(SYS_set_robust_list, srv_robust_head, srv_robust_len);
    close(sock);
    /* Signals pending on the server are not inherited; the worker gets the
       program's mask as it was at forksafe_zygote_start(). */
    sigprocmask(SIG_SETMASK, &srv_worker_mask, NULL);
    int rc = fn(req->arg, req->arg_len, req->nfds > 0 ? srv_fds : NULL,
                req->nfds);
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

/* Serve one request: receive, check, fork, wipe, reply. Returns 0 to go
   on, or 1 when the channel is closed and the server should exit. */
static int serve_one(int sock, pid_t parent)
{
    struct iovec iov = {srv_buf, sizeof srv_buf};
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
            creds_ok = uc.pid == parent && uc.uid == getuid();
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
    if (!creds_ok)
        err = EPERM;
    else if (too_many || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
        err = E2BIG;
    forksafe_zygote_fn fn = NULL;
    if (err == 0 && (fn = entry_find(req.name, req.name_len)) == NULL)
        err = ENOENT;
    /* A second thread here could hold any lock at the moment of the fork:
       exactly what the server exists to avoid. Refuse rather than fork. */
    if (err == 0 && forksafe_thread_count() != 1)
        err = EBUSY;
    pid_t pid = 0;
    if (err == 0) {
        pid = worker_clone();
        if (pid == 0)
            worker_run(sock, fn, &req);
        if (pid < 0)
            err = errno;
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
    while (send(sock, &rep, sizeof rep, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return 1;
    return 0;
}

static _Noreturn void server_main(int sock, pid_t parent)
{
    /* Die with the parent. If it died before prctl() took effect we have
       already been re-parented, and no signal will ever come. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    /* Block every signal: the server shares the program's process group
       and its copied handlers, and neither a terminal's ^C nor a
       supervisor's SIGTERM to the group should run the program's handlers
       here or end the server before its parent. It ends with the channel
       or the parent (SIGKILL cannot be blocked). */
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &srv_worker_mask);
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
    if (syscall(SYS_get_robust_list, 0, &srv_robust_head, &srv_robust_len) !=
        0)
        srv_robust_head = NULL;
    while (serve_one(sock, parent) == 0) {
    }
    _exit(0);
}

/* ------------------------------------------------------------------ client */

/* Called single-threaded in a fork()ed child of the owner: the state is a
   copy of the parent's, and the channel belongs to the parent. */
static void state_forget(void)
{
    pthread_mutex_init(&zmu, NULL);
    if (zfd >= 0)
        close(zfd);
    zfd = -1;
    zpid = 0;
    zowner = 0;
}

/* Mark the server dead after the channel failed, and reap it; zmu held.
   A broken channel means the server is exiting (it closes its end only by
   exiting), so the wait is short; it is bounded all the same, and a server
   that somehow lingers is killed rather than left as a zombie. */
static void server_lost(void)
{
    close(zfd);
    zfd = -1;
    for (int i = 0; zpid > 0; i++) {
        pid_t r = waitpid(zpid, NULL, i < 1000 ? WNOHANG : 0);
        if (r == zpid || (r < 0 && errno != EINTR))
            zpid = 0; /* reaped, or someone else's waitpid() got it */
        else if (r == 0 && i == 999)
            kill(zpid, SIGKILL);
        else if (r == 0)
            usleep(1000);
    }
}

/* zmu is held across a request's round trip. Registering it with the core
   (once, on first use of the fork server, so programs that never use it
   see no extra entry) makes a plain fork() by another thread wait for an
   in-flight request, so the child never inherits it locked. Nothing that
   is registered is taken while it is held: it is a leaf. */
static pthread_once_t zmu_once = PTHREAD_ONCE_INIT;
static void zmu_register(void)
{
    forksafe_register_mutex(&zmu, "forksafe.zygote", FORKSAFE_RANK_LEAF + 900);
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
    pthread_once(&zmu_once, zmu_register);
    pthread_mutex_lock(&zmu);
    int r = 0;
    if (zfd >= 0 && zowner == getpid()) {
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
            struct zygote_entry *e = &zentries[zn_entries++];
            memcpy(e->name, name, len);
            e->name[len] = '\0';
            e->len = len;
            e->fn = fn;
        }
    }
    pthread_mutex_unlock(&zmu);
    return r;
}

static int start_impl(void)
{
    pid_t me = getpid();
    pthread_once(&zmu_once, zmu_register);
    if (__atomic_load_n(&zowner, __ATOMIC_RELAXED) == me) {
        pthread_mutex_lock(&zmu);
        int running = zfd >= 0;
        pthread_mutex_unlock(&zmu);
        if (running)
            return EALREADY;
    }
    int t = forksafe_thread_count();
    if (t < 0)
        return -t;
    if (t != 1)
        return EBUSY;
    /* From here on this is the only thread: nothing else can touch the
       state, and the fork below copies no lock held elsewhere. */
    if (zowner != 0 && zowner != me)
        state_forget();
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
        zowner = 0;
        server_main(sv[1], me);
    }
    close(sv[1]);
    pthread_mutex_lock(&zmu);
    zfd = sv[0];
    zpid = p;
    zowner = me;
    pthread_mutex_unlock(&zmu);
    return 0;
}

/* Contract in forksafe.h. */
FORKSAFE_API int forksafe_zygote_start(void)
{
    int saved = errno;
    int r = start_impl();
    errno = saved;
    return r;
}

/* Send one request and wait for its reply; zmu held. */
static int request(const char *name, size_t name_len, const void *arg,
                   size_t len, const int *fds, size_t nfds, pid_t *pid)
{
    struct forksafe__zygote_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = FORKSAFE__ZYGOTE_MAGIC;
    h.kind = FORKSAFE__ZYGOTE_SPAWN;
    h.name_len = (uint32_t)name_len;
    h.arg_len = (uint32_t)len;
    h.nfds = (uint32_t)nfds;
    h.seq = ++zseq;
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
    while (sendmsg(zfd, &mh, MSG_NOSIGNAL) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EBADF)
            return EBADF; /* one of fds: zfd itself is known open */
        if (errno == EMSGSIZE || errno == ENOBUFS || errno == ETOOMANYREFS)
            return errno == EMSGSIZE ? E2BIG : errno;
        server_lost();
        return ECHILD;
    }
    for (;;) {
        struct forksafe__zygote_reply rep;
        ssize_t n = recv(zfd, &rep, sizeof rep, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            server_lost();
            return ECHILD;
        }
        if ((size_t)n != sizeof rep || rep.magic != FORKSAFE__ZYGOTE_REPLY)
            return EPROTO;
        if (rep.seq != h.seq)
            continue; /* a reply to a request someone else sent */
        if (rep.err != 0)
            return rep.err > 0 ? rep.err : EPROTO;
        if (rep.pid <= 0)
            return EPROTO;
        *pid = rep.pid;
        return 0;
    }
}

/* Contract in forksafe.h. */
FORKSAFE_API int forksafe_zygote_spawn(const char *name, const void *arg,
                                       size_t len, const int *fds, size_t nfds,
                                       pid_t *pid)
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
    /* In a fork()ed child of the owner the channel is the parent's. Checked
       before zmu, which such a child may have inherited locked. */
    if (__atomic_load_n(&zowner, __ATOMIC_RELAXED) != getpid())
        return ECHILD;
    int saved = errno;
    pthread_mutex_lock(&zmu);
    int r = zfd >= 0 ? request(name, name_len, arg, len, fds, nfds, pid)
                     : ECHILD;
    pthread_mutex_unlock(&zmu);
    errno = saved;
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
    pthread_mutex_lock(&zmu);
    pid_t p = zfd >= 0 ? zpid : 0;
    pthread_mutex_unlock(&zmu);
    return p;
}

/* Contract in forksafe.h. */
FORKSAFE_API int forksafe_zygote_stop(void)
{
    if (__atomic_load_n(&zowner, __ATOMIC_RELAXED) != getpid())
        return ECHILD;
    int saved = errno;
    pthread_mutex_lock(&zmu);
    int r = 0;
    if (zpid <= 0) {
        r = ECHILD;
    } else {
        /* shutdown() rather than close() alone: a fork()ed child of ours
           may hold a copy of this end, and the server must see EOF. */
        if (zfd >= 0) {
            shutdown(zfd, SHUT_RDWR);
            close(zfd);
        }
        zfd = -1;
        while (waitpid(zpid, NULL, 0) < 0 && errno == EINTR) {
        }
        zpid = 0;
    }
    pthread_mutex_unlock(&zmu);
    errno = saved;
    return r;
}

/* Contract in spawn-zygote.h. */
int forksafe__zygote_fd(void)
{
    pthread_mutex_lock(&zmu);
    int fd = zowner == getpid() ? zfd : -1;
    pthread_mutex_unlock(&zmu);
    return fd;
}
