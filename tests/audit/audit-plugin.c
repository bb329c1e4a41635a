/* SPDX-License-Identifier: MIT */
/* audit-plugin.c: a library that target-robust dlopen()s after start. Its
   constructor registers raw fork handlers; plugin_count(which) says how
   many times the prepare (0), parent (1) or child (2) handler ran, under
   its own mutex. plugin_sem() hands out a semaphore in its data, which
   target-release takes and then unloads with the library. */
#include <pthread.h>
#include <semaphore.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int counts[3];

static void on_prepare(void)
{
    counts[0]++;
}
static void on_parent(void)
{
    counts[1]++;
}
static void on_child(void)
{
    counts[2]++;
}

__attribute__((constructor)) static void plugin_init(void)
{
    pthread_atfork(on_prepare, on_parent, on_child);
}

int plugin_count(int which);
int plugin_count(int which)
{
    pthread_mutex_lock(&mu);
    int n = counts[which];
    pthread_mutex_unlock(&mu);
    return n;
}

static sem_t sem;

sem_t *plugin_sem(void);
sem_t *plugin_sem(void)
{
    sem_init(&sem, 0, 1);
    return &sem;
}
