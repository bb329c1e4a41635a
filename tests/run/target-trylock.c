/* SPDX-License-Identifier: MIT */
/* target-trylock: while a fork waits for a lock holder (a thread holding
 * mutex H for 2 s; run with --timeout-ms 3000), another thread that holds
 * nothing calls the try and timed lock functions on free locks. Each must
 * take its lock, at once for the tries and within about its deadline for
 * the timed ones (never ETIMEDOUT on a free lock), and EBUSY must still
 * come back at once for the held H. Prints one line per call
 * ("NAME: ret R, N ms") and exits 0 if every call behaved. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t H = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t F = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t RW = PTHREAD_RWLOCK_INITIALIZER;
static int ready[2];
static int bad;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void *holder(void *a)
{
    (void)a;
    pthread_mutex_lock(&H);
    if (write(ready[1], "x", 1) != 1)
        _exit(9);
    usleep(2000 * 1000);
    pthread_mutex_unlock(&H);
    return NULL;
}

static struct timespec in_ms(clockid_t c, int ms)
{
    struct timespec t;
    clock_gettime(c, &t);
    t.tv_nsec += (long)ms * 1000000;
    t.tv_sec += t.tv_nsec / 1000000000;
    t.tv_nsec %= 1000000000;
    return t;
}

/* One call: its result must be want, within max_ms. */
static void check(const char *name, int ret, double t0, int want, int max_ms)
{
    double ms = now_ms() - t0;
    printf("%s: ret %d, %.0f ms\n", name, ret, ms);
    if (ret != want || ms > max_ms)
        bad = 1;
}

static void *tester(void *a)
{
    (void)a;
    usleep(300 * 1000); /* the fork is waiting for H's holder now */
    struct timespec d = in_ms(CLOCK_REALTIME, 50);
    double t0 = now_ms();
    int r;
    r = pthread_mutex_timedlock(&F, &d);
    check("timedlock", r, t0, 0, 700);
    if (r == 0)
        pthread_mutex_unlock(&F);
    t0 = now_ms();
    r = pthread_mutex_trylock(&F);
    check("trylock", r, t0, 0, 500);
    if (r == 0)
        pthread_mutex_unlock(&F);
    t0 = now_ms();
    check("trylock-held", pthread_mutex_trylock(&H), t0, EBUSY, 500);
    d = in_ms(CLOCK_MONOTONIC, 50);
    t0 = now_ms();
    r = pthread_mutex_clocklock(&F, CLOCK_MONOTONIC, &d);
    check("clocklock", r, t0, 0, 700);
    if (r == 0)
        pthread_mutex_unlock(&F);
    d = in_ms(CLOCK_REALTIME, 50);
    t0 = now_ms();
    check("timedlock-held", pthread_mutex_timedlock(&H, &d), t0, ETIMEDOUT,
          700);
    t0 = now_ms();
    r = pthread_rwlock_tryrdlock(&RW);
    check("tryrdlock", r, t0, 0, 500);
    if (r == 0)
        pthread_rwlock_unlock(&RW);
    t0 = now_ms();
    r = pthread_rwlock_trywrlock(&RW);
    check("trywrlock", r, t0, 0, 500);
    if (r == 0)
        pthread_rwlock_unlock(&RW);
    d = in_ms(CLOCK_REALTIME, 50);
    t0 = now_ms();
    r = pthread_rwlock_timedwrlock(&RW, &d);
    check("timedwrlock", r, t0, 0, 700);
    if (r == 0)
        pthread_rwlock_unlock(&RW);
    return NULL;
}

int main(void)
{
    alarm(30);
    char c;
    if (pipe(ready))
        return 9;
    pthread_t h, t;
    pthread_create(&h, NULL, holder, NULL);
    if (read(ready[0], &c, 1) != 1)
        return 9;
    pthread_create(&t, NULL, tester, NULL);
    double t0 = now_ms();
    pid_t p = fork();
    if (p == 0) {
        alarm(5);
        pthread_mutex_lock(&H);
        _exit(0);
    }
    double ms = now_ms() - t0;
    int st;
    waitpid(p, &st, 0);
    pthread_join(t, NULL);
    pthread_join(h, NULL);
    printf("trylock: fork took %.0f ms, child %s\n", ms,
           WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "ok" : "hung");
    return bad || !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
