/* SPDX-License-Identifier: MIT */
/* target-atfork: a pthread_atfork prepare handler itself forks (once) while
 * another thread takes mutexes; the outer fork must then complete and both
 * children exit 0. Exits 0 if all went well within the watchdog. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static atomic_int stop;
static int inner_ok = -1, depth;
static void *worker(void *a)
{
    (void)a;
    while (!atomic_load(&stop)) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    return NULL;
}
/* Fork a child that takes m (ended by alarm if m stays locked); 1 if it
   exited 0. */
static int child_takes_m(void)
{
    pid_t p = fork();
    if (p == 0) {
        alarm(3);
        pthread_mutex_lock(&m);
        _exit(0);
    }
    int st;
    return waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void prepare(void)
{
    if (depth++)
        return;
    inner_ok = child_takes_m();
}
int main(void)
{
    alarm(20);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_atfork(prepare, NULL, NULL);
    int outer_ok = child_takes_m();
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("inner child ok %d, outer child ok %d\n", inner_ok, outer_ok);
    return !(inner_ok == 1 && outer_ok);
}
