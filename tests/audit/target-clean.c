/* SPDX-License-Identifier: MIT */
/* target-clean.c: no fork hazard at all. A registered mutex is shared by
   two threads; the helper thread is joined before a single-threaded fork
   whose child only calls _exit. forksafe-audit must report nothing. */
#include "target-util.h"

#include <forksafe.h>
#include <stdio.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static int counter;

static void *worker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        pthread_mutex_lock(&m);
        counter++;
        pthread_mutex_unlock(&m);
    }
    return NULL;
}

int main(void)
{
    if (forksafe_register_mutex(&m, "clean.counter", FORKSAFE_RANK_APP) != 0)
        return 1;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 2;
    worker(NULL);
    pthread_join(t, NULL);
    printf("counter %d\n", counter);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid < 0 || target_wait(pid, 5000) != 0)
        return 3;
    return counter == 2000 ? 0 : 4;
}
