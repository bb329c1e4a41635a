/* SPDX-License-Identifier: MIT */
/* target-shared.c: unregistered-shared-lock only. Two threads use one
   mutex that is not registered with forksafe; no fork. */
#include <pthread.h>

static pthread_mutex_t shared = PTHREAD_MUTEX_INITIALIZER;
static int n;

__attribute__((noinline)) static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100; i++) {
        pthread_mutex_lock(&shared);
        n++;
        pthread_mutex_unlock(&shared);
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, bump, NULL) != 0)
        return 1;
    pthread_join(t, NULL);
    bump(NULL);
    /* Destroyed before exit: still reported (it was shared while alive). */
    pthread_mutex_destroy(&shared);
    return n == 200 ? 0 : 2;
}
