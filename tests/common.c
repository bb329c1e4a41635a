/* tests/common.c: watchdog, bounded child waits and an idle thread. */
#include "common.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
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
    pthread_mutex_lock(&idle_mu);
    idle_stop = 1;
    pthread_cond_signal(&idle_cv);
    pthread_mutex_unlock(&idle_mu);
    pthread_join(idle_thread, NULL);
    idle_running = 0;
}
