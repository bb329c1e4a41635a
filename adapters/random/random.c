/* SPDX-License-Identifier: MIT */
/*
 * adapters/random/random.c: the PRNG-state adapter. Before each fork it
 * points random()'s state at a freshly seeded private buffer, restores the
 * application's state in the parent, and leaves the fresh one to the
 * child; the child also reseeds drand48().
 *
 * DESIGN. The switch happens in the parent, where glibc's random lock
 * works normally, so the child never has to take that lock (it may be
 * held by a thread that no longer exists there). Forks are serialised by
 * the core, so the saved state needs no lock of its own.
 */
#include <forksafe/random.h>

#include "../common/adapter.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* The child's random() state: must be static storage, since the child
   keeps using it. 128 bytes is glibc's default generator (TYPE_3). */
static char s_child_state[128] __attribute__((aligned(8)));
static char *s_saved;    /* the application's state, between prepare/parent */
static uint64_t s_forks; /* mixed into a fallback seed */

/* Fill buf from getrandom(); when it cannot (no entropy yet, seccomp),
   fall back to the clock, the PID and a counter, which still differ from
   one child to the next. Only system calls: safe in the child. */
static void seed_bytes(void *buf, size_t len)
{
    ssize_t got = getrandom(buf, len, GRND_NONBLOCK);
    if (got == (ssize_t)len)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                 ((uint64_t)getpid() << 17) ^ (++s_forks * 0x9e3779b97f4a7c15u);
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdu;
        x ^= x >> 29;
        p[i] = (unsigned char)x;
    }
}

static int random_prepare(const struct timespec *deadline)
{
    (void)deadline;
    unsigned seed;
    seed_bytes(&seed, sizeof seed);
    /* initstate() returns the state in use, in the form setstate() takes
       back (the glibc and POSIX protocol for switching generators). */
    s_saved = initstate(seed, s_child_state, sizeof s_child_state);
    return 0;
}

static void random_parent(void)
{
    if (s_saved != NULL)
        setstate(s_saved);
    s_saved = NULL;
}

static void random_child(void)
{
    s_saved = NULL;
    unsigned short x[3];
    seed_bytes(x, sizeof x);
    seed48(x);
#ifndef __GLIBC__
    /* musl's rand() is a generator of its own (glibc's is random()): a
       64-bit word and no lock, so srand() is a plain store here. */
    unsigned r;
    seed_bytes(&r, sizeof r);
    srand(r);
#endif
}

static const struct forksafe__adapter_hooks hooks = {
    .prepare = random_prepare,
    .parent = random_parent,
    .child = random_child,
};
FORKSAFE__ADAPTER_DEFINE(random, "random", FORKSAFE_RANDOM_RANK, &hooks)
