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

int forksafe_thread_count(void)
{
    /* Field 20 of /proc/self/stat is num_threads (proc(5)). The comm field
       (2) may contain spaces and parentheses, so count from the last ')'. */
    char buf[1024];
    ssize_t n = read_small("/proc/self/stat", buf, sizeof buf);
    if (n < 0)
        return (int)n;
    char *p = strrchr(buf, ')');
    if (!p)
        return -EIO;
    int field = 2;
    while (*p && field < 20) {
        if (*p++ == ' ')
            field++;
    }
    long v = strtol(p, NULL, 10);
    return v > 0 ? (int)v : -EIO;
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
        if (*end == '\0' && tid > 0)
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
