/* SPDX-License-Identifier: MIT */
/*
 * test-spawn.c: forksafe_spawn() against the real kernel and glibc. The
 * child is spawn-probe, which reports on stdout what it inherited
 * (descriptors, signals, cwd, environment, ids); each test reads that
 * report through a pipe mapped to the child's stdout and waits for the
 * child with a deadline.
 *
 * Most tests run twice: on the posix_spawn() path and with
 * FORKSAFE_SPAWN_PIDFD, which creates the child with clone(CLONE_PIDFD)
 * instead (the cmocka state says which). Tests that change process-wide
 * state (resource limits, SIGCHLD, credentials, a reaper thread) run in a
 * scenario process of their own. The program is linked with the static
 * library and -Wl,--wrap=kill, so that a test can check that
 * forksafe_spawn() never signals anything.
 */
#include "common.h"
#include "fs-seccomp.h"

#include <forksafe.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char probe[PATH_MAX + 32]; /* absolute path of spawn-probe */
static char probe_dir[PATH_MAX];

/* ------------------------------------------------- fault observation */

int __real_kill(pid_t pid, int sig);
int __wrap_kill(pid_t pid, int sig);
static volatile int kill_calls;

/* Every kill() in this program (libforksafe's included) is counted. */
int __wrap_kill(pid_t pid, int sig)
{
    __atomic_add_fetch(&kill_calls, 1, __ATOMIC_RELAXED);
    return __real_kill(pid, sig);
}

/* ------------------------------------------------- helpers */

static const unsigned v_plain = 0;
static const unsigned v_pidfd = FORKSAFE_SPAWN_PIDFD;

static unsigned variant(void **state)
{
    return *(const unsigned *)*state;
}

/* Read everything from fd until EOF (at most cap-1 bytes, 5 s). */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    uint64_t end = fs_now_ms() + 5000;
    while (n + 1 < cap && fs_now_ms() < end) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return n;
}

/* 1 if /proc/self/fdinfo says pidfd refers to pid. */
static int pidfd_names(int pidfd, pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    int ok = 0;
    long v;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "Pid: %ld", &v) == 1)
            ok = v == (long)pid;
    fclose(f);
    return ok;
}

/* forksafe_spawn() with the variant's flag added. With PIDFD, checks the
   pidfd (close-on-exec, names the child) and closes it. On failure,
   checks that neither the PID nor the pidfd slot was written. */
static int spawn_v(unsigned v, pid_t *pid, const char *file, char *const argv[],
                   char *const envp[], const struct forksafe_spawn_opts *opts)
{
    struct forksafe_spawn_opts o;
    if (opts != NULL)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    int pidfd = -77;
    pid_t got = -55;
    o.flags |= v;
    if (v & FORKSAFE_SPAWN_PIDFD)
        o.pidfd_out = &pidfd;
    int r = forksafe_spawn(&got, file, argv, envp, &o);
    if (r != 0) {
        assert_int_equal(got, -55);
        assert_int_equal(pidfd, -77);
        return r;
    }
    assert_true(got > 0);
    if (v & FORKSAFE_SPAWN_PIDFD) {
        assert_true(pidfd >= 0);
        assert_true(fcntl(pidfd, F_GETFD) & FD_CLOEXEC);
        assert_true(pidfd_names(pidfd, got));
        close(pidfd);
    }
    *pid = got;
    return 0;
}

/* Run spawn-probe with args, its stdout on a pipe, plus extra fd maps and
   flags; store its report in out and assert that it exits with 0. */
static void run_probe(unsigned v, unsigned flags,
                      const struct forksafe_fd_map *maps, size_t nmaps,
                      const char *cwd, char *const argv[], char *out,
                      size_t cap)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct forksafe_fd_map all[8];
    assert_true(nmaps < 8);
    all[0].child_fd = 1;
    all[0].parent_fd = p[1];
    if (nmaps > 0)
        memcpy(all + 1, maps, nmaps * sizeof *maps);
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.flags = flags;
    o.fd_map = all;
    o.n_fd_map = nmaps + 1;
    o.cwd = cwd;
    pid_t pid = -1;
    assert_int_equal(spawn_v(v, &pid, probe, argv, NULL, &o), 0);
    close(p[1]);
    read_all(p[0], out, cap);
    close(p[0]);
    fs_assert_child_ok(pid, 5000);
}

/* No child of this process is left (none exited unreaped, none running). */
static void assert_no_children(void)
{
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

/* ------------------------------------------------- tests */

static void spawn_exec_errors_are_return_values(void **state)
{
    unsigned v = variant(state);
    pid_t pid = 12345;
    char *argv[] = {"x", NULL};
    assert_int_equal(spawn_v(v, &pid, "/nonexistent/prog", argv, NULL, NULL),
                     ENOENT);
    assert_int_equal(
        spawn_v(v, &pid, "fs-no-such-program-here", argv, NULL, NULL), ENOENT);
    /* A directory and a file without any execute bit: EACCES, even for
       root. */
    assert_int_equal(spawn_v(v, &pid, "/tmp", argv, NULL, NULL), EACCES);
    char path[] = "/tmp/fs-spawn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x01\x02garbage", 9), 9);
    close(fd);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(spawn_v(v, &pid, path, argv, NULL, NULL), EACCES);
    /* Executable but not a format the kernel knows: ENOEXEC, not a shell. */
    assert_int_equal(chmod(path, 0755), 0);
    assert_int_equal(spawn_v(v, &pid, path, argv, NULL, NULL), ENOEXEC);
    unlink(path);
    /* More argument than the kernel takes: E2BIG. */
    size_t big = 4u << 20;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, 'a', big - 1);
    huge[big - 1] = '\0';
    char *bargv[] = {"true", huge, NULL};
    assert_int_equal(spawn_v(v, &pid, "/bin/true", bargv, NULL, NULL), E2BIG);
    free(huge);
    assert_int_equal(pid, 12345); /* untouched on failure */
    /* No child was left behind by any failure. */
    assert_no_children();
}

static void spawn_path_search(void **state)
{
    unsigned v = variant(state);
    pid_t pid;
    char *argv[] = {"true", NULL};
    assert_int_equal(spawn_v(v, &pid, "true", argv, NULL, NULL), 0);
    fs_assert_child_ok(pid, 5000);
    /* Without search, "true" names ./true, which does not exist. */
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.flags = FORKSAFE_SPAWN_NO_PATH_SEARCH;
    assert_int_equal(spawn_v(v, &pid, "true", argv, NULL, &o), ENOENT);
    /* PATH is read from the caller's current environment. */
    char *saved = strdup(getenv("PATH"));
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "/nonexistent:%s", probe_dir);
    setenv("PATH", path, 1);
    char *pargv[] = {"spawn-probe", "exit", "7", NULL};
    int r = spawn_v(v, &pid, "spawn-probe", pargv, NULL, NULL);
    setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(r, 0);
    int code = -1;
    assert_int_equal(fs_wait(pid, 5000, &code), FS_EXITED);
    assert_int_equal(code, 7);
}

/* What execvp() says for file with PATH set to path: run in a child. */
static int execvp_errno(const char *file, const char *path)
{
    pid_t c = fork();
    assert_true(c >= 0);
    if (c == 0) {
        setenv("PATH", path, 1);
        char *argv[] = {"x", NULL};
        execvp(file, argv);
        _exit(errno);
    }
    int code = -1;
    assert_int_equal(fs_wait(c, 5000, &code), FS_EXITED);
    return code;
}

/* PATH search says what execvp() says for names and candidates that are
   too long (issue 10, item 12). */
static void spawn_path_name_too_long(void **state)
{
    unsigned v = variant(state);
    char *saved = strdup(getenv("PATH"));
    char *argv[] = {"x", NULL};
    pid_t pid;
    /* A name of NAME_MAX bytes is merely absent; one more is too long. */
    char name[NAME_MAX + 2];
    memset(name, 'a', sizeof name);
    name[NAME_MAX] = '\0';
    assert_int_equal(execvp_errno(name, saved), ENOENT);
    assert_int_equal(spawn_v(v, &pid, name, argv, NULL, NULL), ENOENT);
    name[NAME_MAX] = 'a';
    name[NAME_MAX + 1] = '\0';
    assert_int_equal(execvp_errno(name, saved), ENAMETOOLONG);
    assert_int_equal(spawn_v(v, &pid, name, argv, NULL, NULL), ENAMETOOLONG);
    /* A directory so long that dir/true exceeds PATH_MAX stops the search,
       even though a later directory has the program. */
    static char path[PATH_MAX + 64];
    strcpy(path, "/tmp");
    while (strlen(path) < PATH_MAX - 2)
        strcat(path, "/x");
    strcat(path, ":/bin:/usr/bin");
    assert_int_equal(execvp_errno("true", path), ENAMETOOLONG);
    setenv("PATH", path, 1);
    char *targv[] = {"true", NULL};
    int r = spawn_v(v, &pid, "true", targv, NULL, NULL);
    setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(r, ENAMETOOLONG);
    assert_no_children();
}

/* PATH elements execvp() skips or reports as it does (adversary, after
   issue 10): an element of PATH_MAX bytes or more can never form a path and
   is skipped, so a later directory still finds the program; when no
   candidate execs and none said EACCES, the error is the last candidate's
   (ENOTDIR here), not always ENOENT. */
static void spawn_path_search_like_execvp(void **state)
{
    unsigned v = variant(state);
    char *saved = strdup(getenv("PATH"));
    pid_t pid;
    char *targv[] = {"true", NULL};
    static char path[PATH_MAX * 2 + 64];
    path[0] = '/';
    memset(path + 1, 'a', PATH_MAX + 100);
    strcpy(path + 1 + PATH_MAX + 100, ":/bin:/usr/bin");
    assert_int_equal(execvp_errno("true", path), 0); /* true ran */
    setenv("PATH", path, 1);
    int r = spawn_v(v, &pid, "true", targv, NULL, NULL);
    setenv("PATH", saved, 1);
    assert_int_equal(r, 0);
    fs_assert_child_ok(pid, 5000);

    /* A regular file used as a directory: ENOTDIR, if it comes last. */
    char file[] = "/tmp/fs-spawn-notdir-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    close(fd);
    const char *name = "fs-no-such-program-here";
    char *argv[] = {"x", NULL};
    snprintf(path, sizeof path, "/nonexistent:%s", file);
    assert_int_equal(execvp_errno(name, path), ENOTDIR);
    setenv("PATH", path, 1);
    r = spawn_v(v, &pid, name, argv, NULL, NULL);
    setenv("PATH", saved, 1);
    assert_int_equal(r, ENOTDIR);
    snprintf(path, sizeof path, "%s:/nonexistent", file);
    assert_int_equal(execvp_errno(name, path), ENOENT);
    setenv("PATH", path, 1);
    r = spawn_v(v, &pid, name, argv, NULL, NULL);
    setenv("PATH", saved, 1);
    assert_int_equal(r, ENOENT);
    unlink(file);
    free(saved);
    assert_no_children();
}

static void spawn_fd_hygiene(void **state)
{
    unsigned v = variant(state);
    int leak = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
    int cloexec = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(leak > 2 && cloexec > 2);
    char out[256];
    char *argv[] = {"spawn-probe", "fds", NULL};

    run_probe(v, 0, NULL, 0, NULL, argv, out, sizeof out);
    assert_string_equal(out, "0 1 2 \n");

    /* Named descriptors are inherited, at the number asked for. */
    struct forksafe_fd_map m = {leak + 10, leak};
    run_probe(v, 0, &m, 1, NULL, argv, out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "0 1 2 %d \n", leak + 10);
    assert_string_equal(out, want);

    /* Mapped onto its own number, a close-on-exec descriptor is kept. */
    struct forksafe_fd_map id = {cloexec, cloexec};
    run_probe(v, 0, &id, 1, NULL, argv, out, sizeof out);
    snprintf(want, sizeof want, "0 1 2 %d \n", cloexec);
    assert_string_equal(out, want);

    /* KEEP_FDS: the non-close-on-exec one leaks, the other does not. */
    run_probe(v, FORKSAFE_SPAWN_KEEP_FDS, NULL, 0, NULL, argv, out, sizeof out);
    snprintf(want, sizeof want, " %d ", leak);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want, " %d ", cloexec);
    assert_null(strstr(out, want));
    close(leak);
    close(cloexec);
}

/* Descriptors 0, 1 and 2 are not treated specially: one that is
   close-on-exec is closed at exec like any other, unless fd_map names it
   (which clears the flag in the child). docs/spawn.md said "only 0, 1, 2
   and the child_fds of fd_map stay open, whatever their close-on-exec
   flag", which reads as a promise for 0, 1 and 2 as well (adversary). */
static void spawn_std_descriptors_follow_cloexec(void **state)
{
    unsigned v = variant(state);
    int fl = fcntl(0, F_GETFD);
    if (fl < 0)
        skip(); /* run with descriptor 0 closed */
    assert_int_equal(fcntl(0, F_SETFD, fl | FD_CLOEXEC), 0);
    char out[256];
    char *argv[] = {"spawn-probe", "fds", NULL};
    run_probe(v, 0, NULL, 0, NULL, argv, out, sizeof out);
    char plain[256];
    snprintf(plain, sizeof plain, "%s", out);
    struct forksafe_fd_map id = {0, 0};
    run_probe(v, 0, &id, 1, NULL, argv, out, sizeof out);
    assert_int_equal(fcntl(0, F_SETFD, fl), 0);
    assert_string_equal(plain, "1 2 \n");
    assert_string_equal(out, "0 1 2 \n");
}

/* KEEP_FDS with an fd_map keeps every inherited descriptor, including the
   numbers just above the map, where temporary copies used to land
   (issue 10, item 9). */
static void spawn_keep_fds_map_keeps_inherited(void **state)
{
    unsigned v = variant(state);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(null > 2 && null < 90);
    /* Inherited (not close-on-exec) at 101 and 102; the map's highest
       number is 100. */
    assert_int_equal(dup2(null, 101), 101);
    assert_int_equal(dup2(null, 102), 102);
    struct forksafe_fd_map m = {100, null};
    char out[512];
    char *argv[] = {"spawn-probe", "fds", NULL};
    run_probe(v, FORKSAFE_SPAWN_KEEP_FDS, &m, 1, NULL, argv, out, sizeof out);
    close(101);
    close(102);
    close(null);
    assert_non_null(strstr(out, " 100 "));
    assert_non_null(strstr(out, " 101 "));
    assert_non_null(strstr(out, " 102 "));
}

static void spawn_fd_map_is_simultaneous(void **state)
{
    unsigned v = variant(state);
    int a[2], b[2];
    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    /* Swap two descriptors: a[1]'s number gets b[1] and vice versa. A
       naive dup2 sequence would send both marks into the same pipe. */
    struct forksafe_fd_map m[2] = {{a[1], b[1]}, {b[1], a[1]}};
    char sa[16], sb[16];
    snprintf(sa, sizeof sa, "%d", a[1]);
    snprintf(sb, sizeof sb, "%d", b[1]);
    char *argv[] = {"spawn-probe", "mark", sa, sb, NULL};
    char out[64];
    run_probe(v, 0, m, 2, NULL, argv, out, sizeof out);
    close(a[1]);
    close(b[1]);
    char ra[16], rb[16];
    read_all(a[0], ra, sizeof ra);
    read_all(b[0], rb, sizeof rb);
    assert_string_equal(ra, sb); /* child fd b[1] was our a[1] */
    assert_string_equal(rb, sa);
    close(a[0]);
    close(b[0]);
}

/* Spawn spawn-probe with opts (stdout on a pipe added as map entry 0),
   read its output into out; returns the spawn's result, after reaping. */
static int probe_in_scenario(unsigned flags, struct forksafe_fd_map *maps,
                             size_t nmaps, char *const argv[], char *out,
                             size_t cap)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    struct forksafe_fd_map all[8];
    all[0].child_fd = 1;
    all[0].parent_fd = p[1];
    if (nmaps > 0)
        memcpy(all + 1, maps, nmaps * sizeof *maps);
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    int pidfd = -1;
    o.flags = flags;
    o.pidfd_out = &pidfd;
    o.fd_map = all;
    o.n_fd_map = nmaps + 1;
    pid_t pid;
    int r = forksafe_spawn(&pid, probe, argv, NULL, &o);
    close(p[1]);
    if (r == 0) {
        read_all(p[0], out, cap);
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0)
            r = -2;
    }
    if (pidfd >= 0)
        close(pidfd);
    close(p[0]);
    return r;
}

/* Descriptors right under RLIMIT_NOFILE can be mapped, swapped and kept
   (issue 10, item 10). In its own process: it lowers the limit. */
static int near_limit_scenario(int v, int fd)
{
    /* Opened before the limit is lowered: above it, and still open. */
    int above = open("/dev/null", O_RDONLY);
    if (above < 0 || dup2(above, 100) != 100)
        return 12;
    close(above);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 10;
    int p[2], q[2];
    if (pipe(p) != 0 || dup2(p[1], 63) != 63 || pipe(q) != 0 ||
        dup2(q[1], 62) != 62)
        return 11;
    close(p[1]);
    close(q[1]);
    char out[256];
    char *fds[] = {"spawn-probe", "fds", NULL};
    struct forksafe_fd_map m1 = {10, 63};
    int r = probe_in_scenario((unsigned)v, &m1, 1, fds, out, sizeof out);
    if (r != 0 || strcmp(out, "0 1 2 10 \n") != 0) {
        dprintf(fd, "map 10 <- 63: %d (%s) [%s]\n", r, strerror(r), out);
        return 1;
    }
    r = probe_in_scenario((unsigned)v | FORKSAFE_SPAWN_KEEP_FDS, &m1, 1, fds,
                          out, sizeof out);
    if (r != 0 || strstr(out, " 10 ") == NULL) {
        dprintf(fd, "KEEP_FDS map 10 <- 63: %d (%s) [%s]\n", r, strerror(r),
                out);
        return 2;
    }
    /* The highest target right under the limit: 100, above it, must still
       be closed. */
    struct forksafe_fd_map top = {63, 63};
    r = probe_in_scenario((unsigned)v, &top, 1, fds, out, sizeof out);
    if (r != 0 || strcmp(out, "0 1 2 63 \n") != 0) {
        dprintf(fd, "map 63 <- 63: %d (%s) [%s]\n", r, strerror(r), out);
        return 4;
    }
    /* Swap 62 and 63: child 62 writes into our 63 (p), 63 into q. */
    struct forksafe_fd_map sw[2] = {{62, 63}, {63, 62}};
    char *mark[] = {"spawn-probe", "mark", "62", "63", NULL};
    r = probe_in_scenario((unsigned)v, sw, 2, mark, out, sizeof out);
    close(62);
    close(63);
    char rp[16], rq[16];
    read_all(p[0], rp, sizeof rp);
    read_all(q[0], rq, sizeof rq);
    if (r != 0 || strcmp(rp, "62") != 0 || strcmp(rq, "63") != 0) {
        dprintf(fd, "swap 62/63: %d (%s) p=[%s] q=[%s]\n", r, strerror(r), rp,
                rq);
        return 3;
    }
    return 0;
}

static void spawn_fd_map_near_fd_limit(void **state)
{
    fs_assert_scenario(near_limit_scenario, (int)variant(state));
}

/* A parent_fd that is open but above a lowered RLIMIT_NOFILE (opened
   before the limit was lowered, or inherited) is a valid source: dup2()
   accepts it, and so must the map (adversary, after issue 10 item 10).
   glibc's posix_spawn_file_actions_adddup2() refuses it with EBADF. */
static int source_above_limit_scenario(int v, int fd)
{
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 100) != 100)
        return 12;
    close(null);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 10;
    char out[256];
    char *fds[] = {"spawn-probe", "fds", NULL};
    struct forksafe_fd_map m = {10, 100};
    int r = probe_in_scenario((unsigned)v, &m, 1, fds, out, sizeof out);
    if (r != 0 || strcmp(out, "0 1 2 10 \n") != 0) {
        dprintf(fd, "map 10 <- 100 (limit 64): %d (%s) [%s]\n", r,
                strerror(r > 0 ? r : 0), out);
        return 1;
    }
    r = probe_in_scenario((unsigned)v | FORKSAFE_SPAWN_KEEP_FDS, &m, 1, fds,
                          out, sizeof out);
    if (r != 0 || strstr(out, " 10 ") == NULL) {
        dprintf(fd, "KEEP_FDS map 10 <- 100 (limit 64): %d (%s) [%s]\n", r,
                strerror(r > 0 ? r : 0), out);
        return 2;
    }
    return 0;
}

static void spawn_fd_map_source_above_fd_limit(void **state)
{
    fs_assert_scenario(source_above_limit_scenario, (int)variant(state));
}

/* A negative parent_fd is a descriptor that is not open: EBADF, as the
   header says (and as dup2() says), not EINVAL. */
static void spawn_negative_parent_fd_is_ebadf(void **state)
{
    unsigned v = variant(state);
    pid_t pid = 12345;
    char *argv[] = {"x", NULL};
    struct forksafe_fd_map m = {3, -1};
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.fd_map = &m;
    o.n_fd_map = 1;
    assert_int_equal(spawn_v(v, &pid, "/bin/true", argv, NULL, &o), EBADF);
    m.parent_fd = INT_MIN;
    assert_int_equal(spawn_v(v, &pid, "/bin/true", argv, NULL, &o), EBADF);
    assert_int_equal(pid, 12345);
    assert_no_children();
}

static void spawn_signals_reset(void **state)
{
    unsigned v = variant(state);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    assert_int_equal(sigprocmask(SIG_BLOCK, &block, &old), 0);
    struct sigaction ign, oldsa;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    assert_int_equal(sigaction(SIGUSR2, &ign, &oldsa), 0);

    char out[256];
    char *argv[] = {"spawn-probe", "sig", NULL};
    run_probe(v, 0, NULL, 0, NULL, argv, out, sizeof out);
    char *def = strdup(out);
    run_probe(v, FORKSAFE_SPAWN_KEEP_SIGMASK | FORKSAFE_SPAWN_KEEP_SIGDEFAULTS,
              NULL, 0, NULL, argv, out, sizeof out);

    sigprocmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGUSR2, &oldsa, NULL);
    assert_string_equal(def, "blocked: ignored:\n");
    free(def);
    char want[64];
    snprintf(want, sizeof want, "blocked: %d ignored: %d\n", SIGUSR1, SIGUSR2);
    assert_string_equal(out, want);
}

/* A signal that reaches the child before it execs never runs one of the
   parent's handlers there (the child shares the parent's memory until
   exec). A thread floods the process group with SIGUSR1; the handler
   notes any process other than the parent that runs it. */
static volatile pid_t handler_owner;
static volatile sig_atomic_t handler_foreign, flood_stop;

static void on_usr1(int sig)
{
    (void)sig;
    if (getpid() != handler_owner)
        handler_foreign = 1;
}

static void *flood_main(void *arg)
{
    (void)arg;
    while (!flood_stop) {
        kill(0, SIGUSR1);
        usleep(20);
    }
    return NULL;
}

static int handler_scenario(int v, int fd)
{
    if (setpgid(0, 0) != 0)
        return 10;
    handler_owner = getpid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, flood_main, NULL) != 0)
        return 11;
    int bad = 0;
    char *argv[] = {"spawn-probe", "exit", "0", NULL};
    for (int i = 0; i < 300 && !bad; i++) {
        struct forksafe_spawn_opts o;
        memset(&o, 0, sizeof o);
        int pidfd = -1;
        o.flags = (unsigned)v | (i % 2 ? FORKSAFE_SPAWN_KEEP_SIGDEFAULTS : 0);
        o.pidfd_out = &pidfd;
        pid_t pid;
        int r = forksafe_spawn(&pid, probe, argv, NULL, &o);
        if (r != 0) {
            dprintf(fd, "spawn %d: %s\n", i, strerror(r));
            bad = 1;
            break;
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (pidfd >= 0)
            close(pidfd);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
            !(WIFSIGNALED(st) && WTERMSIG(st) == SIGUSR1)) {
            dprintf(fd, "child %d: status 0x%x\n", i, st);
            bad = 2;
        }
    }
    flood_stop = 1;
    pthread_join(t, NULL);
    if (handler_foreign) {
        dprintf(fd, "the parent's handler ran in a child\n");
        return 3;
    }
    return bad;
}

static void spawn_child_runs_no_parent_handler(void **state)
{
    fs_assert_scenario(handler_scenario, (int)variant(state));
}

static void spawn_cwd(void **state)
{
    unsigned v = variant(state);
    char out[PATH_MAX];
    char *argv[] = {"spawn-probe", "cwd", NULL};
    run_probe(v, 0, NULL, 0, "/tmp", argv, out, sizeof out);
    assert_string_equal(out, "/tmp\n");
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.cwd = "/nonexistent-dir";
    pid_t pid;
    assert_int_equal(spawn_v(v, &pid, probe, argv, NULL, &o), ENOENT);
    /* A relative program is found relative to the new directory. */
    o.cwd = probe_dir;
    o.flags = FORKSAFE_SPAWN_NO_PATH_SEARCH;
    char *eargv[] = {"spawn-probe", "exit", "5", NULL};
    assert_int_equal(spawn_v(v, &pid, "./spawn-probe", eargv, NULL, &o), 0);
    int code = -1;
    assert_int_equal(fs_wait(pid, 5000, &code), FS_EXITED);
    assert_int_equal(code, 5);
}

static void spawn_session_and_group(void **state)
{
    unsigned v = variant(state);
    char out[128];
    char *argv[] = {"spawn-probe", "ids", NULL};
    int pid, pgid, sid;
    run_probe(v, FORKSAFE_SPAWN_SETSID, NULL, 0, NULL, argv, out, sizeof out);
    assert_int_equal(sscanf(out, "%d %d %d", &pid, &pgid, &sid), 3);
    assert_int_equal(sid, pid);
    assert_int_equal(pgid, pid);
    run_probe(v, FORKSAFE_SPAWN_SETPGROUP, NULL, 0, NULL, argv, out,
              sizeof out);
    assert_int_equal(sscanf(out, "%d %d %d", &pid, &pgid, &sid), 3);
    assert_int_equal(pgid, pid);
    assert_int_equal(sid, (int)getsid(0));
    run_probe(v, 0, NULL, 0, NULL, argv, out, sizeof out);
    assert_int_equal(sscanf(out, "%d %d %d", &pid, &pgid, &sid), 3);
    assert_int_equal(pgid, (int)getpgrp());
}

static void spawn_pidfd(void **state)
{
    (void)state;
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    int pidfd = -1;
    o.flags = FORKSAFE_SPAWN_PIDFD;
    o.pidfd_out = &pidfd;
    pid_t pid;
    char *argv[] = {"spawn-probe", "exit", "3", NULL};
    int r = forksafe_spawn(&pid, probe, argv, NULL, &o);
    if (r == ENOSYS)
        skip();
    assert_int_equal(r, 0);
    assert_true(pidfd >= 0);
    assert_true(fcntl(pidfd, F_GETFD) & FD_CLOEXEC);
    struct pollfd p = {pidfd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 5000), 1); /* readable once it exits */
    int code = -1;
    assert_int_equal(fs_wait(pid, 5000, &code), FS_EXITED);
    assert_int_equal(code, 3);
    close(pidfd);
}

/* Spawn /bin/true n times with PIDFD; every spawn must succeed with a
   pidfd that becomes readable when the program exits. Reports to fd. */
static int pidfd_loop(int n, int fd)
{
    int fails = 0, lost = 0, last = 0;
    char *argv[] = {"true", NULL};
    for (int i = 0; i < n; i++) {
        struct forksafe_spawn_opts o;
        memset(&o, 0, sizeof o);
        int pidfd = -1;
        o.flags = FORKSAFE_SPAWN_PIDFD;
        o.pidfd_out = &pidfd;
        pid_t pid;
        int r = forksafe_spawn(&pid, "/bin/true", argv, NULL, &o);
        if (r != 0) {
            fails++;
            last = r;
            continue;
        }
        struct pollfd p = {pidfd, POLLIN, 0};
        if (poll(&p, 1, 5000) != 1)
            lost++;
        close(pidfd);
    }
    /* A program that cannot be exec'd is still an error, and its child
       is reaped without touching any other process. */
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    int pidfd = -1;
    o.flags = FORKSAFE_SPAWN_PIDFD;
    o.pidfd_out = &pidfd;
    pid_t pid;
    int enoent = forksafe_spawn(&pid, "/nonexistent/prog", argv, NULL, &o);
    int kills = __atomic_load_n(&kill_calls, __ATOMIC_RELAXED);
    dprintf(fd,
            "%d spawns: %d failed (last: %s), %d pidfds never readable, "
            "%d kill() calls; missing program: %s\n",
            n, fails, last ? strerror(last) : "-", lost, kills,
            strerror(enoent));
    return fails || lost || kills || enoent != ENOENT || pidfd != -1 ? 1 : 0;
}

/* With SIGCHLD ignored, the kernel reaps children the moment they exit:
   a program that ran and exited at once is still reported as started,
   and nothing is ever signalled (issue 10, item 11). */
static int sigchld_ignored_scenario(int n, int fd)
{
    signal(SIGCHLD, SIG_IGN);
    kill_calls = 0;
    return pidfd_loop(n, fd);
}

static void spawn_pidfd_sigchld_ignored(void **state)
{
    (void)state;
    fs_assert_scenario(sigchld_ignored_scenario, 1000);
}

/* The same with a thread that reaps every child with waitpid(-1). */
static volatile int reaper_stop;

static void *reaper_main(void *arg)
{
    (void)arg;
    while (!reaper_stop)
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
            usleep(100);
    return NULL;
}

static int reaper_scenario(int n, int fd)
{
    kill_calls = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, reaper_main, NULL) != 0)
        return 10;
    int r = pidfd_loop(n, fd);
    reaper_stop = 1;
    pthread_join(t, NULL);
    return r;
}

static void spawn_pidfd_with_reaper_thread(void **state)
{
    (void)state;
    fs_assert_scenario(reaper_scenario, 1000);
}

/* With every descriptor in use, PIDFD fails with EMFILE and starts
   nothing (the pidfd is made with the child, not after it); the
   posix_spawn path needs no descriptor unless the map needs temporary
   copies. */
static int emfile_scenario(int mode, int fd)
{
    (void)mode;
    kill_calls = 0;
    char mark[64];
    snprintf(mark, sizeof mark, "/tmp/fs-spawn-ran-%d", (int)getpid());
    unlink(mark);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 32;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 10;
    int p[2], q[2];
    if (pipe(p) != 0 || pipe(q) != 0)
        return 11;
    int filled = 0;
    while (dup(0) >= 0)
        filled++;
    if (errno != EMFILE || filled == 0)
        return 12;
    char *argv[] = {"spawn-probe", "touch", mark, NULL};
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    int pidfd = -1;
    o.flags = FORKSAFE_SPAWN_PIDFD;
    o.pidfd_out = &pidfd;
    pid_t pid = 0;
    int r = forksafe_spawn(&pid, probe, argv, NULL, &o);
    int code = 0;
    if (r != EMFILE || pidfd != -1 || pid != 0) {
        dprintf(fd, "PIDFD at EMFILE: %s, pidfd %d\n", strerror(r), pidfd);
        code = 1;
    }
    /* A swap needs temporary copies: EMFILE, nothing started. */
    struct forksafe_fd_map sw[2] = {{p[1], q[1]}, {q[1], p[1]}};
    o.flags = 0;
    o.fd_map = sw;
    o.n_fd_map = 2;
    r = forksafe_spawn(&pid, probe, argv, NULL, &o);
    if (r != EMFILE) {
        dprintf(fd, "swap at EMFILE: %s\n", strerror(r));
        code = 2;
    }
    usleep(100000);
    errno = 0;
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        dprintf(fd, "a child was created\n");
        code = 3;
    }
    if (access(mark, F_OK) == 0) {
        dprintf(fd, "the program ran\n");
        unlink(mark);
        code = 4;
    }
    if (kill_calls != 0) {
        dprintf(fd, "%d kill() calls\n", kill_calls);
        code = 5;
    }
    /* Without a map or pidfd, posix_spawn needs no descriptor. */
    o.n_fd_map = 0;
    r = forksafe_spawn(&pid, probe, argv, NULL, &o);
    if (r != 0) {
        dprintf(fd, "plain spawn at EMFILE: %s\n", strerror(r));
        code = 6;
    } else {
        int st;
        waitpid(pid, &st, 0);
        unlink(mark);
    }
    return code;
}

static void spawn_pidfd_emfile_starts_nothing(void **state)
{
    (void)state;
    fs_assert_scenario(emfile_scenario, 0);
}

/* With RLIMIT_NPROC reached (as an unprivileged user), spawning fails
   with EAGAIN and leaves nothing behind. */
static int nproc_scenario(int v, int fd)
{
    if (getuid() != 0)
        return 77;
    if (setgid(65534) != 0 || setuid(65534) != 0)
        return 77; /* no such uid here (a user namespace): skip */
    struct rlimit rl = {1, 1};
    if (setrlimit(RLIMIT_NPROC, &rl) != 0)
        return 11;
    char *argv[] = {"true", NULL};
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    int pidfd = -1;
    o.flags = (unsigned)v;
    o.pidfd_out = &pidfd;
    pid_t pid = 0;
    int r = forksafe_spawn(&pid, "/bin/true", argv, NULL, &o);
    if (r != EAGAIN || pid != 0 || pidfd != -1) {
        dprintf(fd, "at RLIMIT_NPROC: %s\n", strerror(r));
        return 1;
    }
    errno = 0;
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
        return 2;
    return 0;
}

static void spawn_nproc_limit(void **state)
{
    fs_assert_scenario(nproc_scenario, (int)variant(state));
}

/* Under a seccomp profile that hides clone3, close_range and pidfd_open
   (as some container runtimes do), spawning still works and still closes
   what it must; PIDFD either works (the pidfd comes from clone) or says
   ENOSYS and starts nothing. */
static int seccomp_scenario(int mode, int fd)
{
    (void)mode;
    if (fs_seccomp_hide_new_calls() != 0)
        return 77;
    int leak = open("/dev/null", O_RDONLY); /* not close-on-exec */
    if (leak < 0)
        return 10;
    char out[256];
    char *fds[] = {"spawn-probe", "fds", NULL};
    int r = probe_in_scenario(0, NULL, 0, fds, out, sizeof out);
    if (r != 0 || strcmp(out, "0 1 2 \n") != 0) {
        dprintf(fd, "plain: %d [%s]\n", r, out);
        return 1;
    }
    /* The clone() path closes without close_range() too, including what
       is open above a lowered limit (100 here). */
    if (dup2(leak, 100) != 100)
        return 12;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || dup2(leak, 63) != 63)
        return 11;
    struct forksafe_fd_map top = {63, 63};
    r = probe_in_scenario(0, &top, 1, fds, out, sizeof out);
    if (r != 0 || strcmp(out, "0 1 2 63 \n") != 0) {
        dprintf(fd, "clone path: %d [%s]\n", r, out);
        return 2;
    }
    r = probe_in_scenario(FORKSAFE_SPAWN_PIDFD, &top, 1, fds, out, sizeof out);
    if (r == ENOSYS) {
        errno = 0;
        if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
            return 3;
    } else if (r != 0 || strcmp(out, "0 1 2 63 \n") != 0) {
        dprintf(fd, "PIDFD: %d [%s]\n", r, out);
        return 4;
    }
    return 0;
}

static void spawn_under_seccomp(void **state)
{
    (void)state;
    fs_assert_scenario(seccomp_scenario, 0);
}

/* The same profile (close_range() hidden) without /proc, as in a chroot
   or sandbox without /proc on a kernel before 5.9: glibc's closefrom file
   action then has no way to find the open descriptors and fails the
   spawn with ENOENT, so the default hygiene made every spawn fail
   (adversary). Such spawns must take the clone() path, which counts up
   to RLIMIT_NOFILE there. */
static int seccomp_noproc_scenario(int mode, int fd)
{
    (void)mode;
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return 77;
    for (int i = 0; i < 8 && access("/proc/self", F_OK) == 0; i++)
        if (umount2("/proc", MNT_DETACH) != 0)
            return 77;
    if (access("/proc/self", F_OK) == 0)
        return 77;
    if (fs_seccomp_hide_new_calls() != 0)
        return 77;
    int leak = open("/dev/null", O_RDONLY); /* not close-on-exec */
    if (leak < 0)
        return 10;
    char out[256];
    char *fds[] = {"spawn-probe", "fds", NULL};
    int r = probe_in_scenario(0, NULL, 0, fds, out, sizeof out);
    if (r != 0 || strcmp(out, "0 1 2 \n") != 0) {
        dprintf(fd, "plain: %s [%s]\n", strerror(r), out);
        return 1;
    }
    struct forksafe_fd_map m = {leak + 5, leak};
    char want[64];
    snprintf(want, sizeof want, "0 1 2 %d \n", leak + 5);
    r = probe_in_scenario(0, &m, 1, fds, out, sizeof out);
    if (r != 0 || strcmp(out, want) != 0) {
        dprintf(fd, "map: %s [%s]\n", strerror(r), out);
        return 2;
    }
    return 0;
}

static void spawn_under_seccomp_without_proc(void **state)
{
    (void)state;
    fs_assert_scenario(seccomp_noproc_scenario, 0);
}

/* Threads spawn at once, each with its own pipes swapped in its map: every
   mark arrives in the pipe that thread meant. */
struct conc_arg {
    unsigned v;
    int errs;
};

static void *conc_main(void *argp)
{
    struct conc_arg *a = argp;
    for (int i = 0; i < 40; i++) {
        int x[2], y[2];
        if (pipe(x) != 0 || pipe(y) != 0) {
            a->errs++;
            continue;
        }
        struct forksafe_fd_map m[2] = {{x[1], y[1]}, {y[1], x[1]}};
        char sx[16], sy[16];
        snprintf(sx, sizeof sx, "%d", x[1]);
        snprintf(sy, sizeof sy, "%d", y[1]);
        char *argv[] = {"spawn-probe", "mark", sx, sy, NULL};
        struct forksafe_spawn_opts o;
        memset(&o, 0, sizeof o);
        int pidfd = -1;
        o.flags = a->v;
        o.pidfd_out = &pidfd;
        o.fd_map = m;
        o.n_fd_map = 2;
        pid_t pid;
        int r = forksafe_spawn(&pid, probe, argv, NULL, &o);
        close(x[1]);
        close(y[1]);
        if (r != 0) {
            a->errs++;
        } else {
            char rx[16], ry[16];
            read_all(x[0], rx, sizeof rx);
            read_all(y[0], ry, sizeof ry);
            int st;
            if (waitpid(pid, &st, 0) != pid || st != 0 || strcmp(rx, sy) != 0 ||
                strcmp(ry, sx) != 0)
                a->errs++;
            if (pidfd >= 0)
                close(pidfd);
        }
        close(x[0]);
        close(y[0]);
    }
    return NULL;
}

static void spawn_concurrent_threads(void **state)
{
    struct conc_arg a[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        a[i].v = variant(state);
        a[i].errs = 0;
        assert_int_equal(pthread_create(&t[i], NULL, conc_main, &a[i]), 0);
    }
    int errs = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        errs += a[i].errs;
    }
    assert_int_equal(errs, 0);
    assert_no_children();
}

static void spawn_bad_input(void **state)
{
    (void)state;
    pid_t pid;
    char *argv[] = {"x", NULL};
    struct forksafe_spawn_opts o;
    errno = 1234;
    assert_int_equal(forksafe_spawn(NULL, "/bin/true", argv, NULL, NULL),
                     EINVAL);
    assert_int_equal(forksafe_spawn(&pid, NULL, argv, NULL, NULL), EINVAL);
    assert_int_equal(forksafe_spawn(&pid, "", argv, NULL, NULL), EINVAL);
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", NULL, NULL, NULL),
                     EINVAL);
    memset(&o, 0, sizeof o);
    o.flags = 0x80000000u;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EINVAL);
    memset(&o, 0, sizeof o);
    o.reserved[2] = &o;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EINVAL);
    memset(&o, 0, sizeof o);
    o.flags = FORKSAFE_SPAWN_SETSID | FORKSAFE_SPAWN_SETPGROUP;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EINVAL);
    memset(&o, 0, sizeof o);
    o.flags = FORKSAFE_SPAWN_PIDFD;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EINVAL);
    memset(&o, 0, sizeof o);
    o.n_fd_map = 1;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EINVAL);
    struct forksafe_fd_map m[2] = {{5, 1}, {5, 2}};
    o.fd_map = m;
    o.n_fd_map = 2;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EINVAL);
    m[1].child_fd = -1;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EINVAL);
    m[1].child_fd = 6;
    m[1].parent_fd = 999; /* not open */
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EBADF);
    /* A child_fd the child could never have: EBADF, at once, in both
       paths. */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    m[1].parent_fd = 2;
    m[1].child_fd = (int)rl.rlim_cur;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EBADF);
    m[1].child_fd = INT_MAX;
    uint64_t t0 = fs_now_ms();
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EBADF);
    int pidfd = -1;
    o.flags = FORKSAFE_SPAWN_PIDFD;
    o.pidfd_out = &pidfd;
    assert_int_equal(forksafe_spawn(&pid, "/bin/true", argv, NULL, &o), EBADF);
    assert_true(fs_now_ms() - t0 < 2000);
    assert_int_equal(pidfd, -1);
    assert_int_equal(errno, 1234); /* results travel only in the return */
    assert_no_children();
}

static void spawn_explicit_envp(void **state)
{
    unsigned v = variant(state);
    char *envp[] = {"FS_PROBE_VAR=given", NULL};
    char *argv[] = {"spawn-probe", "env", "FS_PROBE_VAR", NULL};
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct forksafe_fd_map m = {1, p[1]};
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.fd_map = &m;
    o.n_fd_map = 1;
    pid_t pid;
    assert_int_equal(spawn_v(v, &pid, probe, argv, envp, &o), 0);
    close(p[1]);
    char out[64];
    read_all(p[0], out, sizeof out);
    close(p[0]);
    fs_assert_child_ok(pid, 5000);
    assert_string_equal(out, "given\n");
}

/* Threads overwrite a variable while the main thread spawns with the
   current environment: every child sees one of the two values, whole. */
static volatile int setenv_stop;
static void *setenv_loop(void *arg)
{
    (void)arg;
    for (unsigned i = 0; !setenv_stop; i++)
        setenv("FS_PROBE_VAR", (i & 1) ? "alpha" : "beta", 1);
    return NULL;
}

static void spawn_concurrent_setenv(void **state)
{
    unsigned v = variant(state);
#ifndef __GLIBC__
    /* glibc's setenv() never frees a string it replaces, which is what
       makes copying environ beside it safe; musl's frees it (POSIX does
       not require setenv to be thread-safe at all). docs/platforms.md. */
    (void)v;
    skip();
#endif
    setenv("FS_PROBE_VAR", "alpha", 1); /* created before the threads */
    setenv_stop = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, setenv_loop, NULL), 0);
    char *argv[] = {"spawn-probe", "env", "FS_PROBE_VAR", NULL};
    int bad = 0;
    for (int i = 0; i < 100 && !bad; i++) {
        char out[64];
        run_probe(v, 0, NULL, 0, NULL, argv, out, sizeof out);
        bad = strcmp(out, "alpha\n") != 0 && strcmp(out, "beta\n") != 0;
        /* PATH search reads the same copy: it must keep working. */
        pid_t pid;
        char *targv[] = {"true", NULL};
        assert_int_equal(spawn_v(v, &pid, "true", targv, NULL, NULL), 0);
        fs_assert_child_ok(pid, 5000);
    }
    setenv_stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    unsetenv("FS_PROBE_VAR");
    assert_false(bad);
}

/* Last: nothing above made forksafe_spawn() signal a process. */
static void spawn_never_signals(void **state)
{
    (void)state;
    assert_int_equal(kill_calls, 0);
}

/* ------------------------------------------------- thread cancellation */

/* The thread that calls forksafe_spawn() with a cancellation request
   already pending (pthread_cancel() while it had cancellation disabled).
   What the call returns is stored before the next cancellation point. */
struct cancel_call {
    unsigned flags;
    const char *file;
    volatile int ready, go, returned;
    int r;
    pid_t pid;
    int pidfd;
};

static void *cancel_main(void *arg)
{
    struct cancel_call *c = arg;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    c->ready = 1;
    while (!c->go)
        sched_yield();
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL); /* not a point */
    char *argv[] = {(char *)"probe", NULL};
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.flags = c->flags;
    if (c->flags & FORKSAFE_SPAWN_PIDFD)
        o.pidfd_out = &c->pidfd;
    c->r = forksafe_spawn(&c->pid, c->file, argv, NULL, &o);
    c->returned = 1;
    pthread_testcancel();
    return NULL;
}

static int open_fd_count(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++)
        n += fcntl(fd, F_GETFD) >= 0;
    return n;
}

/* A thread cancelled inside forksafe_spawn() (deferred cancellation, a
   request pending on entry) still gets its answer: no child is left
   behind that nobody was told of, no descriptor leaks, and a started
   child is reported (adversary: the PIDFD path's waitid() and close()
   were cancellation points, leaving a zombie and its pidfd behind). */
static int cancel_scenario(int flags, int fd)
{
    (void)fd;
    const char *files[] = {"/nonexistent/forksafe-cancel", probe};
    for (int round = 0; round < 20; round++) {
        struct cancel_call c;
        memset(&c, 0, sizeof c);
        c.flags = (unsigned)flags;
        c.file = files[round % 2];
        c.pidfd = -1;
        c.pid = -1;
        int before = open_fd_count();
        pthread_t t;
        if (pthread_create(&t, NULL, cancel_main, &c) != 0)
            return 10;
        while (!c.ready)
            sched_yield();
        pthread_cancel(t);
        c.go = 1;
        void *res;
        pthread_join(t, &res);
        if (!c.returned) {
            dprintf(fd, "round %d (%s): cancelled inside forksafe_spawn\n",
                    round, c.file);
            return 11;
        }
        if (round % 2 == 0 && c.r != ENOENT)
            return 12;
        if (round % 2 == 1) {
            if (c.r != 0)
                return 13;
            int code;
            if (fs_wait(c.pid, 5000, &code) == FS_HUNG)
                return 14;
            if (c.pidfd >= 0)
                close(c.pidfd);
        }
        int after = open_fd_count();
        if (after != before) {
            dprintf(fd, "round %d: %d descriptors before, %d after\n", round,
                    before, after);
            return 15;
        }
        pid_t z = waitpid(-1, NULL, WNOHANG);
        if (z > 0) {
            dprintf(fd, "round %d: child %d left behind\n", round, (int)z);
            return 16;
        }
    }
    return 0;
}

static void spawn_survives_thread_cancellation(void **state)
{
    fs_assert_scenario(cancel_scenario, (int)variant(state));
}

#define BOTH(f)                                                                \
    cmocka_unit_test_prestate(f, (void *)&v_plain),                            \
        cmocka_unit_test_prestate(f, (void *)&v_pidfd)

int main(void)
{
    fs_watchdog(240);
    ssize_t n = readlink("/proc/self/exe", probe_dir, sizeof probe_dir - 1);
    if (n <= 0)
        return 1;
    probe_dir[n] = '\0';
    *strrchr(probe_dir, '/') = '\0';
    snprintf(probe, sizeof probe, "%s/spawn-probe", probe_dir);
    const struct CMUnitTest tests[] = {
        BOTH(spawn_exec_errors_are_return_values),
        BOTH(spawn_path_search),
        BOTH(spawn_path_name_too_long),
        BOTH(spawn_path_search_like_execvp),
        BOTH(spawn_fd_hygiene),
        BOTH(spawn_std_descriptors_follow_cloexec),
        BOTH(spawn_keep_fds_map_keeps_inherited),
        BOTH(spawn_fd_map_is_simultaneous),
        BOTH(spawn_fd_map_near_fd_limit),
        BOTH(spawn_fd_map_source_above_fd_limit),
        BOTH(spawn_negative_parent_fd_is_ebadf),
        BOTH(spawn_signals_reset),
        BOTH(spawn_child_runs_no_parent_handler),
        BOTH(spawn_cwd),
        BOTH(spawn_session_and_group),
        cmocka_unit_test(spawn_pidfd),
        cmocka_unit_test(spawn_pidfd_sigchld_ignored),
        cmocka_unit_test(spawn_pidfd_with_reaper_thread),
        cmocka_unit_test(spawn_pidfd_emfile_starts_nothing),
        cmocka_unit_test(spawn_under_seccomp),
        cmocka_unit_test(spawn_under_seccomp_without_proc),
        BOTH(spawn_nproc_limit),
        BOTH(spawn_concurrent_threads),
        cmocka_unit_test(spawn_bad_input),
        BOTH(spawn_explicit_envp),
        BOTH(spawn_concurrent_setenv),
        cmocka_unit_test(spawn_never_signals),
        BOTH(spawn_survives_thread_cancellation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
