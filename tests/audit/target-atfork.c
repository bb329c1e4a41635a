/* SPDX-License-Identifier: MIT */
/* target-atfork.c: raw-atfork-handler only. Registers fork handlers with
   pthread_atfork directly, never forks. */
#include <pthread.h>

static volatile int calls;

void target_prepare(void);
void target_parent(void);
void target_child(void);
void target_prepare(void)
{
    calls++;
}
void target_parent(void)
{
    calls++;
}
void target_child(void)
{
    calls++;
}

int main(void)
{
    return pthread_atfork(target_prepare, target_parent, target_child) == 0 ? 0
                                                                            : 1;
}
