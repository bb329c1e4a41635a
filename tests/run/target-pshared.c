/* SPDX-License-Identifier: MIT */
/* target-pshared: a process-shared mutex in MAP_SHARED memory is held by
 * another process (a helper child, forked before any thread exists). A
 * thread of the program blocks taking it; it holds no other lock. The main
 * thread forks. No thread of this process holds a lock, so the fork has
 * nothing to wait for (and the taker does not exist in the child). Exits 0
 * if the fork took under 500 ms; run with --timeout-ms 3000. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static pthread_mutex_t *mu;
static void *taker(void *a)
{
    (void)a;
    pthread_mutex_lock(mu);
    return NULL;
}
int main(void)
{
    mu = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
              -1, 0);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(mu, &ma);
    int ready[2];
    char c;
    if (pipe(ready))
        return 9;
    pid_t owner = fork(); /* single-threaded: nothing to wait for */
    if (owner == 0) {
        pthread_mutex_lock(mu);
        if (write(ready[1], "x", 1) != 1)
            _exit(9);
        pause();
        _exit(0);
    }
    if (read(ready[0], &c, 1) != 1)
        return 9;
    pthread_t t;
    pthread_create(&t, NULL, taker, NULL);
    usleep(200000); /* the taker is now asleep in pthread_mutex_lock */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    int st;
    waitpid(p, &st, 0);
    kill(owner, SIGKILL);
    waitpid(owner, NULL, 0);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    printf("pshared: fork took %ld ms, child status %d\n", ms, st);
    return !(ms < 500 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
