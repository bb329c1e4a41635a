/* SPDX-License-Identifier: MIT */
/* target-emfile.c: a fork made when the process is out of descriptors.
   A thread holds a mutex; the main thread lowers RLIMIT_NOFILE, fills
   every descriptor, forks, and the child locks the mutex. The audit cannot
   open /proc/self/task to count threads, and must still treat the child
   as the child of a multi-threaded fork: under forksafe-audit the child is
   ended with status 86 after the grace period (without the audit it
   hangs, and this program kills it after 10 s). Exits 0 when the child
   ended with 86. */
#include "target-util.h"

#include <sys/resource.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int go[2];

static void *holder_main(void *arg)
{
    char c;
    (void)arg;
    pthread_mutex_lock(&mu);
    if (write(go[1], "h", 1) != 1)
        exit(92);
    while (read(target_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(void)
{
    char c;
    if (pipe(target_pipe) != 0 || pipe(go) != 0 ||
        pthread_create(&target_thread, NULL, holder_main, NULL) != 0 ||
        read(go[0], &c, 1) != 1)
        return 1;
    struct rlimit rl = {64, 64};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 4;
    int filled[64], n = 0;
    while (n < 64 && (filled[n] = dup(0)) >= 0)
        n++;
    if (errno != EMFILE)
        return 5;
    pid_t pid = fork();
    if (pid == 0) {
        pthread_mutex_lock(&mu); /* held by a thread the child does not have */
        _exit(0);
    }
    int st = target_wait(pid, 10000);
    while (n > 0)
        close(filled[--n]);
    target_parked_stop();
    return st == 86 ? 0 : 3;
}
