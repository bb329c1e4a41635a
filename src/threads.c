/* SPDX-License-Identifier: MIT */
/*
 * threads.c: the thread census and what a thread is doing, read from
 * /proc/self. Nothing here allocates, so these may be called on the slow
 * path of prepare (a registered lock found busy).
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Read up to len-1 bytes of path into buf, NUL-terminated. Returns the
   number of bytes read or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    while (n + 1 < len) {
        ssize_t r = read(fd, buf + n, len - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    int err = errno;
    close(fd);
    buf[n] = '\0';
    return n ? (ssize_t)n : -err;
}

/* The number of field `field` (1-based, proc(5)) of a /proc stat line, or
   -1. The comm field (2) may contain spaces and parentheses, so count from
   the last ')'. */
static long stat_field(char *buf, int field)
{
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    int at = 2;
    while (*p && at < field) {
        if (*p++ == ' ')
            at++;
    }
    char *end;
    long v = strtol(p, &end, 10);
    return end == p || v < 0 ? -1 : v;
}

/* struct linux_dirent64, as getdents64() fills it. */
struct task_dirent {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

/* PF_EXITING (Linux include/linux/sched.h, the same value since 2.6): set
   on a thread at the start of do_exit(), before the kernel clears the TID
   word that pthread_join() waits for. A thread with it set never runs user
   code again. */
#define FS_PF_EXITING 0x4u

/* 1 if thread `tid` (its /proc/self/task name) is gone or has begun to
   exit, 0 if it lives or its flags cannot be read for another reason. */
static int task_exiting(const char *tid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
    ssize_t n = read_small(path, buf, sizeof buf);
    if (n == -ENOENT || n == -ESRCH)
        return 1; /* released while we looked */
    long flags = n > 0 ? stat_field(buf, 9) : -1;
    return flags >= 0 && ((unsigned long)flags & FS_PF_EXITING);
}

/* The threads of this process that have not begun to exit, counted up to
   max, or -errno. The thread count in /proc/self/stat (field 20,
   num_threads) also counts a thread that has exited until the kernel has
   released it, a moment after pthread_join() returned for it; so when it
   says more than one, each thread's flags (field 9 of
   /proc/self/task/TID/stat) are read, and those exiting are left out. A
   thread whose flags cannot be read for another reason than its being
   gone is counted. Nothing is allocated: this runs on prepare's slow
   path. */
int forksafe__threads_alive(int max)
{
    char buf[1024];
    ssize_t n = read_small("/proc/self/stat", buf, sizeof buf);
    if (n < 0)
        return (int)n;
    long all = stat_field(buf, 20);
    if (all <= 0)
        return -EIO;
    if (all == 1)
        return 1;
    int dfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return all > INT_MAX ? INT_MAX : (int)all;
    int alive = 0;
    _Alignas(8) char ents[2048];
    long got = 0;
    while (alive < max &&
           (got = syscall(SYS_getdents64, dfd, ents, sizeof ents)) > 0) {
        for (long at = 0; at < got && alive < max;) {
            const struct task_dirent *d =
                (const struct task_dirent *)(const void *)(ents + at);
            at += d->reclen;
            if (d->name[0] < '0' || d->name[0] > '9')
                continue;
            if (!task_exiting(d->name))
                alive++;
        }
    }
    close(dfd);
    /* A listing that failed half-way counts what it did not see. */
    if (got < 0 && alive < max)
        alive = all > INT_MAX ? INT_MAX : (int)all;
    return alive > 0 ? alive : 1;
}

int forksafe_thread_count(void)
{
    return forksafe__threads_alive(INT_MAX);
}

/* /proc/self/maps, one line per mapping: "start-end perms offset dev
   inode path" (proc(5)); perms[3] is 's' for a shared mapping. Read in
   blocks into a fixed buffer: nothing is allocated. */
int forksafe__in_shared_mapping(const void *addr)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uintptr_t a = (uintptr_t)addr;
    char buf[4096];
    size_t have = 0;
    int found = -1;
    while (found < 0) {
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf, *nl;
        while (found < 0 && (nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            char *end;
            unsigned long lo = strtoul(line, &end, 16);
            if (*end == '-') {
                unsigned long hi = strtoul(end + 1, &end, 16);
                if (a >= lo && a < hi && *end == ' ' && strlen(end) > 4)
                    found = end[4] == 's';
            }
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof buf - 1)
            have = 0; /* a line longer than the buffer: skip it */
    }
    close(fd);
    return found > 0;
}

void forksafe__thread_name(pid_t tid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    if (read_small(path, buf, len) <= 0) {
        snprintf(buf, len, "?");
        return;
    }
    buf[strcspn(buf, "\n")] = '\0';
}

int forksafe__threads_visit(void (*fn)(pid_t tid, void *arg), void *arg)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return errno;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        if (*end == '\0' && tid > 0 && !task_exiting(de->d_name))
            fn((pid_t)tid, arg);
    }
    closedir(d);
    return 0;
}

int forksafe__thread_activity(pid_t tid, uintptr_t *addr)
{
    /* /proc/PID/task/TID/syscall (proc(5)): "running" on a CPU, "-1 SP PC"
       outside any system call, else "NR ARG1 ... ARG6 SP PC" in hex. */
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return FS_TS_UNKNOWN;
    if (strncmp(buf, "running", 7) == 0)
        return FS_TS_RUNNING;
    char *end;
    long nr = strtol(buf, &end, 10);
    if (end == buf)
        return FS_TS_UNKNOWN;
    if (nr < 0)
        return FS_TS_RUNNING;
#ifdef SYS_nanosleep
    if (nr == SYS_nanosleep)
        return FS_TS_SLEEPING;
#endif
#ifdef SYS_clock_nanosleep
    if (nr == SYS_clock_nanosleep)
        return FS_TS_SLEEPING;
#endif
#ifdef SYS_clock_nanosleep_time64
    if (nr == SYS_clock_nanosleep_time64)
        return FS_TS_SLEEPING;
#endif
    int futex = 0;
#ifdef SYS_futex
    futex |= nr == SYS_futex;
#endif
#ifdef SYS_futex_time64
    futex |= nr == SYS_futex_time64;
#endif
    if (!futex)
        return FS_TS_OTHER;
    unsigned long long a = strtoull(end, &end, 16);
    *addr = (uintptr_t)a;
    return FS_TS_FUTEX;
}
