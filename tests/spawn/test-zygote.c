/* SPDX-License-Identifier: MIT */
/*
 * test-zygote.c: the fork server, for real. The server is started in
 * main() before cmocka runs (and before any thread exists); workers are the
 * test's own children, checked with fs_wait() and a deadline. Malformed
 * requests are written by hand onto the channel. The server's thread
 * census (unshare(CLONE_VM), then forksafe_thread_count()) is wrapped
 * (-Wl,--wrap) so a test can make the server believe it has a second
 * thread. Tests that change credentials, resource limits or mounts run in
 * a forked child with its own server.
 */
#include "common.h"
#include "fs-seccomp.h"

#include <forksafe.h>

#include "spawn-zygote.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t test_pid;

/* ------------------------------------------------- fault injection */

int __real_forksafe_thread_count(void);
int __wrap_forksafe_thread_count(void);
int __real_unshare(int flags);
int __wrap_unshare(int flags);
static int fake_server_threads;

/* In the server (any process but the test's), report a second thread when
   fake_server_threads was set before the server was started. */
int __wrap_forksafe_thread_count(void)
{
    if (fake_server_threads && getpid() != test_pid)
        return 2;
    return __real_forksafe_thread_count();
}

/* unshare(CLONE_VM) fails with EINVAL exactly when the caller is not
   alone in its memory: the same lie, for the census that needs no /proc. */
int __wrap_unshare(int flags)
{
    if (fake_server_threads && getpid() != test_pid && (flags & CLONE_VM)) {
        errno = EINVAL;
        return -1;
    }
    return __real_unshare(flags);
}

/* ------------------------------------------------- entry points */

static int e_empty(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    return 0;
}

/* Exit with the status given in the single argument byte. */
static int e_exit(const void *a, size_t l, const int *f, size_t n)
{
    (void)f, (void)n;
    return l == 1 ? *(const unsigned char *)a : 99;
}

/* Die of the signal given in the single argument byte. */
static int e_raise(const void *a, size_t l, const int *f, size_t n)
{
    (void)f, (void)n;
    if (l != 1)
        return 99;
    int sig = *(const unsigned char *)a;
    if (sig == SIGABRT)
        abort();
    raise(sig);
    return 98;
}

/* Write the argument back, byte for byte, into the one descriptor. */
static int e_echo(const void *a, size_t l, const int *f, size_t n)
{
    if (n != 1)
        return 10;
    if (l > 0 && (uintptr_t)a % 8 != 0)
        return 11;
    if (l == 0 && a != NULL)
        return 12;
    const char *p = a;
    while (l > 0) {
        ssize_t w = write(f[0], p, l);
        if (w <= 0)
            return 13;
        p += w;
        l -= (size_t)w;
    }
    return 0;
}

/* Write one letter into each descriptor, in order; arg[0] is how many. */
static int e_fds(const void *a, size_t l, const int *f, size_t n)
{
    if (l != 1 || n != *(const unsigned char *)a)
        return 10;
    for (size_t i = 0; i < n; i++) {
        char c = (char)('A' + i % 26);
        if (write(f[i], &c, 1) != 1)
            return 11;
    }
    return 0;
}

/* A proper child of the test process: its parent is the test (arg), glibc
   knows its TID, and errorcheck mutexes work in it. */
static int e_family(const void *a, size_t l, const int *f, size_t n)
{
    (void)f, (void)n;
    pid_t want;
    if (l != sizeof want)
        return 10;
    memcpy(&want, a, sizeof want);
    if (getppid() != want)
        return 11;
    pthread_mutexattr_t at;
    pthread_mutex_t m;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&m, &at);
    if (pthread_mutex_lock(&m) != 0 || pthread_mutex_lock(&m) != EDEADLK ||
        pthread_mutex_unlock(&m) != 0)
        return 12;
    return 0;
}

/* The worker's signal mask is the program's at start (empty), not the
   server's (everything blocked). */
static int e_mask(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    for (int s = 1; s < 32; s++)
        if (sigismember(&cur, s))
            return 10 + s;
    return 0;
}

/* Block until fds[0] reaches EOF. */
static int e_block(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l;
    if (n != 1)
        return 10;
    char c;
    while (read(f[0], &c, 1) > 0) {
    }
    return 0;
}

/* Open descriptors in this worker, not counting the one that counts. */
static int count_own_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

/* Exit with the number of descriptors the worker has open. */
static int e_fdcount(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l, (void)f, (void)n;
    return count_own_fds();
}

/* Write "ruid euid rgid egid" into the one descriptor. */
static int e_ids(const void *a, size_t l, const int *f, size_t n)
{
    (void)a, (void)l;
    if (n != 1)
        return 10;
    return dprintf(f[0], "%d %d %d %d", (int)getuid(), (int)geteuid(),
                   (int)getgid(), (int)getegid()) > 0
               ? 0
               : 11;
}

/* Whether m[0..len) holds pat[i] ^ flip for i in 0..32. Reads memory
   that no object owns (sanitizer redzones included), so it is exempt from
   AddressSanitizer. */
__attribute__((no_sanitize_address)) static int
mem_has(const unsigned char *m, size_t len, const unsigned char *pat,
        unsigned char flip)
{
    for (size_t i = 0; i + 32 <= len; i++) {
        size_t j = 0;
        while (j < 32 && m[i + j] == (unsigned char)(pat[j] ^ flip))
            j++;
        if (j == 32)
            return 1;
    }
    return 0;
}

/* Search this worker's writable memory for a 32-byte pattern: arg[0] is
   the mode, arg[1..33) the pattern. Mode 0 looks for the bytes' complement
   (so the pattern itself never exists in this process), mode 1 for the
   bytes as given (a control: they are in this worker's own request, so the
   search must find them). Exits 0 if found, 1 if not. */
static int e_scan(const void *a, size_t l, const int *f, size_t n)
{
    (void)f, (void)n;
    if (l != 33)
        return 10;
    const unsigned char *arg = a;
    unsigned char flip = arg[0] == 0 ? 0xff : 0x00;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (maps == NULL)
        return 11;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, maps) != NULL) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
            continue;
        /* Skip the huge sanitizer reservations; the server's buffers live
           in the program's data segment, the heap or the stack. */
        if (perms[0] != 'r' || perms[1] != 'w' || hi - lo > (64ul << 20) ||
            strstr(line, "[vvar") != NULL)
            continue;
        found = mem_has((const unsigned char *)lo, hi - lo, arg + 1, flip);
    }
    fclose(maps);
    return found ? 0 : 1;
}

/* ------------------------------------------------- helpers */

static void spawn_expect(const char *name, const void *arg, size_t len,
                         const int *fds, size_t nfds, enum fs_wait_result how,
                         int code)
{
    pid_t pid = -1;
    assert_int_equal(forksafe_zygote_spawn(name, arg, len, fds, nfds, &pid), 0);
    assert_true(pid > 0);
    int got = -1;
    assert_int_equal(fs_wait(pid, 5000, &got), how);
    assert_int_equal(got, code);
}

static size_t read_all(int fd, void *buf, size_t cap)
{
    size_t n = 0;
    uint64_t end = fs_now_ms() + 5000;
    while (n < cap && fs_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, (char *)buf + n, cap - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

/* Start the server, retrying briefly: a thread that was just joined can
   still be listed in /proc/self/task for a moment. */
static int start_retry(void)
{
    int r = EBUSY;
    for (int i = 0; i < 200 && r == EBUSY; i++) {
        r = forksafe_zygote_start();
        if (r == EBUSY)
            usleep(5000);
    }
    return r;
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    int n = 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Descriptors an idle server holds: 0, 1, 2 (those the test has) and the
   channel. Set in main(). */
static int idle_fds;

/* The server's descriptor count once it is idle: it closes a worker's
   pidfd just after the reply that carries it, so right after a spawn it
   may still hold one more for a moment. Returns the count that stayed. */
static int server_fds(pid_t z)
{
    int n = count_fds(z);
    for (int i = 0; i < 500 && n != idle_fds; i++) {
        usleep(2000);
        n = count_fds(z);
    }
    return n;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* 1 once pid is gone or a zombie, within timeout_ms; else 0. */
static int proc_dead(pid_t pid, unsigned timeout_ms)
{
    uint64_t end = fs_now_ms() + timeout_ms;
    do {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            return 1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        if (rp == NULL || rp[1] == '\0' || rp[2] == 'Z' || rp[2] == 'X')
            return 1;
        usleep(2000);
    } while (fs_now_ms() < end);
    return 0;
}

/* Send one hand-made record with nfds descriptors; return the reply's
   error (or -1 if there was no well-formed reply). */
static int raw_request(int sock, const void *msg, size_t len, const int *fds,
                       size_t nfds)
{
    struct iovec iov = {(void *)(uintptr_t)msg, len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 100)];
    } ctl;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    memset(&ctl, 0, sizeof ctl);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (nfds > 0) {
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)len)
        return -1;
    struct forksafe__zygote_reply rep;
    struct pollfd p = {sock, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1)
        return -1;
    if (recv(sock, &rep, sizeof rep, 0) != (ssize_t)sizeof rep ||
        rep.magic != FORKSAFE__ZYGOTE_REPLY)
        return -1;
    return rep.err;
}

/* A request record in buf: header, arg, name. Returns its length. */
static size_t make_req(void *buf, const char *name, size_t name_len,
                       size_t arg_len, uint32_t nfds)
{
    struct forksafe__zygote_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = FORKSAFE__ZYGOTE_MAGIC;
    h.kind = FORKSAFE__ZYGOTE_SPAWN;
    h.name_len = (uint32_t)name_len;
    h.arg_len = (uint32_t)arg_len;
    h.nfds = nfds;
    h.seq = 424242; /* deadline 0: none */
    memcpy(buf, &h, sizeof h);
    memset((char *)buf + sizeof h, 'x', arg_len);
    memcpy((char *)buf + sizeof h + arg_len, name, name_len);
    return sizeof h + arg_len + name_len;
}

/* ------------------------------------------------- tests */

static void zygote_runs_entry_with_exact_bytes(void **state)
{
    (void)state;
    static unsigned char arg[FORKSAFE_ZYGOTE_ARG_MAX], back[sizeof arg];
    size_t sizes[] = {0, 1, 7, 4096, sizeof arg};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t len = sizes[k];
        assert_int_equal(getrandom(arg, len, 0), (ssize_t)len);
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid;
        assert_int_equal(forksafe_zygote_spawn("echo", len ? arg : NULL, len,
                                               &p[1], 1, &pid),
                         0);
        close(p[1]); /* the worker has its own copy */
        size_t got = read_all(p[0], back, sizeof back);
        close(p[0]);
        fs_assert_child_ok(pid, 5000);
        assert_int_equal(got, len);
        assert_memory_equal(back, arg, len);
    }
}

static void zygote_passes_descriptors_in_order(void **state)
{
    (void)state;
    int p[3][2];
    int fds[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pipe(p[i]), 0);
        fds[i] = p[i][1];
    }
    unsigned char n = 3;
    spawn_expect("fds", &n, 1, fds, 3, FS_EXITED, 0);
    for (int i = 0; i < 3; i++) {
        close(p[i][1]);
        char c = 0;
        assert_int_equal(read_all(p[i][0], &c, 1), 1);
        assert_int_equal(c, 'A' + i);
        close(p[i][0]);
    }
    /* The most descriptors a request may carry. */
    int q[2];
    assert_int_equal(pipe(q), 0);
    int many[FORKSAFE_ZYGOTE_FDS_MAX];
    for (int i = 0; i < FORKSAFE_ZYGOTE_FDS_MAX; i++)
        many[i] = q[1];
    n = FORKSAFE_ZYGOTE_FDS_MAX;
    spawn_expect("fds", &n, 1, many, FORKSAFE_ZYGOTE_FDS_MAX, FS_EXITED, 0);
    close(q[1]);
    char buf[FORKSAFE_ZYGOTE_FDS_MAX + 1];
    assert_int_equal(read_all(q[0], buf, sizeof buf), FORKSAFE_ZYGOTE_FDS_MAX);
    close(q[0]);
}

static void zygote_reports_exit_status_and_signals(void **state)
{
    (void)state;
    unsigned char v = 42;
    spawn_expect("exit", &v, 1, NULL, 0, FS_EXITED, 42);
    v = SIGTERM;
    spawn_expect("raise", &v, 1, NULL, 0, FS_SIGNALED, SIGTERM);
    v = SIGABRT;
    spawn_expect("raise", &v, 1, NULL, 0, FS_SIGNALED, SIGABRT);
    /* The caller can signal and wait for a worker like its own child. */
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid;
    assert_int_equal(forksafe_zygote_spawn("block", NULL, 0, &p[0], 1, &pid),
                     0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(forksafe_zygote_wait(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
    close(p[0]);
    close(p[1]);
}

static void zygote_worker_is_callers_child(void **state)
{
    (void)state;
    spawn_expect("family", &test_pid, sizeof test_pid, NULL, 0, FS_EXITED, 0);
}

static void zygote_wipes_previous_request(void **state)
{
    (void)state;
    unsigned char secret[33], probe[33];
    secret[0] = 1;
    assert_int_equal(getrandom(secret + 1, 32, 0), 32);
    /* A worker that receives the secret at the end of a long argument,
       beyond what the next, shorter request overwrites... */
    static unsigned char first[1024];
    memcpy(first + sizeof first - 32, secret + 1, 32);
    spawn_expect("empty", first, sizeof first, NULL, 0, FS_EXITED, 0);
    /* ...and a later worker that must not find it anywhere. */
    probe[0] = 0;
    for (int i = 1; i < 33; i++)
        probe[i] = (unsigned char)~secret[i];
    spawn_expect("scan", probe, sizeof probe, NULL, 0, FS_EXITED, 1);
    /* Control: the scan does find bytes that are in its own request. */
    spawn_expect("scan", secret, sizeof secret, NULL, 0, FS_EXITED, 0);
}

static void zygote_server_ignores_group_signals(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_int_equal(kill(z, SIGTERM), 0);
    assert_int_equal(kill(z, SIGINT), 0);
    usleep(20000);
    assert_int_equal(proc_dead(z, 1), 0);
    spawn_expect("mask", NULL, 0, NULL, 0, FS_EXITED, 0);
    assert_int_equal(forksafe_zygote_pid(), z);
}

static void zygote_bad_calls(void **state)
{
    (void)state;
    pid_t pid = 777;
    int bad = -1, closed = 1000;
    static char big[FORKSAFE_ZYGOTE_ARG_MAX + 1];
    int many[FORKSAFE_ZYGOTE_FDS_MAX + 1] = {0};
    assert_int_equal(forksafe_zygote_register("late", e_empty), EBUSY);
    assert_int_equal(forksafe_zygote_register(NULL, e_empty), EINVAL);
    assert_int_equal(forksafe_zygote_register("x", NULL), EINVAL);
    assert_int_equal(forksafe_zygote_start(), EALREADY);
    errno = 4321;
    assert_int_equal(forksafe_zygote_spawn("nope", NULL, 0, NULL, 0, &pid),
                     ENOENT);
    assert_int_equal(errno, 4321);
    assert_int_equal(forksafe_zygote_spawn(NULL, NULL, 0, NULL, 0, &pid),
                     EINVAL);
    assert_int_equal(forksafe_zygote_spawn("", NULL, 0, NULL, 0, &pid), EINVAL);
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, NULL),
                     EINVAL);
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 5, NULL, 0, &pid),
                     EINVAL);
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, NULL, 1, &pid),
                     EINVAL);
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, &bad, 1, &pid),
                     EINVAL);
    assert_int_equal(forksafe_zygote_spawn("empty", big,
                                           FORKSAFE_ZYGOTE_ARG_MAX + 1, NULL, 0,
                                           &pid),
                     E2BIG);
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, many,
                                           FORKSAFE_ZYGOTE_FDS_MAX + 1, &pid),
                     E2BIG);
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, &closed, 1, &pid),
                     EBADF);
    assert_int_equal(pid, 777);
    /* No stray worker: the server is our only child. */
    char path[64], kids[256];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)test_pid,
             (int)test_pid);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        size_t k = fread(kids, 1, sizeof kids - 1, f);
        fclose(f);
        kids[k] = '\0';
        char want[32];
        snprintf(want, sizeof want, "%d ", (int)forksafe_zygote_pid());
        assert_string_equal(kids, want);
    }
    spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
}

static void zygote_rejects_malformed_requests(void **state)
{
    (void)state;
    int sock = forksafe__zygote_fd();
    assert_true(sock >= 0);
    pid_t z = forksafe_zygote_pid();
    assert_int_equal(server_fds(z), idle_fds);
    static unsigned char m[FORKSAFE__ZYGOTE_REQ_MAX + 256];
    size_t n;

    n = make_req(m, "empty", 5, 0, 0);
    assert_int_equal(raw_request(sock, m, 10, NULL, 0), EPROTO); /* short */
    m[0] ^= 0xff;
    assert_int_equal(raw_request(sock, m, n, NULL, 0), EPROTO); /* magic */
    n = make_req(m, "empty", 5, 3, 0);
    assert_int_equal(raw_request(sock, m, n - 1, NULL, 0), EPROTO); /* size */
    n = make_req(m, "empty", 5, FORKSAFE_ZYGOTE_ARG_MAX, 0);
    assert_int_equal(raw_request(sock, m, n + 100, NULL, 0), E2BIG); /* huge */
    n = make_req(m, "", 0, 0, 0);
    assert_int_equal(raw_request(sock, m, n, NULL, 0), EINVAL);
    n = make_req(m, "em\0ty", 5, 0, 0);
    assert_int_equal(raw_request(sock, m, n, NULL, 0), EINVAL);
    n = make_req(m, "unknown", 7, 0, 0);
    assert_int_equal(raw_request(sock, m, n, NULL, 0), ENOENT);
    /* A request whose deadline has passed is refused, no worker made. */
    n = make_req(m, "empty", 5, 0, 0);
    struct forksafe__zygote_hdr h;
    memcpy(&h, m, sizeof h);
    h.deadline = 1;
    memcpy(m, &h, sizeof h);
    assert_int_equal(raw_request(sock, m, n, NULL, 0), ETIMEDOUT);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int many[FORKSAFE_ZYGOTE_FDS_MAX + 1];
    for (int i = 0; i <= FORKSAFE_ZYGOTE_FDS_MAX; i++)
        many[i] = devnull;
    n = make_req(m, "empty", 5, 0, FORKSAFE_ZYGOTE_FDS_MAX + 1);
    assert_int_equal(raw_request(sock, m, n, many, FORKSAFE_ZYGOTE_FDS_MAX + 1),
                     E2BIG);
    n = make_req(m, "empty", 5, 0, 1);
    assert_int_equal(raw_request(sock, m, n, many, 2), EPROTO); /* count */
    close(devnull);
    /* Nothing leaked in the server, and it still serves. */
    assert_int_equal(server_fds(z), idle_fds);
    assert_int_equal(forksafe_zygote_pid(), z);
    spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
}

static void zygote_refuses_other_senders(void **state)
{
    (void)state;
    int sock = forksafe__zygote_fd();
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) {
        /* A fork()ed child holds a copy of the channel: the library
           refuses to use it, and the server refuses its requests. */
        pid_t w;
        if (forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w) != ECHILD)
            _exit(1);
        unsigned char m[128];
        size_t n = make_req(m, "empty", 5, 0, 0);
        _exit(raw_request(sock, m, n, NULL, 0) == EPERM ? 0 : 2);
    }
    fs_assert_child_ok(c, 5000);
    spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
}

static void zygote_refuses_when_threaded(void **state)
{
    (void)state;
    assert_int_equal(forksafe_zygote_stop(), 0);
    assert_int_equal(forksafe_zygote_stop(), ECHILD);
    pid_t pid;
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &pid),
                     ECHILD);
    /* Starting with a second thread alive is refused. */
    fs_idle_start();
    int r = forksafe_zygote_start();
    fs_idle_stop();
    assert_int_equal(r, EBUSY);
    /* A server that finds a second thread in itself refuses to fork. */
    fake_server_threads = 1;
    r = start_retry();
    fake_server_threads = 0;
    assert_int_equal(r, 0);
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &pid),
                     EBUSY);
    assert_int_equal(forksafe_zygote_stop(), 0);
    assert_int_equal(start_retry(), 0);
    spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
}

static void zygote_survives_server_death(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_true(z > 0);
    assert_int_equal(kill(z, SIGKILL), 0);
    pid_t pid;
    assert_int_equal(forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &pid),
                     ECHILD);
    assert_int_equal(forksafe_zygote_pid(), 0);
    /* The dead server was reaped when the channel broke. */
    assert_int_equal(forksafe_zygote_stop(), ECHILD);
    errno = 0;
    assert_int_equal(waitpid(z, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    assert_int_equal(start_retry(), 0);
    spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
}

/* A child of the test starts its own server and exits; with keep_channel,
   a grandchild keeps a copy of the channel open, so that only
   PR_SET_PDEATHSIG can end the server. The server must die either way. */
static void server_dies_with_parent(int keep_channel)
{
    int p[2], hold[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe(hold), 0);
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) {
        close(p[0]);
        close(hold[1]);
        if (forksafe_zygote_start() != 0)
            _exit(1);
        pid_t ids[2] = {forksafe_zygote_pid(), 0};
        if (keep_channel) {
            ids[1] = fork();
            if (ids[1] == 0) {
                char ch;
                while (read(hold[0], &ch, 1) > 0) {
                }
                _exit(0);
            }
        }
        if (write(p[1], ids, sizeof ids) != sizeof ids)
            _exit(2);
        _exit(0);
    }
    close(p[1]);
    close(hold[0]);
    pid_t ids[2] = {0, 0};
    assert_int_equal(read_all(p[0], ids, sizeof ids), sizeof ids);
    close(p[0]);
    fs_assert_child_ok(c, 5000);
    assert_true(ids[0] > 0);
    int dead = proc_dead(ids[0], 3000);
    if (ids[1] > 0)
        assert_true(proc_dead(ids[1], 1) == 0); /* holder still alive */
    close(hold[1]);                             /* lets the grandchild go */
    assert_true(dead);
}

static void zygote_server_dies_with_parent(void **state)
{
    (void)state;
    server_dies_with_parent(0);
}

static void zygote_server_dies_with_parent_pdeathsig(void **state)
{
    (void)state;
    server_dies_with_parent(1);
}

static void zygote_sequential_spawns_do_not_leak(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    for (int i = 0; i < 20; i++) /* warm up: fault in the buffers */
        spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
    assert_int_equal(server_fds(z), idle_fds);
    long rss0 = rss_kb(z);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    unsigned char v = 1;
    for (int i = 0; i < 1000; i++) {
        if (i % 2)
            spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
        else
            spawn_expect("fds", &v, 1, &null, 1, FS_EXITED, 0);
    }
    close(null);
    assert_int_equal(server_fds(z), idle_fds);
    long rss1 = rss_kb(z);
    assert_true(rss0 > 0 && rss1 > 0);
    assert_true(rss1 - rss0 <= 256); /* kB */
    assert_int_equal(forksafe_zygote_pid(), z);
}

#define CONC_THREADS 4
#define CONC_EACH    25
struct conc {
    int fd;
    pid_t pids[CONC_EACH];
    int errs;
};

static void *conc_main(void *arg)
{
    struct conc *c = arg;
    for (int i = 0; i < CONC_EACH; i++)
        if (forksafe_zygote_spawn("block", NULL, 0, &c->fd, 1, &c->pids[i]) !=
            0)
            c->errs++;
    return NULL;
}

static void zygote_concurrent_spawns(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_int_equal(server_fds(z), idle_fds);
    long rss0 = rss_kb(z);
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct conc c[CONC_THREADS];
    pthread_t t[CONC_THREADS];
    for (int i = 0; i < CONC_THREADS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].fd = p[0];
        assert_int_equal(pthread_create(&t[i], NULL, conc_main, &c[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++)
        pthread_join(t[i], NULL);
    /* All 100 are alive at once, blocked on the pipe; now release them. */
    close(p[1]);
    close(p[0]);
    int errs = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        errs += c[i].errs;
        for (int k = 0; k < CONC_EACH; k++)
            if (c[i].pids[k] > 0)
                fs_assert_child_ok(c[i].pids[k], 5000);
    }
    assert_int_equal(errs, 0);
    assert_int_equal(server_fds(z), idle_fds);
    long rss1 = rss_kb(z);
    assert_true(rss0 > 0 && rss1 > 0 && rss1 - rss0 <= 256); /* kB */
}

/* forksafe_zygote_stop() while threads spawn: every spawn either made a
   worker (which exits normally) or says ECHILD; nothing hangs. */
struct churn {
    pthread_t t;
    int ok, echild, other, bad_exit;
};
static volatile int churn_stop;

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    while (!churn_stop) {
        pid_t w;
        int r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
        if (r == 0) {
            int st;
            c->ok++;
            if (waitpid(w, &st, 0) != w || st != 0)
                c->bad_exit++;
        } else if (r == ECHILD) {
            c->echild++;
            usleep(1000);
        } else {
            c->other++;
        }
    }
    return NULL;
}

static void zygote_stop_while_spawning(void **state)
{
    (void)state;
    struct churn c[3];
    churn_stop = 0;
    memset(c, 0, sizeof c);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&c[i].t, NULL, churn_main, &c[i]), 0);
    usleep(100000);
    uint64_t t0 = fs_now_ms();
    assert_int_equal(forksafe_zygote_stop(), 0);
    uint64_t took = fs_now_ms() - t0;
    usleep(50000);
    churn_stop = 1;
    int ok = 0, echild = 0, other = 0, bad_exit = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(c[i].t, NULL);
        ok += c[i].ok;
        echild += c[i].echild;
        other += c[i].other;
        bad_exit += c[i].bad_exit;
    }
    assert_int_equal(other, 0);
    assert_int_equal(bad_exit, 0);
    assert_true(ok > 0);
    assert_true(echild > 0);
    assert_true(took < 2000);
    assert_int_equal(forksafe_zygote_pid(), 0);
    assert_int_equal(start_retry(), 0);
    spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
}

/* The server keeps only 0, 1, 2 and its channel: a pipe the program had
   open at start reaches EOF once the program closes its write end, close-
   on-exec or not; workers hold 0, 1, 2 and what they were passed (issue
   10, item 14). */
static int eof_within(int fd, unsigned ms)
{
    uint64_t end = fs_now_ms() + ms;
    while (fs_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) == 1) {
            char c;
            return read(fd, &c, 1) == 0;
        }
    }
    return 0;
}

static void zygote_server_keeps_only_channel(void **state)
{
    (void)state;
    assert_int_equal(forksafe_zygote_stop(), 0);
    int p[2], q[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(pipe2(q, O_CLOEXEC), 0);
    assert_int_equal(start_retry(), 0);
    pid_t z = forksafe_zygote_pid();
    close(p[1]);
    close(q[1]);
    int eof_p = eof_within(p[0], 3000), eof_q = eof_within(q[0], 1000);
    close(p[0]);
    close(q[0]);
    assert_true(eof_p);
    assert_true(eof_q);
    assert_int_equal(server_fds(z), idle_fds);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    spawn_expect("fdcount", NULL, 0, NULL, 0, FS_EXITED, 3);
    spawn_expect("fdcount", NULL, 0, &null, 1, FS_EXITED, 4);
    close(null);
}

/* Descriptor exhaustion in the server is EMFILE, not EBUSY or E2BIG; a
   spawn that passes nothing needs no descriptor (issue 10, item 16). */
static void zygote_server_fd_exhaustion(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    int open_now = server_fds(z);
    assert_int_equal(open_now, idle_fds);
    struct rlimit old, lim;
    assert_int_equal(prlimit(z, RLIMIT_NOFILE, NULL, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)open_now + 1;
    assert_int_equal(prlimit(z, RLIMIT_NOFILE, &lim, NULL), 0);
    int p[2];
    assert_int_equal(pipe(p), 0);
    int three[3] = {p[1], p[1], p[1]};
    unsigned char n3 = 3;
    pid_t w = 0;
    int r3 = forksafe_zygote_spawn("fds", &n3, 1, three, 3, &w);
    /* At the limit itself: a spawn without descriptors still works. */
    lim.rlim_cur = (rlim_t)open_now;
    assert_int_equal(prlimit(z, RLIMIT_NOFILE, &lim, NULL), 0);
    pid_t w0 = 0;
    int r0 = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w0);
    assert_int_equal(prlimit(z, RLIMIT_NOFILE, &old, NULL), 0);
    if (r0 == 0)
        fs_assert_child_ok(w0, 5000);
    assert_int_equal(r3, EMFILE);
    assert_int_equal(r0, 0);
    spawn_expect("fds", &n3, 1, three, 3, FS_EXITED, 0);
    close(p[0]);
    close(p[1]);
    assert_int_equal(server_fds(z), open_now);
}

/* The client at its own descriptor limit: start fails with EMFILE. */
static int start_emfile_scenario(int mode, int fd)
{
    (void)mode;
    /* A forked child drops its copy of the parent's channel when it starts
       its own server: start and stop one first, then fill the table. */
    if (forksafe_zygote_start() != 0 || forksafe_zygote_stop() != 0)
        return 11;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 16;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 10;
    while (dup(0) >= 0) {
    }
    int r = forksafe_zygote_start();
    if (r != EMFILE) {
        dprintf(fd, "start at EMFILE: %s\n", strerror(r));
        return 1;
    }
    return forksafe_zygote_pid() == 0 ? 0 : 2;
}

static void zygote_start_fd_exhaustion(void **state)
{
    (void)state;
    fs_assert_scenario(start_emfile_scenario, 0);
}

/* A thread the program has just joined is gone for the program, but the
   kernel lets go of its address space a moment after pthread_join()
   returns: forksafe_zygote_start() right after a join must not say EBUSY
   (it did in about 1 of 100 starts). */
static void *returns(void *arg)
{
    return arg;
}

static int after_join_scenario(int unused, int fd)
{
    (void)unused;
    int busy = 0;
    for (int i = 0; i < 1000; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, returns, NULL) != 0 ||
            pthread_join(t, NULL) != 0)
            return 10;
        int r = forksafe_zygote_start();
        if (r == EBUSY) {
            busy++;
            continue;
        }
        if (r != 0) {
            dprintf(fd, "start: %s\n", strerror(r));
            return 11;
        }
        forksafe_zygote_stop();
    }
    dprintf(fd, "%d of 1000 starts right after a join said EBUSY\n", busy);
    return busy == 0 ? 0 : 1;
}

static void zygote_start_right_after_a_join(void **state)
{
    (void)state;
    fs_assert_scenario(after_join_scenario, 0);
}

/* Worker credentials are the program's at forksafe_zygote_start(); once
   the program's uids or gids differ from those, spawns fail with EPERM,
   and work again when they are back (issue 10, item 16). */
static int ids_of_worker(char *out, size_t cap, int *err)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t w;
    *err = forksafe_zygote_spawn("ids", NULL, 0, &p[1], 1, &w);
    close(p[1]);
    out[0] = '\0';
    if (*err == 0) {
        size_t n = read_all(p[0], out, cap - 1);
        out[n] = '\0';
        int st;
        waitpid(w, &st, 0);
    }
    close(p[0]);
    return 0;
}

static int creds_scenario(int mode, int fd)
{
    (void)mode;
    if (getuid() != 0)
        return 77;
    if (forksafe_zygote_start() != 0)
        return 10;
    char ids[64];
    int err;
    ids_of_worker(ids, sizeof ids, &err);
    if (err != 0 || strcmp(ids, "0 0 0 0") != 0) {
        dprintf(fd, "as root: %s [%s]\n", strerror(err), ids);
        return 1;
    }
    if (seteuid(65534) != 0)
        return 77; /* no such uid here (a user namespace): skip */
    ids_of_worker(ids, sizeof ids, &err);
    if (err != EPERM) {
        dprintf(fd, "after seteuid(65534): %s [%s]\n", strerror(err), ids);
        return 2;
    }
    if (seteuid(0) != 0 || setegid(65534) != 0)
        return 12;
    ids_of_worker(ids, sizeof ids, &err);
    if (err != EPERM) {
        dprintf(fd, "after setegid(65534): %s [%s]\n", strerror(err), ids);
        return 3;
    }
    if (setegid(0) != 0)
        return 13;
    ids_of_worker(ids, sizeof ids, &err);
    if (err != 0 || strcmp(ids, "0 0 0 0") != 0) {
        dprintf(fd, "back to root: %s [%s]\n", strerror(err), ids);
        return 4;
    }
    if (setgid(65534) != 0 || setuid(65534) != 0)
        return 14;
    ids_of_worker(ids, sizeof ids, &err);
    if (err != EPERM) {
        dprintf(fd, "after setuid(65534): %s [%s]\n", strerror(err), ids);
        return 5;
    }
    return 0;
}

static void zygote_credential_model(void **state)
{
    (void)state;
    fs_assert_scenario(creds_scenario, 0);
}

/* With SIGCHLD ignored (mode 0) or a thread reaping every child with
   waitpid(-1) (mode 1), workers still come back as started, and a server
   that dies is noticed and cleaned up without waiting on or signalling a
   PID that may have been reaped by someone else. */
static volatile int reaper_stop;

static void *reaper_main(void *arg)
{
    (void)arg;
    while (!reaper_stop)
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
            usleep(200);
    return NULL;
}

static int reaped_scenario(int mode, int fd)
{
    if (forksafe_zygote_start() != 0)
        return 10;
    pid_t z = forksafe_zygote_pid();
    pthread_t t;
    if (mode == 0)
        signal(SIGCHLD, SIG_IGN);
    else if (pthread_create(&t, NULL, reaper_main, NULL) != 0)
        return 11;
    int code = 0;
    for (int i = 0; i < 50 && code == 0; i++) {
        pid_t w;
        int r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
        if (r != 0) {
            dprintf(fd, "spawn %d: %s\n", i, strerror(r));
            code = 1;
        }
    }
    kill(z, SIGKILL);
    usleep(50000);
    pid_t w;
    uint64_t t0 = fs_now_ms();
    int r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
    if (r != ECHILD || forksafe_zygote_pid() != 0 ||
        forksafe_zygote_stop() != ECHILD || fs_now_ms() - t0 > 2000) {
        dprintf(fd, "after the server died: %s\n", strerror(r));
        code = 2;
    }
    if (mode == 1) {
        reaper_stop = 1;
        pthread_join(t, NULL);
    }
    return code;
}

static void zygote_with_sigchld_ignored(void **state)
{
    (void)state;
    fs_assert_scenario(reaped_scenario, 0);
}

static void zygote_with_reaper_thread(void **state)
{
    (void)state;
    fs_assert_scenario(reaped_scenario, 1);
}

/* Under a seccomp profile that hides clone3, close_range, pidfd_open and
   pidfd_send_signal and forbids unshare, the server still starts (census
   from /proc), drops the program's descriptors, makes workers (old
   clone()) and is cleaned up by PID when it dies. */
static int seccomp_scenario(int mode, int fd)
{
    (void)mode;
    if (fs_seccomp_hide_new_calls() != 0)
        return 77;
    int p[2];
    if (pipe(p) != 0)
        return 10;
    int r = forksafe_zygote_start();
    if (r != 0) {
        dprintf(fd, "start: %s\n", strerror(r));
        return 1;
    }
    close(p[1]);
    if (!eof_within(p[0], 3000)) {
        dprintf(fd, "the server kept the pipe open\n");
        return 2;
    }
    int q[2];
    if (pipe(q) != 0)
        return 11;
    int three[3] = {q[1], q[1], q[1]};
    unsigned char n3 = 3;
    pid_t w;
    int st;
    r = forksafe_zygote_spawn("fds", &n3, 1, three, 3, &w);
    if (r != 0 || waitpid(w, &st, 0) != w || st != 0) {
        dprintf(fd, "spawn: %s\n", strerror(r));
        return 3;
    }
    r = forksafe_zygote_spawn("fdcount", NULL, 0, NULL, 0, &w);
    if (r != 0 || waitpid(w, &st, 0) != w || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 3) {
        dprintf(fd, "fdcount: %s, status 0x%x\n", strerror(r), st);
        return 4;
    }
    pid_t z = forksafe_zygote_pid();
    kill(z, SIGKILL);
    usleep(50000);
    r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
    errno = 0;
    if (r != ECHILD || waitpid(z, NULL, WNOHANG) != -1 || errno != ECHILD) {
        dprintf(fd, "after the server died: %s\n", strerror(r));
        return 5;
    }
    if (forksafe_zygote_start() != 0 || forksafe_zygote_stop() != 0)
        return 6;
    return 0;
}

static void zygote_under_seccomp(void **state)
{
    (void)state;
    fs_assert_scenario(seccomp_scenario, 0);
}

/* Without /proc (a mount namespace where it is unmounted), the fork
   server starts and serves: its census needs no /proc. forksafe_fork()
   with FORKSAFE_FORK_NO_THREADS fails with ENOENT, as documented (issue
   10, item 16). */
static int noproc_scenario(int mode, int fd)
{
    (void)mode;
    if (unshare(CLONE_NEWNS) != 0)
        return 77;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        umount2("/proc", MNT_DETACH) != 0)
        return 77;
    /* Under `unshare --mount-proc` a second /proc lies below the first. */
    for (int i = 0; i < 8 && access("/proc/self/stat", F_OK) == 0; i++)
        umount2("/proc", MNT_DETACH);
    if (access("/proc/self/stat", F_OK) == 0)
        return 10;
    int r = forksafe_zygote_start();
    if (r != 0) {
        dprintf(fd, "start without /proc: %s\n", strerror(r));
        return 1;
    }
    pid_t w;
    r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
    if (r != 0) {
        dprintf(fd, "spawn without /proc: %s\n", strerror(r));
        return 2;
    }
    int st;
    if (waitpid(w, &st, 0) != w || st != 0)
        return 3;
    if (forksafe_zygote_stop() != 0)
        return 4;
    struct forksafe_fork_opts o;
    memset(&o, 0, sizeof o);
    o.flags = FORKSAFE_FORK_NO_THREADS;
    uint64_t took;
    int e = fs_fork_must_fail(&o, &took);
    if (e != ENOENT || forksafe_last_error()[0] == '\0') {
        dprintf(fd, "forksafe_fork(NO_THREADS) without /proc: %s\n",
                strerror(e));
        return 5;
    }
    return 0;
}

static void zygote_without_proc(void **state)
{
    (void)state;
    fs_assert_scenario(noproc_scenario, 0);
}

/* ------------------------------------------------- namespaces, lost fds */

/* In a process that is PID 1 of a new namespace (G), with its own server,
   a descendant (I) that is PID 1 of a nested namespace has the same PID
   number as G and a copy of G's state. It is not the owner: it must not
   see G's server, use it, or stop it (adversary, after issue 10). */
static int nested_pidns_scenario(int mode, int fd)
{
    (void)mode;
    if (unshare(CLONE_NEWPID) != 0)
        return 77;
    pid_t g = fork();
    if (g < 0)
        return 20;
    if (g == 0) {
        if (getpid() != 1 || forksafe_zygote_start() != 0)
            _exit(21);
        pid_t h = fork();
        if (h == 0) {
            if (unshare(CLONE_NEWPID) != 0)
                _exit(22);
            pid_t i = fork();
            if (i == 0) {
                pid_t w;
                if (getpid() != 1)
                    _exit(23);
                if (forksafe_zygote_pid() != 0)
                    _exit(1);
                if (forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w) !=
                    ECHILD)
                    _exit(2);
                if (forksafe_zygote_stop() != ECHILD)
                    _exit(3);
                _exit(0);
            }
            int code = -1;
            _exit(fs_wait(i, 10000, &code) == FS_EXITED ? code : 24);
        }
        int code = -1;
        if (fs_wait(h, 10000, &code) != FS_EXITED || code != 0)
            _exit(code > 0 ? code : 25);
        /* G's server still serves G. */
        pid_t w;
        int r = forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w);
        if (r != 0)
            _exit(4);
        if (fs_wait(w, 5000, &code) != FS_EXITED || code != 0)
            _exit(5);
        _exit(forksafe_zygote_stop() == 0 ? 0 : 6);
    }
    int code = -1;
    if (fs_wait(g, 20000, &code) != FS_EXITED)
        return 26;
    if (code != 0)
        dprintf(fd, "nested PID namespace: step %d\n", code);
    return code;
}

static void zygote_nested_pid_namespace_is_not_owner(void **state)
{
    (void)state;
    fs_assert_scenario(nested_pidns_scenario, 0);
}

/* After unshare(CLONE_NEWPID) the server would be PID 1 of the new
   namespace, whose parent is invisible to it and which the kernel forbids
   to make siblings (CLONE_PARENT): start() must refuse with ENOTSUP
   instead of returning 0 for a server that is already dead. With /proc it
   refuses before forking, so the caller's next child is still PID 1 of the
   namespace (mode 0); without /proc the server itself reports it (mode 1).
   In a process of its own: it changes namespaces. */
static int other_pidns_scenario(int mode, int fd)
{
    if (mode == 1) {
        if (unshare(CLONE_NEWNS) != 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
            umount2("/proc", MNT_DETACH) != 0)
            return 77;
        for (int i = 0; i < 8 && access("/proc/self/stat", F_OK) == 0; i++)
            umount2("/proc", MNT_DETACH);
        if (access("/proc/self/stat", F_OK) == 0)
            return 77;
    }
    if (unshare(CLONE_NEWPID) != 0)
        return 77;
    int r = forksafe_zygote_start();
    if (r != ENOTSUP) {
        dprintf(fd, "start after unshare(CLONE_NEWPID), mode %d: %d (%s)\n",
                mode, r, strerror(r));
        if (r == 0)
            forksafe_zygote_stop();
        return 1;
    }
    if (forksafe_zygote_pid() != 0)
        return 2;
    pid_t w;
    if (forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w) != ECHILD)
        return 3;
    if (mode == 0) {
        pid_t c = fork();
        if (c == 0)
            _exit(getpid() == 1 ? 0 : 1);
        int code = -1;
        if (c < 0 || fs_wait(c, 5000, &code) != FS_EXITED || code != 0) {
            dprintf(fd, "a child was made before the refusal\n");
            return 4;
        }
    }
    errno = 0;
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
        return 5; /* the refused server was reaped */
    return 0;
}

static void zygote_start_refuses_other_pid_namespace(void **state)
{
    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        char out[256];
        int code = fs_run_scenario(other_pidns_scenario, mode, out, sizeof out);
        if (code == 77)
            continue;
        if (code != 0)
            fprintf(stderr, "%s", out);
        assert_int_equal(code, 0);
    }
}

/* A server that has died is not running: forksafe_zygote_pid() says 0 and
   forksafe_zygote_start() reaps it and starts a new one (not EALREADY),
   before any spawn has noticed. */
static void zygote_dead_server_is_not_running(void **state)
{
    (void)state;
    pid_t z = forksafe_zygote_pid();
    assert_true(z > 0);
    assert_int_equal(kill(z, SIGKILL), 0);
    assert_true(proc_dead(z, 3000));
    assert_int_equal(forksafe_zygote_pid(), 0);
    assert_int_equal(start_retry(), 0);
    errno = 0;
    assert_int_equal(waitpid(z, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
    pid_t z2 = forksafe_zygote_pid();
    assert_true(z2 > 0 && z2 != z);
    spawn_expect("empty", NULL, 0, NULL, 0, FS_EXITED, 0);
}

/* The program closes every descriptor above 2 (a daemon's cleanup) and
   opens its own, which take the numbers of the channel and of the server's
   pidfd. The fork server must notice that those numbers are no longer its
   own: a spawn says ECHILD at once instead of writing the request, and its
   argument, into the program's socket, and stop() closes nothing and
   signals nothing of the program's (adversary, after issue 10). */
static int lost_fds_scenario(int mode, int fd)
{
    (void)mode;
    if (forksafe_zygote_start() != 0)
        return 20;
    pid_t z = forksafe_zygote_pid();
    for (int i = 3; i < 1024; i++)
        if (i != fd)
            close(i);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) != 0)
        return 21;
    /* A child of the program's own, with a pidfd. */
    pid_t kid = fork();
    if (kid == 0) {
        pause();
        _exit(0);
    }
    int kfd = (int)syscall(SYS_pidfd_open, kid, 0);
    int null = open("/dev/null", O_RDONLY);
    int ret = 0;
    pid_t w = 0;
    uint64_t t0 = fs_now_ms();
    int r = forksafe_zygote_spawn("echo", "SECRET", 6, &null, 1, &w);
    uint64_t took = fs_now_ms() - t0;
    char buf[256];
    ssize_t n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
    if (r != ECHILD || took > 1000 || n >= 0) {
        dprintf(fd, "spawn: %s after %llu ms; our socket got %zd bytes\n",
                strerror(r), (unsigned long long)took, n);
        ret = 1;
        if (r == 0)
            waitpid(w, NULL, 0);
    }
    r = forksafe_zygote_stop();
    if (r != ECHILD && r != 0)
        ret = ret ? ret : 2;
    if (fcntl(sv[0], F_GETFD) < 0 || fcntl(sv[1], F_GETFD) < 0 ||
        (kfd >= 0 && fcntl(kfd, F_GETFD) < 0) || fcntl(null, F_GETFD) < 0) {
        dprintf(fd, "the program's descriptors were closed\n");
        ret = ret ? ret : 3;
    }
    if (waitpid(kid, NULL, WNOHANG) != 0) {
        dprintf(fd, "the program's child was killed\n");
        ret = ret ? ret : 4;
    }
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    /* The old server got EOF and exited; a new one can be started. */
    if (!proc_dead(z, 3000))
        ret = ret ? ret : 5;
    waitpid(z, NULL, WNOHANG);
    if (forksafe_zygote_start() != 0)
        return ret ? ret : 6;
    if (forksafe_zygote_spawn("empty", NULL, 0, NULL, 0, &w) != 0 ||
        waitpid(w, NULL, 0) != w)
        ret = ret ? ret : 7;
    forksafe_zygote_stop();
    return ret;
}

static void zygote_program_closes_library_descriptors(void **state)
{
    (void)state;
    fs_assert_scenario(lost_fds_scenario, 0);
}

int main(void)
{
    fs_watchdog(120);
    test_pid = getpid();
    idle_fds = 1;
    for (int fd = 0; fd < 3; fd++)
        idle_fds += fcntl(fd, F_GETFD) >= 0;
    forksafe_zygote_register("empty", e_empty);
    forksafe_zygote_register("exit", e_exit);
    forksafe_zygote_register("raise", e_raise);
    forksafe_zygote_register("echo", e_echo);
    forksafe_zygote_register("fds", e_fds);
    forksafe_zygote_register("family", e_family);
    forksafe_zygote_register("block", e_block);
    forksafe_zygote_register("mask", e_mask);
    forksafe_zygote_register("scan", e_scan);
    forksafe_zygote_register("fdcount", e_fdcount);
    forksafe_zygote_register("ids", e_ids);
    if (forksafe_zygote_register("empty", e_exit) != EEXIST ||
        forksafe_zygote_start() != 0) {
        fprintf(stderr, "test-zygote: setup failed\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zygote_runs_entry_with_exact_bytes),
        cmocka_unit_test(zygote_passes_descriptors_in_order),
        cmocka_unit_test(zygote_reports_exit_status_and_signals),
        cmocka_unit_test(zygote_worker_is_callers_child),
        cmocka_unit_test(zygote_wipes_previous_request),
        cmocka_unit_test(zygote_server_ignores_group_signals),
        cmocka_unit_test(zygote_bad_calls),
        cmocka_unit_test(zygote_rejects_malformed_requests),
        cmocka_unit_test(zygote_refuses_other_senders),
        cmocka_unit_test(zygote_server_dies_with_parent),
        cmocka_unit_test(zygote_server_dies_with_parent_pdeathsig),
        cmocka_unit_test(zygote_sequential_spawns_do_not_leak),
        cmocka_unit_test(zygote_concurrent_spawns),
        cmocka_unit_test(zygote_stop_while_spawning),
        cmocka_unit_test(zygote_server_keeps_only_channel),
        cmocka_unit_test(zygote_server_fd_exhaustion),
        cmocka_unit_test(zygote_start_fd_exhaustion),
        cmocka_unit_test(zygote_start_right_after_a_join),
        cmocka_unit_test(zygote_credential_model),
        cmocka_unit_test(zygote_without_proc),
        cmocka_unit_test(zygote_with_sigchld_ignored),
        cmocka_unit_test(zygote_with_reaper_thread),
        cmocka_unit_test(zygote_under_seccomp),
        cmocka_unit_test(zygote_refuses_when_threaded),
        cmocka_unit_test(zygote_survives_server_death),
        cmocka_unit_test(zygote_dead_server_is_not_running),
        cmocka_unit_test(zygote_nested_pid_namespace_is_not_owner),
        cmocka_unit_test(zygote_start_refuses_other_pid_namespace),
        cmocka_unit_test(zygote_program_closes_library_descriptors),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    forksafe_zygote_stop();
    return r;
}
