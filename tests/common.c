/* SPDX-License-Identifier: MIT */
/* tests/common.c: watchdog, bounded child waits and an idle thread. */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void fs_watchdog(unsigned seconds)
{
    /* SIGALRM's default action ends the process with a signal, which the
       runner reports as a broken suite. */
    signal(SIGALRM, SIG_DFL);
    alarm(seconds);
}

uint64_t fs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

enum fs_wait_result fs_wait(pid_t pid, unsigned timeout_ms, int *code)
{
    uint64_t end = fs_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st)) {
                *code = WEXITSTATUS(st);
                return FS_EXITED;
            }
            *code = WTERMSIG(st);
            return FS_SIGNALED;
        }
        if (r < 0 && errno != EINTR) {
            *code = -errno;
            return FS_SIGNALED;
        }
        if (fs_now_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            *code = -1;
            return FS_HUNG;
        }
        struct timespec d = {0, 200 * 1000};
        nanosleep(&d, NULL);
    }
}

static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static int idle_stop;
static pthread_t idle_thread;
static int idle_running;

static void *idle_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&idle_mu);
    while (!idle_stop)
        pthread_cond_wait(&idle_cv, &idle_mu);
    pthread_mutex_unlock(&idle_mu);
    return NULL;
}

void fs_idle_start(void)
{
    if (idle_running)
        return;
    idle_stop = 0;
    if (pthread_create(&idle_thread, NULL, idle_main, NULL) != 0)
        abort();
    idle_running = 1;
}

void fs_idle_stop(void)
{
    if (!idle_running)
        return;
    int before = forksafe_thread_count();
    pthread_mutex_lock(&idle_mu);
    idle_stop = 1;
    pthread_cond_signal(&idle_cv);
    pthread_mutex_unlock(&idle_mu);
    pthread_join(idle_thread, NULL);
    idle_running = 0;
    /* pthread_join() returns when the kernel has cleared the thread's TID,
       which it does before it releases the thread: /proc may count it a
       moment longer (seen in test-report on a loaded machine). Wait for
       that, boundedly, so that tests see the process they expect. */
    for (int i = 0; i < 2000 && before > 1 && forksafe_thread_count() >= before;
         i++) {
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
}

int fs_run_scenario_alloc(int (*fn)(int mode, int fd), int mode, char **buf,
                          size_t *len)
{
    int p[2];
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b || pipe(p) != 0)
        abort();
    fflush(NULL); /* this process's own buffers must not reach the child */
    pid_t pid = fork();
    if (pid < 0)
        abort();
    if (pid == 0) {
        close(p[0]);
        /* A peer may close first: a write must fail with EPIPE, not kill
           the scenario. */
        signal(SIGPIPE, SIG_IGN);
        _exit(fn(mode, p[1]));
    }
    close(p[1]);
    uint64_t end = fs_now_ms() + 40000;
    for (;;) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        int left = (int)(end - fs_now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            break;
        if (n + 4096 > cap) {
            cap *= 2;
            if (!(b = realloc(b, cap)))
                abort();
        }
        ssize_t r = read(p[0], b + n, cap - n - 1);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    b[n] = '\0';
    close(p[0]);
    *buf = b;
    if (len)
        *len = n;
    int code = -1;
    return fs_wait(pid, 10000, &code) == FS_EXITED ? code : -1;
}

int fs_run_scenario(int (*fn)(int mode, int fd), int mode, char *out,
                    size_t cap)
{
    char *b;
    size_t n;
    int code = fs_run_scenario_alloc(fn, mode, &b, &n);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, b, n);
    out[n] = '\0';
    free(b);
    return code;
}

void fs_assert_scenario(int (*fn)(int mode, int fd), int mode)
{
    fs_expect_scenario(fn, mode, NULL);
}

void fs_expect_scenario(int (*fn)(int mode, int fd), int mode,
                        const char *expected)
{
    char out[4096]; /* on the stack: fail_msg() and skip() do not return */
    int code = fs_run_scenario(fn, mode, out, sizeof out);
    if (code == 77)
        skip();
    if (code != 0)
        fail_msg("scenario exit %d (-1: killed or hung): %s", code, out);
    if (expected != NULL && strcmp(out, expected) != 0)
        fail_msg("scenario wrote \"%s\", expected \"%s\"", out, expected);
}

pthread_rwlock_t fs_asan_gate = PTHREAD_RWLOCK_INITIALIZER;

int fs_asan_gate_register(void)
{
    return FS_ASAN ? forksafe_register_rwlock(&fs_asan_gate, "asan gate",
                                              FORKSAFE_RANK_APP - 1)
                   : 0;
}

void fs_asan_gate_unregister(void)
{
    if (FS_ASAN)
        forksafe_unregister(&fs_asan_gate);
}

void fs_asan_enter(void)
{
    if (FS_ASAN)
        pthread_rwlock_rdlock(&fs_asan_gate);
}

void fs_asan_leave(void)
{
    if (FS_ASAN)
        pthread_rwlock_unlock(&fs_asan_gate);
}

int fs_fork_must_fail(const struct forksafe_fork_opts *opts, uint64_t *took_ms)
{
    uint64_t t0 = fs_now_ms();
    pid_t pid = forksafe_fork(opts);
    int err = errno;
    if (took_ms)
        *took_ms = fs_now_ms() - t0;
    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        int code;
        fs_wait(pid, 5000, &code);
        fail_msg("forksafe_fork succeeded where it must fail");
    }
    return err;
}

const char *fs_layer(void)
{
    static char layer[16];
    if (layer[0])
        return layer;
    FILE *f = tmpfile();
    if (!f || forksafe_audit_write(fileno(f), FORKSAFE_AUDIT_JSON) != 0)
        abort();
    char line[1024];
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        static const char key[] = "\"platform\": {\"layer\": \"";
        const char *p = strstr(line, key);
        if (p && sscanf(p + sizeof key - 1, "%15[a-z]", layer) == 1)
            break;
    }
    fclose(f);
    if (!layer[0])
        abort();
    return layer;
}

int fs_layer_is(const char *name)
{
    return strcmp(fs_layer(), name) == 0;
}

pid_t fs_prog_start(char *const argv[], const char *const *envs, const char *o,
                    const char *e, int flags)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(o ? o : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(e ? e : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0)
            _exit(120);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        for (; envs && *envs; envs++)
            putenv((char *)*envs);
        /* Programs the tests kill with SIGQUIT leave no core file. */
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        if (flags & FS_PROG_DEFAULT_SIGNALS) {
            signal(SIGINT, SIG_DFL);
            signal(SIGQUIT, SIG_DFL);
        }
        execv(argv[0], argv);
        _exit(121);
    }
    return pid;
}

int fs_prog_run(char *const argv[], const char *const *envs, const char *o,
                const char *e, int flags, unsigned ms, int *signaled)
{
    pid_t pid = fs_prog_start(argv, envs, o, e, flags);
    int code = -1;
    enum fs_wait_result r = fs_wait(pid, ms, &code);
    if (r == FS_HUNG)
        fprintf(stderr, "hung: %s %s\n", argv[0], argv[1] ? argv[1] : "");
    assert_int_not_equal(r, FS_HUNG);
    if (signaled)
        *signaled = r == FS_SIGNALED;
    return r == FS_EXITED ? code : 128 + code;
}

char *fs_slurp_alloc(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    if (f) {
        size_t got;
        while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
            n += got;
            if (cap - n <= 1) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
        }
        fclose(f);
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}
