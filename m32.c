#include <stdio.h>
#include <time.h>
static long ms_of(const struct timespec *t){ return (long)t->tv_sec * 1000 + t->tv_nsec / 1000000 + 1; }
int main(void){ struct timespec t={2200000,0}; printf("sizeof(long)=%zu ms_of(2200000 s)=%ld\n", sizeof(long), ms_of(&t)); t.tv_sec=4294968; printf("ms_of(4294968 s)=%ld\n", ms_of(&t)); }
