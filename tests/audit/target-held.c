/* SPDX-License-Identifier: MIT */
/* target-held.c: lock-held-at-fork (with its prerequisite,
   fork-with-threads). A helper thread holds an unregistered mutex while
   the main thread forks; with argv[1] == "deadlock" the child then locks
   it, which forksafe-audit reports as child-deadlock and ends with status
   86 (without the audit the child would hang; the parent kills it). With
   "pshared" the mutex is process-shared, in shared memory: the child waits
   for it longer than the grace period and gets it when the parent's thread
   lets go, so it must not be ended. Otherwise the child runs on without
   touching it (takes a lock of its own), except with "exit-only", where
   it only calls _exit. */
#include "target-util.h"

#include <string.h>
#include <sys/mman.h>

static pthread_mutex_t m_private = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t *mp = &m_private;
static int go[2];

static void *holder_main(void *arg)
{
    char c;
    (void)arg;
    pthread_mutex_lock(mp);
    if (write(go[1], "h", 1) != 1)
        exit(92);
    while (read(target_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    pthread_mutex_unlock(mp);
    return NULL;
}

int main(int argc, char **argv)
{
    int deadlock = argc > 1 && strcmp(argv[1], "deadlock") == 0;
    int pshared = argc > 1 && strcmp(argv[1], "pshared") == 0;
    int exit_only = argc > 1 && strcmp(argv[1], "exit-only") == 0;
    char c;
    if (pshared) {
        pthread_mutexattr_t a;
        mp = mmap(NULL, sizeof *mp, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mp == MAP_FAILED || pthread_mutexattr_init(&a) != 0 ||
            pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) != 0 ||
            pthread_mutex_init(mp, &a) != 0)
            return 4;
    }
    if (pipe(target_pipe) != 0 || pipe(go) != 0 ||
        pthread_create(&target_thread, NULL, holder_main, NULL) != 0 ||
        read(go[0], &c, 1) != 1)
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        if (deadlock || pshared)
            pthread_mutex_lock(mp); /* deadlock: never returns unaudited */
        if (exit_only)
            _exit(0);
        target_run_on_exit(0);
    }
    if (pshared) {
        /* Let the child wait well past the tests' grace period first. */
        struct timespec d = {0, 600 * 1000 * 1000};
        nanosleep(&d, NULL);
        target_parked_stop();
        return target_wait(pid, 10000) == 0 ? 0 : 5;
    }
    int st = target_wait(pid, 10000);
    target_parked_stop();
    if (deadlock)
        return st == 86 ? 0 : 3; /* FORKSAFE_AUDIT_DEADLOCK_STATUS */
    return st == 0 ? 0 : 2;
}
