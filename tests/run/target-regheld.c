/* SPDX-License-Identifier: MIT */
/* target-regheld: a mutex registered with libforksafe is held by another
 * thread across a blocking read; the main thread calls fork(). Under
 * forksafe-run --timeout-ms 200 the fork should go ahead after about 200 ms
 * (reported as timeout); prints how long fork() took. Exits 0 if under
 * 2000 ms. */
#include <forksafe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static pthread_mutex_t R = PTHREAD_MUTEX_INITIALIZER;
static int ready[2], go[2];
static void *holder(void *a)
{
    (void)a;
    char c;
    pthread_mutex_lock(&R);
    if (write(ready[1], "x", 1) != 1 || read(go[0], &c, 1) < 0)
        abort();
    pthread_mutex_unlock(&R);
    return NULL;
}
int main(void)
{
    if (forksafe_register_mutex(&R, "adv.registry-held", 10))
        return 9;
    pthread_t t;
    char c;
    if (pipe(ready) || pipe(go))
        return 9;
    pthread_create(&t, NULL, holder, NULL);
    if (read(ready[0], &c, 1) != 1)
        return 9;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t p = fork();
    if (p == 0)
        _exit(0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    waitpid(p, NULL, 0);
    long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    printf("regheld: fork took %ld ms\n", ms);
    if (write(go[1], "x", 1) != 1)
        return 9;
    pthread_join(t, NULL);
    return ms >= 2000;
}
