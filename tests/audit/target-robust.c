/* SPDX-License-Identifier: MIT */
/* target-robust.c: process-creation paths the interposer must survive
   without changing behaviour. argv[1] picks one: signal (fork from a
   signal handler, while another thread is alive), vfork, spawn
   (posix_spawn), _Fork, clone (a raw clone() thread alive at fork) and
   dlopen (a library loaded after start that registers fork handlers).
   Prints one line and exits 0 when the path worked. */
#include "target-util.h"

#include <dlfcn.h>
#include <linux/futex.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

extern char **environ;

static volatile sig_atomic_t child_pid;

static void on_usr1(int sig)
{
    (void)sig;
    pid_t p = fork();
    if (p == 0)
        target_run_on_exit(7);
    child_pid = p;
}

static int mode_signal(void)
{
    target_parked_start();
    signal(SIGUSR1, on_usr1);
    raise(SIGUSR1);
    int st = target_wait(child_pid, 5000);
    target_parked_stop();
    return st == 7 ? 0 : 10;
}

static int mode_vfork(void)
{
    pid_t p = vfork();
    if (p == 0) {
        execl("/bin/sh", "sh", "-c", "exit 5", (char *)NULL);
        _exit(127);
    }
    return p > 0 && target_wait(p, 5000) == 5 ? 0 : 11;
}

static int mode_spawn(void)
{
    pid_t p;
    char *argv[] = {"sh", "-c", "exit 6", NULL};
    if (posix_spawn(&p, "/bin/sh", NULL, NULL, argv, environ) != 0)
        return 12;
    return target_wait(p, 5000) == 6 ? 0 : 13;
}

static int mode_Fork(void)
{
    target_parked_start();
    pid_t p = _Fork();
    if (p == 0)
        target_run_on_exit(9);
    int st = target_wait(p, 5000);
    target_parked_stop();
    return st == 9 ? 0 : 14;
}

static volatile int clone_go, clone_runs;
static pid_t clone_ctid;

static int clone_main(void *arg)
{
    (void)arg;
    __atomic_store_n(&clone_runs, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&clone_go, __ATOMIC_ACQUIRE))
        syscall(SYS_sched_yield);
    return 0;
}

static int mode_clone(void)
{
    static char stack[64 * 1024] __attribute__((aligned(16)));
    int flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND |
                CLONE_THREAD | CLONE_SYSVSEM | CLONE_CHILD_CLEARTID |
                CLONE_PARENT_SETTID;
    pid_t tid = clone(clone_main, stack + sizeof stack, flags, NULL,
                      &clone_ctid, NULL, &clone_ctid);
    if (tid < 0)
        return 15;
    while (!__atomic_load_n(&clone_runs, __ATOMIC_ACQUIRE))
        sched_yield();
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&m);
    pthread_mutex_unlock(&m);
    pid_t p = fork();
    if (p == 0)
        target_run_on_exit(3);
    int st = target_wait(p, 5000);
    __atomic_store_n(&clone_go, 1, __ATOMIC_RELEASE);
    /* The kernel clears clone_ctid and wakes us when the thread is gone. */
    while (__atomic_load_n(&clone_ctid, __ATOMIC_ACQUIRE) != 0)
        syscall(SYS_futex, &clone_ctid, FUTEX_WAIT, tid, NULL, NULL, 0);
    return st == 3 ? 0 : 16;
}

static int mode_dlopen(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/audit-plugin.so", dir);
    void *h = dlopen(path, RTLD_NOW);
    if (!h)
        return 17;
    int (*count)(int) = (int (*)(int))dlsym(h, "plugin_count");
    if (!count || count(0) != 0)
        return 18;
    pid_t p = fork();
    if (p == 0)
        _exit(count(2) == 1 ? 0 : 1); /* the plugin's child handler ran */
    int st = target_wait(p, 5000);
    return st == 0 && count(1) == 1 ? 0 : 19;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    const char *m = argv[1];
    int r = strcmp(m, "signal") == 0   ? mode_signal()
            : strcmp(m, "vfork") == 0  ? mode_vfork()
            : strcmp(m, "spawn") == 0  ? mode_spawn()
            : strcmp(m, "_Fork") == 0  ? mode_Fork()
            : strcmp(m, "clone") == 0  ? mode_clone()
            : strcmp(m, "dlopen") == 0 ? mode_dlopen(argc > 2 ? argv[2] : ".")
                                       : 2;
    printf("%s: %s\n", m, r == 0 ? "ok" : "failed");
    return r;
}
