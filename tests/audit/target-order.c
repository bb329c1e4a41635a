/* SPDX-License-Identifier: MIT */
/* target-order.c: lock-order-violation only. Two registered mutexes are
   taken against rank order (rank APP+200 held, then APP+100 taken) by one
   thread; no fork, no other thread. */
#include <forksafe.h>

static pthread_mutex_t outer = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t inner = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) static void take_inner(void)
{
    pthread_mutex_lock(&inner);
    pthread_mutex_unlock(&inner);
}

int main(void)
{
    if (forksafe_register_mutex(&outer, "order.cache",
                                FORKSAFE_RANK_APP + 200) ||
        forksafe_register_mutex(&inner, "order.queue", FORKSAFE_RANK_APP + 100))
        return 1;
    pthread_mutex_lock(&outer);
    take_inner();
    pthread_mutex_unlock(&outer);
    return 0;
}
