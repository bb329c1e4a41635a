/* SPDX-License-Identifier: MIT */
/*
 * hostile-order.c: rank order against the audit's lock-order-violation
 * rule (tests/audit/test-audit-hostile-locks.c). Two registered mutexes,
 * high (rank APP+200) held while low (APP+100) is taken. argv[1]:
 *   lock     low taken with pthread_mutex_lock: the rule must fire;
 *   trylock  low taken with pthread_mutex_trylock, which never waits: a
 *            fork's prepare holding low and waiting for high cannot
 *            deadlock with it (the trylock fails and the thread backs
 *            off), the classic way to take locks against their order.
 *   try-middle
 *            high held, low taken with pthread_mutex_trylock (no pair),
 *            then mid (rank APP+150) with pthread_mutex_lock: mid is
 *            taken, blocking, while high (a higher rank) is held.
 * No fork, no other thread. Exits 0 when every call did what POSIX says.
 */
#include <forksafe.h>

#include <errno.h>
#include <string.h>

static pthread_mutex_t high = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t low = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t mid = PTHREAD_MUTEX_INITIALIZER;

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    if (forksafe_register_mutex(&high, "hostile.high",
                                FORKSAFE_RANK_APP + 200) ||
        forksafe_register_mutex(&low, "hostile.low", FORKSAFE_RANK_APP + 100) ||
        forksafe_register_mutex(&mid, "hostile.mid", FORKSAFE_RANK_APP + 150))
        return 1;
    if (strcmp(argv[1], "try-middle") == 0) {
        pthread_mutex_lock(&high);
        if (pthread_mutex_trylock(&low) != 0)
            return 3;
        pthread_mutex_lock(&mid);
        pthread_mutex_unlock(&mid);
        pthread_mutex_unlock(&low);
        pthread_mutex_unlock(&high);
        return 0;
    }
    pthread_mutex_lock(&high);
    int r = strcmp(argv[1], "trylock") == 0 ? pthread_mutex_trylock(&low)
                                            : pthread_mutex_lock(&low);
    if (r != 0)
        return 3;
    pthread_mutex_unlock(&low);
    pthread_mutex_unlock(&high);
    return 0;
}
