/* SPDX-License-Identifier: MIT */
/*
 * emit.c: how libforksafe-audit.so writes its records. Every process
 * appends one line per record to <FORKSAFE_AUDIT_DIR>/all.rec with a single
 * write(), so records of parents, forked children and exec'd programs never
 * interleave; each names its process, which announces itself with a
 * "proc" line before its first record. forksafe-audit reads the file when
 * the program has ended.
 *
 * DESIGN. This code runs in signal handlers and in children of
 * multi-threaded forks, so it never allocates and never takes a lock:
 * record buffers come from a static pool claimed with compare-and-swap, the
 * record file is opened for each record and closed after its one write()
 * (records are rare; a descriptor kept open would be visible to the
 * program and would enlarge the descriptor table that every fork copies),
 * and code addresses are turned into (object, offset) from /proc/self/maps with
 * raw system calls. A failure to write never changes the audited program's
 * behaviour or output, but it is not silent either: it is counted in the
 * run page (runpage.h), which needs no descriptor, and reported.
 *
 * Record syntax: TYPE then tab-separated fields. "key=value" is a string,
 * "key#=123" an integer, "key?=1" a boolean. In values, backslash, tab,
 * newline and carriage return are escaped as \\, \t, \n and \r, and
 * inside a frame's parts '|' is escaped as \|; every other byte is
 * written as it is (the CLI makes the JSON valid UTF-8).
 */
#include "preload.h"

#include "runpage.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define POOL 4

static struct forksafe__rec pool[POOL];
HOT static int pool_busy[POOL];

HOT static char out_dir[512];
HOT static int out_state; /* 0 unknown, 1 enabled, -1 disabled */
/* The pid that last wrote its "proc" line, and the pid this program image
   started in (after exec); a different pid means a forked child. */
HOT static long proc_pid;
HOT static long image_pid;

long forksafe__gettid(void)
{
    return syscall(SYS_gettid);
}

long forksafe__getpid(void)
{
    return syscall(SYS_getpid);
}

void forksafe__str_copy(char *dst, size_t len, const char *src)
{
    size_t i = 0;
    if (!len)
        return;
    for (; src && src[i] && i + 1 < len; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

void forksafe__str_cat(char *dst, size_t len, const char *src)
{
    size_t n = strlen(dst);
    if (n < len)
        forksafe__str_copy(dst + n, len - n, src);
}

size_t forksafe__fmt_dec(char *out, long v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

static size_t fmt_hex(char *out, uintptr_t v)
{
    char tmp[20];
    size_t n = 0, len = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    out[len++] = '0';
    out[len++] = 'x';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

/* The census's fast path, one system call and no descriptor: the link
   count of /proc/self/task is 2 plus the number of threads in the thread
   group (the kernel's proc_task_getattr), raw clone() threads included.
   Returns that number, or -1 when the stat fails (the fork census's full
   listing then decides). Also the child guard's check at the end of a
   grace period, and forksafe__open_spare()'s. */
int forksafe__task_count(void)
{
    struct stat st;
    if (stat("/proc/self/task", &st) != 0 || st.st_nlink < 3)
        return -1;
    return (int)(st.st_nlink - 2);
}

/* A process out of descriptors (EMFILE) still gets one when its soft
   RLIMIT_NOFILE is below the hard limit: the soft limit is raised by one
   for the open and put back at once. The descriptor has the lowest free
   number, as any other; the caller closes it before it returns to the
   program, so the program's table and limit are as they were. Only in a
   process with one thread (a watched child, a program that never started
   one), with every signal blocked meanwhile: no other code of the
   program can open a file, or set the limit, while it is raised. In any
   other case the open fails with EMFILE, as before. */
int forksafe__open_spare(const char *path, int flags, mode_t mode)
{
    int fd = open(path, flags, mode);
    if (fd >= 0 || errno != EMFILE)
        return fd;
    struct rlimit was;
    sigset_t all, old;
    sigfillset(&all);
    if (forksafe__task_count() != 1 ||
        pthread_sigmask(SIG_SETMASK, &all, &old) != 0) {
        errno = EMFILE;
        return -1;
    }
    fd = -1;
    int err = EMFILE;
    if (getrlimit(RLIMIT_NOFILE, &was) == 0 && was.rlim_cur != RLIM_INFINITY &&
        was.rlim_cur < was.rlim_max) {
        struct rlimit more = {was.rlim_cur + 1, was.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0) {
            fd = open(path, flags, mode);
            err = errno;
            setrlimit(RLIMIT_NOFILE, &was);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return fd;
}

int forksafe__proc_lines(const char *path, int (*fn)(char *line, void *arg),
                         void *arg)
{
    int fd = forksafe__open_spare(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    char chunk[2048], line[FORKSAFE_PROC_LINE];
    size_t ll = 0;
    int r = 0;
    while (!r) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n && !r; i++) {
            if (chunk[i] != '\n') {
                if (ll + 1 < sizeof line)
                    line[ll++] = chunk[i];
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            r = fn(line, arg);
        }
    }
    close(fd);
    return r;
}

long forksafe__read_small(const char *path, char *buf, size_t len)
{
    int fd = forksafe__open_spare(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -1;
    while (n > 0 && buf[n - 1] == '\n')
        n--;
    buf[n] = '\0';
    return n;
}

/* ------------------------------------------------------------ run page */

HOT static struct forksafe_runpage *run;

static void run_map(void)
{
    char path[sizeof out_dir + 16];
    forksafe__str_copy(path, sizeof path, out_dir);
    forksafe__str_cat(path, sizeof path, "/" FORKSAFE_RUNPAGE_NAME);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    /* The header is checked with pread, so that the page's first touch
       is the write below: one page fault instead of two (a read, then a
       write to the shared page), for every program image. */
    uint32_t head[2];
    void *p = MAP_FAILED;
    if (pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head &&
        head[0] == FORKSAFE_RUNPAGE_MAGIC && head[1] == FORKSAFE_RUNPAGE_SIZE)
        p = mmap(NULL, FORKSAFE_RUNPAGE_SIZE, PROT_READ | PROT_WRITE,
                 MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return;
    struct forksafe_runpage *rp = p;
    __atomic_add_fetch(&rp->images, 1, __ATOMIC_RELAXED);
    run = rp;
}

void forksafe__run_count_fork(void)
{
    if (run)
        __atomic_add_fetch(&run->forked, 1, __ATOMIC_RELAXED);
}

void forksafe__run_event(int type, int err)
{
    struct forksafe_runpage *rp = run;
    if (!rp)
        return;
    int32_t pid = (int32_t)forksafe__getpid();
    uint32_t n = __atomic_load_n(&rp->nevents, __ATOMIC_ACQUIRE);
    if (n > FORKSAFE_RUNPAGE_EVENTS)
        n = FORKSAFE_RUNPAGE_EVENTS;
    for (uint32_t i = 0; i < n; i++) {
        struct forksafe_runevent *e = &rp->ev[i];
        if (__atomic_load_n(&e->pid, __ATOMIC_ACQUIRE) == pid &&
            e->type == type && e->err == err) {
            __atomic_add_fetch(&e->count, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    uint32_t slot = __atomic_fetch_add(&rp->nevents, 1, __ATOMIC_ACQ_REL);
    if (slot >= FORKSAFE_RUNPAGE_EVENTS) {
        __atomic_add_fetch(&rp->dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    struct forksafe_runevent *e = &rp->ev[slot];
    e->type = type;
    e->err = err;
    e->count = 1;
    __atomic_store_n(&e->pid, pid, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ records */

/* The variable that names the record directory: the audit's unless the
   library's constructor chose another before its first record. */
HOT static const char *out_var = "FORKSAFE_AUDIT_DIR";

void forksafe__out_use_variable(const char *name)
{
    out_var = name;
}

void forksafe__out_init(void)
{
    if (__atomic_load_n(&out_state, __ATOMIC_ACQUIRE) != 0)
        return;
    /* getenv only reads environ; it is called before threads exist (from
       the constructor) or, at worst, racing with another first call that
       computes the same answer. */
    image_pid = forksafe__getpid();
    const char *d = getenv(out_var);
    int state = -1;
    if (d && *d && strlen(d) < sizeof out_dir - 32) {
        forksafe__str_copy(out_dir, sizeof out_dir, d);
        state = 1;
        run_map();
    }
    __atomic_store_n(&out_state, state, __ATOMIC_RELEASE);
}

long forksafe__out_image_pid(void)
{
    forksafe__out_init();
    return __atomic_load_n(&image_pid, __ATOMIC_ACQUIRE);
}

int forksafe__out_reachable(void)
{
    int saved = errno;
    int ok = !out_dir[0] || access(out_dir, W_OK | X_OK) == 0;
    errno = saved;
    return ok;
}

int forksafe__out_enabled(void)
{
    forksafe__out_init();
    return __atomic_load_n(&out_state, __ATOMIC_ACQUIRE) > 0;
}

static void put_escaped(struct forksafe__rec *r, const char *s, int frame);
static void put(struct forksafe__rec *r, const char *s, size_t n);

/* The start time of this process in clock ticks since boot (field 22 of
   /proc/self/stat): with the pid it names the process, so that the CLI
   can tell whether it is still running when the report is written. */
static long start_time(void)
{
    char buf[1024];
    if (forksafe__read_small("/proc/self/stat", buf, sizeof buf) < 0)
        return 0;
    char *p = strrchr(buf, ')'); /* the name may contain anything */
    if (!p)
        return 0;
    for (int field = 2; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    long v = 0;
    for (; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    return v;
}

/* The first line of every record file: who wrote it. It is written when
   the file is opened, so processes that have nothing to say (the common
   case for forked children that only exec or _exit) cost no file at all. */
static void write_proc(int fd, long pid, const char *start)
{
    static struct forksafe__rec line; /* under the caller's pool buffer */
    char exe[1024];
    long n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    line.len = 0;
    line.truncated = 0;
    put(&line, "proc", 4);
    forksafe__rec_int(&line, "pid", pid);
    forksafe__rec_int(&line, "ppid", getppid());
    forksafe__rec_int(&line, "starttime", start_time());
    forksafe__rec_str(&line, "exe", exe);
    forksafe__rec_str(&line, "start", start);
    line.buf[line.len++] = '\n';
    ssize_t w;
    do
        w = write(fd, line.buf, line.len);
    while (w < 0 && errno == EINTR);
}

/* Open this process's record file for one append. The descriptor lives
   only for the duration of one record: a program that counts, closes or
   reuses its descriptors never sees ours, and the kernel's descriptor table
   does not grow (which would make every later fork() slower). */
int forksafe__rec_written(void)
{
    /* 0: nothing was written since exec, in this process or before the
       fork that made it; no getpid needed (the common exit). */
    long p = __atomic_load_n(&proc_pid, __ATOMIC_ACQUIRE);
    return p && p == forksafe__getpid();
}

/* Every process appends to the same file: creating a file is the most
   expensive part of writing a record (a file system allocation), and
   short-lived forked children write one burst each. Each record is one
   write() with O_APPEND, which Linux makes atomic for regular files, so
   records of different processes never interleave; each carries its pid.
   The first writer creates the file; when the directory itself is gone
   (forksafe-audit has ended), the open fails and recording stops. */
static int open_record_file(void)
{
    char path[sizeof out_dir + 16];
    forksafe__str_copy(path, sizeof path, out_dir);
    forksafe__str_cat(path, sizeof path, "/" FORKSAFE_RECORDS_NAME);
    return forksafe__open_spare(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
                                0600);
}

/* A record could not be written because of err. Errors that say the
   directory is gone or unusable (forksafe-audit has ended and removed it,
   while a daemon lives on) stop recording for good; the others (out of
   descriptors, of memory, of space) only lose this record, and count it. */
static void out_failed(int err)
{
    if (err == ENOENT || err == ENOTDIR || err == EACCES || err == EROFS ||
        err == EPERM) {
        __atomic_store_n(&out_state, -1, __ATOMIC_RELEASE);
        return;
    }
    forksafe__run_event(FORKSAFE_RUN_LOST, err);
}

static int out_open(int count_failure)
{
    long pid = forksafe__getpid();
    int fd = open_record_file();
    if (fd < 0) {
        if (count_failure)
            out_failed(errno);
        return -1;
    }
    long prev = __atomic_load_n(&proc_pid, __ATOMIC_ACQUIRE);
    if (prev != pid &&
        __atomic_compare_exchange_n(&proc_pid, &prev, pid, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        write_proc(fd, pid, pid == image_pid ? "exec" : "fork");
    return fd;
}

struct forksafe__rec *forksafe__rec_begin(const char *type)
{
    if (!forksafe__out_enabled())
        return NULL;
    for (int i = 0; i < POOL; i++) {
        int expect = 0;
        if (__atomic_compare_exchange_n(&pool_busy[i], &expect, 1, 0,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            struct forksafe__rec *r = &pool[i];
            r->len = 0;
            r->truncated = 0;
            size_t n = strlen(type);
            memcpy(r->buf, type, n);
            r->len = n;
            return r;
        }
    }
    forksafe__run_event(FORKSAFE_RUN_LOST, 0);
    return NULL;
}

static void put(struct forksafe__rec *r, const char *s, size_t n)
{
    /* Keep two bytes for the newline and the terminator. */
    if (r->len + n + 2 > sizeof r->buf) {
        r->truncated = 1;
        n = sizeof r->buf - 2 - r->len;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

static void put_escaped(struct forksafe__rec *r, const char *s, int frame)
{
    for (; s && *s; s++) {
        const char *e = NULL;
        if (*s == '\t')
            e = "\\t";
        else if (*s == '\n')
            e = "\\n";
        else if (*s == '\r')
            e = "\\r";
        else if (*s == '\\')
            e = "\\\\";
        else if (*s == '|' && frame)
            e = "\\|";
        if (e)
            put(r, e, 2);
        else
            put(r, s, 1);
    }
}

static void put_key(struct forksafe__rec *r, const char *key, const char *type)
{
    put(r, "\t", 1);
    put(r, key, strlen(key));
    put(r, type, strlen(type));
    put(r, "=", 1);
}

void forksafe__rec_str(struct forksafe__rec *r, const char *key,
                       const char *value)
{
    put_key(r, key, "");
    put_escaped(r, value, 0);
}

void forksafe__rec_int(struct forksafe__rec *r, const char *key, long value)
{
    char num[24];
    put_key(r, key, "#");
    put(r, num, forksafe__fmt_dec(num, value));
}

void forksafe__rec_bool(struct forksafe__rec *r, const char *key, int value)
{
    put_key(r, key, "?");
    put(r, value ? "1" : "0", 1);
}

void forksafe__rec_hex(struct forksafe__rec *r, const char *key,
                       uintptr_t value)
{
    char num[24];
    put_key(r, key, "");
    put(r, num, fmt_hex(num, value));
}

void forksafe__rec_frame(struct forksafe__rec *r, const char *role, long tid,
                         const char *name, const void *addr)
{
    char obj[300], num[24];
    uintptr_t off = 0;
    if (!addr || forksafe__maps_find(addr, obj, sizeof obj, &off) != 0) {
        forksafe__str_copy(obj, sizeof obj, "?");
        off = (uintptr_t)addr;
    }
    put_key(r, "frame", "");
    put_escaped(r, role, 1);
    put(r, "|", 1);
    put(r, num, forksafe__fmt_dec(num, tid));
    put(r, "|", 1);
    put_escaped(r, name, 1);
    put(r, "|", 1);
    put_escaped(r, obj, 1);
    put(r, "|", 1);
    put(r, num, fmt_hex(num, off));
}

static void rec_write(struct forksafe__rec *r, int fd)
{
    ssize_t w;
    do
        w = write(fd, r->buf, r->len);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        out_failed(errno);
    close(fd);
}

static void rec_finish(struct forksafe__rec *r)
{
    if (r->truncated)
        put(r, "\ttruncated?=1", 13);
    r->buf[r->len++] = '\n';
}

static void rec_release(struct forksafe__rec *r)
{
    __atomic_store_n(&pool_busy[r - pool], 0, __ATOMIC_RELEASE);
}

/* Records that may come by the dozen from one short-lived process (the
   first call of each unsafe function in a forked child) are collected
   here and written with one write(): at the next other record, before
   the process forks, execs or exits, or when the buffer is full. */
static struct forksafe__rec batch;
HOT static int batch_busy;
HOT static long batch_pid; /* whose records they are: a vfork child shares
                          this memory and must not write them as its own */

static void batch_flush_locked(void)
{
    if (!batch.len)
        return;
    int fd = out_open(1);
    if (fd >= 0)
        rec_write(&batch, fd);
    batch.len = 0;
}

void forksafe__rec_flush(void)
{
    /* batch_pid (hot data) first: a process that never kept anything
       back touches neither the batch's page nor asks for its pid. */
    if (!batch_pid || !__atomic_load_n(&batch.len, __ATOMIC_ACQUIRE) ||
        batch_pid != forksafe__getpid())
        return;
    int expect = 0;
    if (!__atomic_compare_exchange_n(&batch_busy, &expect, 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    int saved = errno;
    batch_flush_locked();
    errno = saved;
    __atomic_store_n(&batch_busy, 0, __ATOMIC_RELEASE);
}

void forksafe__rec_end(struct forksafe__rec *r)
{
    if (!r)
        return;
    forksafe__rec_flush();
    rec_finish(r);
    int saved = errno;
    int fd = out_open(1);
    if (fd >= 0)
        rec_write(r, fd);
    errno = saved;
    rec_release(r);
}

void forksafe__rec_end_batched(struct forksafe__rec *r)
{
    if (!r)
        return;
    int expect = 0;
    if (!__atomic_compare_exchange_n(&batch_busy, &expect, 1, 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        forksafe__rec_end(r); /* another thread is batching: write now */
        return;
    }
    rec_finish(r);
    int saved = errno;
    long pid = forksafe__getpid();
    if (batch.len && batch_pid != pid)
        batch.len = 0; /* left by another process image: not ours */
    batch_pid = pid;
    if (batch.len + r->len > sizeof batch.buf)
        batch_flush_locked();
    memcpy(batch.buf + batch.len, r->buf, r->len);
    __atomic_store_n(&batch.len, batch.len + r->len, __ATOMIC_RELEASE);
    errno = saved;
    __atomic_store_n(&batch_busy, 0, __ATOMIC_RELEASE);
    rec_release(r);
}

void forksafe__rec_end_aside(struct forksafe__rec *r)
{
    if (!r)
        return;
    rec_finish(r);
    int saved = errno;
    int fd = open_record_file();
    if (fd >= 0)
        rec_write(r, fd);
    else
        out_failed(errno);
    errno = saved;
    rec_release(r);
}

void forksafe__rec_make_room(void)
{
    int saved = errno;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
    } else if (errno == EMFILE) {
        /* Out of descriptors, and about to _exit: giving one back cannot
           change what this process does any more. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 3)
            for (long f = (long)rl.rlim_cur - 1; f > 2; f--)
                if (close((int)f) == 0)
                    break;
    }
    errno = saved;
}

void forksafe__rec_end_final(struct forksafe__rec *r)
{
    if (!r)
        return;
    forksafe__rec_make_room();
    forksafe__rec_end(r);
}

/* ------------------------------------------------------------ maps */

static uintptr_t parse_hex(const char **p)
{
    uintptr_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        if (c >= '0' && c <= '9')
            v = v * 16 + (uintptr_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = v * 16 + (uintptr_t)(c - 'a' + 10);
        else
            return v;
    }
}

struct maps_ent {
    uintptr_t lo, hi, fileoff;
    int ready; /* 0 free, 2 being filled, 1 valid */
    char path[244];
};

/* The mappings found so far (file-backed ones only: code and the data of
   objects, which is what frames and atfork handles point into), so that
   most lookups need no read of /proc/self/maps, whose text is tens of
   kilobytes in a large program. A child of fork inherits the cache, which
   is right: its mappings are the parent's. munmap and dlclose invalidate
   what they overlap (forksafe__maps_forget). */
#define MAPS_CACHE 16
static struct maps_ent mcache[MAPS_CACHE];

static int cache_find(uintptr_t a, char *obj, size_t objlen, uintptr_t *off)
{
    for (int i = 0; i < MAPS_CACHE; i++) {
        struct maps_ent *e = &mcache[i];
        if (__atomic_load_n(&e->ready, __ATOMIC_ACQUIRE) != 1 || a < e->lo ||
            a >= e->hi)
            continue;
        forksafe__str_copy(obj, objlen, e->path);
        *off = a - e->lo + e->fileoff;
        /* Still the same mapping once copied (not invalidated meanwhile). */
        if (__atomic_load_n(&e->ready, __ATOMIC_ACQUIRE) == 1)
            return 1;
    }
    return 0;
}

static void cache_add(uintptr_t lo, uintptr_t hi, uintptr_t fileoff,
                      const char *path)
{
    if (path[0] != '/' || strlen(path) >= sizeof mcache[0].path)
        return;
    for (int i = 0; i < MAPS_CACHE; i++) {
        int expect = 0;
        struct maps_ent *e = &mcache[i];
        if (__atomic_load_n(&e->ready, __ATOMIC_ACQUIRE) != 0 ||
            !__atomic_compare_exchange_n(&e->ready, &expect, 2, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        e->lo = lo;
        e->hi = hi;
        e->fileoff = fileoff;
        forksafe__str_copy(e->path, sizeof e->path, path);
        __atomic_store_n(&e->ready, 1, __ATOMIC_RELEASE);
        return;
    }
}

void forksafe__maps_forget(uintptr_t lo, uintptr_t hi)
{
    for (int i = 0; i < MAPS_CACHE; i++) {
        struct maps_ent *e = &mcache[i];
        int expect = 1;
        if (__atomic_load_n(&e->ready, __ATOMIC_ACQUIRE) == 1 && e->lo < hi &&
            lo < e->hi)
            __atomic_compare_exchange_n(&e->ready, &expect, 0, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
}

/* Parse one maps line; returns 1 and fills obj/off (and the mapping's
   extent, when lo_out is not NULL) if it contains addr. */
static int maps_line(const char *line, uintptr_t a, char *obj, size_t objlen,
                     uintptr_t *off, uintptr_t *extent_lo, uintptr_t *extent_hi,
                     char *share)
{
    const char *p = line;
    uintptr_t lo = parse_hex(&p);
    if (*p++ != '-')
        return 0;
    uintptr_t hi = parse_hex(&p);
    if (a < lo || a >= hi)
        return 0;
    if (extent_lo) {
        *extent_lo = lo;
        *extent_hi = hi;
    }
    /* perms, offset, dev, inode, path */
    while (*p == ' ')
        p++;
    if (share && p[0] && p[1] && p[2] && p[3])
        *share = p[3]; /* "rw-s": 's' shared, 'p' private */
    while (*p && *p != ' ')
        p++;
    while (*p == ' ')
        p++;
    uintptr_t fileoff = parse_hex(&p);
    for (int field = 0; field < 2; field++) {
        while (*p == ' ')
            p++;
        while (*p && *p != ' ')
            p++;
    }
    while (*p == ' ')
        p++;
    forksafe__str_copy(obj, objlen, *p ? p : "[anon]");
    *off = a - lo + fileoff;
    if (*p)
        cache_add(lo, hi, fileoff, p);
    return 1;
}

static int maps_read(uintptr_t a, char *obj, size_t objlen, uintptr_t *off,
                     uintptr_t *lo, uintptr_t *hi, char *share);

/* Segments of objects unloaded by dlclose, most recent last (a ring):
   addresses recorded while they were loaded are still named after them. */
#define UNLOADED_MAX 128
static struct maps_ent unloaded[UNLOADED_MAX];
HOT static unsigned unloaded_n;

void forksafe__maps_note_unloaded(uintptr_t lo, uintptr_t hi,
                                  uintptr_t fileoff, const char *path)
{
    if (!path || path[0] != '/')
        return;
    unsigned i = __atomic_fetch_add(&unloaded_n, 1, __ATOMIC_ACQ_REL);
    struct maps_ent *e = &unloaded[i % UNLOADED_MAX];
    __atomic_store_n(&e->ready, 2, __ATOMIC_RELEASE);
    e->lo = lo;
    e->hi = hi;
    e->fileoff = fileoff;
    forksafe__str_copy(e->path, sizeof e->path, path);
    __atomic_store_n(&e->ready, 1, __ATOMIC_RELEASE);
}

static int unloaded_find(uintptr_t a, char *obj, size_t objlen, uintptr_t *off)
{
    unsigned n = __atomic_load_n(&unloaded_n, __ATOMIC_ACQUIRE);
    unsigned first = n > UNLOADED_MAX ? n - UNLOADED_MAX : 0;
    for (unsigned i = n; i-- > first;) {
        struct maps_ent *e = &unloaded[i % UNLOADED_MAX];
        if (__atomic_load_n(&e->ready, __ATOMIC_ACQUIRE) != 1 || a < e->lo ||
            a >= e->hi)
            continue;
        forksafe__str_copy(obj, objlen, e->path);
        *off = a - e->lo + e->fileoff;
        return 1;
    }
    return 0;
}

int forksafe__maps_find(const void *addr, char *obj, size_t objlen,
                        uintptr_t *off)
{
    uintptr_t a = (uintptr_t)addr;
    if (cache_find(a, obj, objlen, off))
        return 0;
    if (maps_read(a, obj, objlen, off, NULL, NULL, NULL) == 0)
        return 0;
    return unloaded_find(a, obj, objlen, off) ? 0 : -1;
}

int forksafe__maps_extent(const void *addr, uintptr_t *lo, uintptr_t *hi)
{
    char obj[8];
    uintptr_t off;
    return maps_read((uintptr_t)addr, obj, sizeof obj, &off, lo, hi, NULL);
}

int forksafe__maps_shared(const void *addr)
{
    char obj[8], share = 0;
    uintptr_t off;
    int saved = errno; /* asked from the lock hooks: errno is the caller's */
    int r = maps_read((uintptr_t)addr, obj, sizeof obj, &off, NULL, NULL,
                      &share);
    errno = saved;
    if (r != 0)
        return -1;
    return share == 's' ? 1 : share == 'p' ? 0 : -1;
}

struct maps_ask {
    uintptr_t a, *off, *lo, *hi;
    char *obj, *share;
    size_t objlen;
};

static int maps_each(char *line, void *arg)
{
    struct maps_ask *q = arg;
    return maps_line(line, q->a, q->obj, q->objlen, q->off, q->lo, q->hi,
                     q->share);
}

static int maps_read(uintptr_t a, char *obj, size_t objlen, uintptr_t *off,
                     uintptr_t *lo, uintptr_t *hi, char *share)
{
    struct maps_ask q = {a, off, lo, hi, obj, share, objlen};
    return forksafe__proc_lines("/proc/self/maps", maps_each, &q) == 1 ? 0
                                                                       : -1;
}
