/* SPDX-License-Identifier: MIT */
/*
 * test-spawn.c: forksafe_spawn() against the real posix_spawn() of glibc.
 * The child is spawn-probe, which reports on stdout what it inherited
 * (descriptors, signals, cwd, environment, ids); each test reads that
 * report through a pipe mapped to the child's stdout and waits for the
 * child with a deadline.
 */
#include "common.h"

#include <forksafe.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char probe[PATH_MAX + 32];/* absolute path of spawn-probe */
static char probe_dir[PATH_MAX];

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

/* Run spawn-probe with args, its stdout on a pipe, plus extra fd maps and
   flags; store its report in out and assert that it exits with 0. */
static void run_probe(unsigned flags, const struct forksafe_fd_map *maps,
                      size_t nmaps, const char *cwd, char *const argv[],
                      char *out, size_t cap)
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
    assert_int_equal(forksafe_spawn(&pid, probe, argv, NULL, &o), 0);
    close(p[1]);
    read_all(p[0], out, cap);
    close(p[0]);
    fs_assert_child_ok(pid, 5000);
}

static void spawn_exec_errors_are_return_values(void **state)
{
    (void)state;
    pid_t pid = 12345;
    char *argv[] = {"x", NULL};
    assert_int_equal(forksafe_spawn(&pid, "/nonexistent/prog", argv, NULL,
                                    NULL), ENOENT);
    assert_int_equal(forksafe_spawn(&pid, "fs-no-such-program-here", argv,
                                    NULL, NULL), ENOENT);
    /* A directory and a file without any execute bit: EACCES, even for
       root. */
    assert_int_equal(forksafe_spawn(&pid, "/tmp", argv, NULL, NULL), EACCES);
    char path[] = "/tmp/fs-spawn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\x01\x02garbage", 9), 9);
    close(fd);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(forksafe_spawn(&pid, path, argv, NULL, NULL), EACCES);
    /* Executable but not a format the kernel knows: ENOEXEC, not a shell. */
    assert_int_equal(chmod(path, 0755), 0);
    assert_int_equal(forksafe_spawn(&pid, path, argv, NULL, NULL), ENOEXEC);
    unlink(path);
    assert_int_equal(pid, 12345); /* untouched on failure */
    /* No child was left behind by any failure. */
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void spawn_path_search(void **state)
{
    (void)state;
    pid_t pid;
    char *argv[] = {"true", NULL};
    assert_int_equal(forksafe_spawn(&pid, "true", argv, NULL, NULL), 0);
    fs_assert_child_ok(pid, 5000);
    /* Without search, "true" names ./true, which does not exist. */
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.flags = FORKSAFE_SPAWN_NO_PATH_SEARCH;
    assert_int_equal(forksafe_spawn(&pid, "true", argv, NULL, &o), ENOENT);
    /* PATH is read from the caller's current environment. */
    char *saved = strdup(getenv("PATH"));
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "/nonexistent:%s", probe_dir);
    setenv("PATH", path, 1);
    char *pargv[] = {"spawn-probe", "exit", "7", NULL};
    int r = forksafe_spawn(&pid, "spawn-probe", pargv, NULL, NULL);
    setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(r, 0);
    int code = -1;
    assert_int_equal(fs_wait(pid, 5000, &code), FS_EXITED);
    assert_int_equal(code, 7);
}

static void spawn_fd_hygiene(void **state)
{
    (void)state;
    int leak = open("/dev/null", O_RDONLY); /* no O_CLOEXEC on purpose */
    int cloexec = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(leak > 2 && cloexec > 2);
    char out[256];
    char *argv[] = {"spawn-probe", "fds", NULL};

    run_probe(0, NULL, 0, NULL, argv, out, sizeof out);
    assert_string_equal(out, "0 1 2 \n");

    /* Named descriptors are inherited, at the number asked for. */
    struct forksafe_fd_map m = {leak + 10, leak};
    run_probe(0, &m, 1, NULL, argv, out, sizeof out);
    char want[64];
    snprintf(want, sizeof want, "0 1 2 %d \n", leak + 10);
    assert_string_equal(out, want);

    /* KEEP_FDS: the non-close-on-exec one leaks, the other does not. */
    run_probe(FORKSAFE_SPAWN_KEEP_FDS, NULL, 0, NULL, argv, out, sizeof out);
    snprintf(want, sizeof want, " %d ", leak);
    assert_non_null(strstr(out, want));
    snprintf(want, sizeof want, " %d ", cloexec);
    assert_null(strstr(out, want));
    close(leak);
    close(cloexec);
}

static void spawn_fd_map_is_simultaneous(void **state)
{
    (void)state;
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
    run_probe(0, m, 2, NULL, argv, out, sizeof out);
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

static void spawn_signals_reset(void **state)
{
    (void)state;
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
    run_probe(0, NULL, 0, NULL, argv, out, sizeof out);
    char *def = strdup(out);
    run_probe(FORKSAFE_SPAWN_KEEP_SIGMASK | FORKSAFE_SPAWN_KEEP_SIGDEFAULTS,
              NULL, 0, NULL, argv, out, sizeof out);

    sigprocmask(SIG_SETMASK, &old, NULL);
    sigaction(SIGUSR2, &oldsa, NULL);
    assert_string_equal(def, "blocked: ignored:\n");
    free(def);
    char want[64];
    snprintf(want, sizeof want, "blocked: %d ignored: %d\n", SIGUSR1, SIGUSR2);
    assert_string_equal(out, want);
}

static void spawn_cwd(void **state)
{
    (void)state;
    char out[PATH_MAX];
    char *argv[] = {"spawn-probe", "cwd", NULL};
    run_probe(0, NULL, 0, "/tmp", argv, out, sizeof out);
    assert_string_equal(out, "/tmp\n");
    struct forksafe_spawn_opts o;
    memset(&o, 0, sizeof o);
    o.cwd = "/nonexistent-dir";
    pid_t pid;
    assert_int_equal(forksafe_spawn(&pid, probe, argv, NULL, &o), ENOENT);
}

static void spawn_session_and_group(void **state)
{
    (void)state;
    char out[128];
    char *argv[] = {"spawn-probe", "ids", NULL};
    int pid, pgid, sid;
    run_probe(FORKSAFE_SPAWN_SETSID, NULL, 0, NULL, argv, out, sizeof out);
    assert_int_equal(sscanf(out, "%d %d %d", &pid, &pgid, &sid), 3);
    assert_int_equal(sid, pid);
    assert_int_equal(pgid, pid);
    run_probe(FORKSAFE_SPAWN_SETPGROUP, NULL, 0, NULL, argv, out, sizeof out);
    assert_int_equal(sscanf(out, "%d %d %d", &pid, &pgid, &sid), 3);
    assert_int_equal(pgid, pid);
    assert_int_equal(sid, (int)getsid(0));
    run_probe(0, NULL, 0, NULL, argv, out, sizeof out);
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
    assert_int_equal(errno, 1234); /* results travel only in the return */
    errno = 0;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

static void spawn_explicit_envp(void **state)
{
    (void)state;
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
    assert_int_equal(forksafe_spawn(&pid, probe, argv, envp, &o), 0);
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
    (void)state;
#ifndef __GLIBC__
    /* glibc's setenv() never frees a string it replaces, which is what
       makes copying environ beside it safe; musl's frees it (POSIX does
       not require setenv to be thread-safe at all). docs/platforms.md. */
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
        run_probe(0, NULL, 0, NULL, argv, out, sizeof out);
        bad = strcmp(out, "alpha\n") != 0 && strcmp(out, "beta\n") != 0;
        /* PATH search reads the same copy: it must keep working. */
        pid_t pid;
        char *targv[] = {"true", NULL};
        assert_int_equal(forksafe_spawn(&pid, "true", targv, NULL, NULL), 0);
        fs_assert_child_ok(pid, 5000);
    }
    setenv_stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    unsetenv("FS_PROBE_VAR");
    assert_false(bad);
}

int main(void)
{
    fs_watchdog(60);
    ssize_t n = readlink("/proc/self/exe", probe_dir, sizeof probe_dir - 1);
    if (n <= 0)
        return 1;
    probe_dir[n] = '\0';
    *strrchr(probe_dir, '/') = '\0';
    snprintf(probe, sizeof probe, "%s/spawn-probe", probe_dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spawn_exec_errors_are_return_values),
        cmocka_unit_test(spawn_path_search),
        cmocka_unit_test(spawn_fd_hygiene),
        cmocka_unit_test(spawn_fd_map_is_simultaneous),
        cmocka_unit_test(spawn_signals_reset),
        cmocka_unit_test(spawn_cwd),
        cmocka_unit_test(spawn_session_and_group),
        cmocka_unit_test(spawn_pidfd),
        cmocka_unit_test(spawn_bad_input),
        cmocka_unit_test(spawn_explicit_envp),
        cmocka_unit_test(spawn_concurrent_setenv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
