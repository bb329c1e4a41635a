/* SPDX-License-Identifier: MIT */
/* run-slow-ctor.c: a library whose constructor takes 800 ms, so that a
   thread is inside dlopen() (holding libc's loader lock) for that long. */
#include <time.h>

int run_slow_ctor_marker;

__attribute__((constructor)) static void slow(void)
{
    struct timespec d = {0, 800 * 1000 * 1000};
    nanosleep(&d, NULL);
}
