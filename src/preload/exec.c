/* SPDX-License-Identifier: MIT */
/*
 * exec.c: the exec family, posix_spawn, system and popen. Each keeps the
 * library in the program it starts, and says when that program cannot
 * load it.
 *
 * DESIGN. A program may empty or rewrite its environment before starting
 * another (env -i, clearenv(), Python's subprocess with env={}), which
 * would drop LD_PRELOAD and the library's settings: the new program would
 * run unseen. So every exec-like call checks the environment it passes
 * on; what is missing is put back, and a marker variable names what was
 * put back, so that the new program's constructor (forksafe__exec_unkeep)
 * removes it again before main: the program sees the environment its
 * parent gave it (CPython's test_subprocess checks that env={} is empty).
 * Before the exec, forksafe__exec_check() says whether the program can
 * load an LD_PRELOAD library at all; if not, the library's policy is told.
 *
 * These hooks run in vfork children (Python's subprocess, posix_spawn's
 * helpers) and after multi-threaded forks, so the new environment is built
 * on the stack, or with mmap when it is too large for the stack; nothing
 * here allocates with malloc or takes a lock.
 */
#include "interpose.h"

#include "execcheck.h"
#include "runpage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------ settings */

#define KEEP_MAX 4

/* "NAME=value" of each variable to keep, copied by the constructor into
   keep_buf, one after another (keep_str[k] points at keep_buf[0], which
   stays empty, when variable k is not kept); our own entry of LD_PRELOAD.
   A library path longer than self_path, or values longer together than
   keep_buf, are not kept (descendants then go unseen and are not
   reported: a limit named in docs/audit.md). keep_buf holds the audit's
   three (the record directory's path, at most 479 bytes, and two numbers)
   and the run library's two with room to spare; it was four buffers of
   600 bytes, which made the HOT data two pages instead of one: every
   program image wrote both, one more page fault per start. */
#define KEEP_BUF 640
HOT static char *keep_str[KEEP_MAX];
HOT static char keep_buf[KEEP_BUF];
HOT static size_t keep_namelen[KEEP_MAX];
HOT static int nkeep;
HOT static char self_path[1024];
HOT static char marker[64];
HOT static int keep_ok;

static int entry_is(const char *e, const char *name, size_t nl)
{
    return strncmp(e, name, nl) == 0 && e[nl] == '=';
}

/* 1 if the LD_PRELOAD value v lists our library (by its path, or by a
   path with the same last component, as a symlink would be). */
static int lists_self(const char *v)
{
    const char *base = strrchr(self_path, '/');
    base = base ? base + 1 : self_path;
    size_t bl = strlen(base), pl = strlen(self_path);
    while (*v) {
        while (*v == ':' || *v == ' ')
            v++;
        const char *s = v;
        while (*v && *v != ':' && *v != ' ')
            v++;
        size_t n = (size_t)(v - s);
        if ((n == pl && memcmp(s, self_path, n) == 0) ||
            (n >= bl && memcmp(s + n - bl, base, bl) == 0 &&
             (n == bl || s[n - bl - 1] == '/')))
            return 1;
    }
    return 0;
}

int forksafe__exec_keep_init(const char *const *names, const char *self_base,
                             const char *marker_name)
{
    forksafe__str_copy(marker, sizeof marker, marker_name);
    const char *pre = getenv("LD_PRELOAD");
    size_t bl = strlen(self_base);
    /* Our own entry in LD_PRELOAD. */
    while (pre && *pre) {
        while (*pre == ':' || *pre == ' ')
            pre++;
        const char *s = pre;
        while (*pre && *pre != ':' && *pre != ' ')
            pre++;
        size_t n = (size_t)(pre - s);
        if (n >= bl && n < sizeof self_path &&
            memcmp(s + n - bl, self_base, bl) == 0 &&
            (n == bl || s[n - bl - 1] == '/')) {
            memcpy(self_path, s, n);
            self_path[n] = '\0';
            break;
        }
    }
    if (!self_path[0])
        return -1;
    size_t used = 1; /* keep_buf[0] stays '\0' */
    for (nkeep = 0; names[nkeep] && nkeep < KEEP_MAX; nkeep++) {
        const char *v = getenv(names[nkeep]);
        size_t nl = strlen(names[nkeep]);
        keep_namelen[nkeep] = nl;
        keep_str[nkeep] = keep_buf;
        size_t vl = v ? strlen(v) : 0;
        if (!v || nl + vl + 2 > sizeof keep_buf - used)
            continue;
        char *e = keep_buf + used;
        memcpy(e, names[nkeep], nl);
        e[nl] = '=';
        memcpy(e + nl + 1, v, vl + 1);
        keep_str[nkeep] = e;
        used += nl + vl + 2;
    }
    keep_ok = 1;
    return 0;
}

void forksafe__exec_unkeep(void)
{
    const char *m = marker[0] ? getenv(marker) : NULL;
    if (!m)
        return;
    char list[256];
    forksafe__str_copy(list, sizeof list, m);
    unsetenv(marker);
    for (char *item = list; item && *item;) {
        char *next = strchr(item, ':');
        if (next)
            *next++ = '\0';
        size_t n = strlen(item);
        if (n && item[n - 1] == '+') {
            /* Our entry was appended: take it off the end again. */
            item[n - 1] = '\0';
            const char *v = getenv(item);
            if (v) {
                char buf[4096];
                forksafe__str_copy(buf, sizeof buf, v);
                char *cut = strrchr(buf, ':');
                if (cut && lists_self(cut + 1))
                    *cut = '\0';
                else if (lists_self(buf))
                    buf[0] = '\0';
                setenv(item, buf, 1);
            }
        } else if (n) {
            unsetenv(item);
        }
        item = next;
    }
}

/* ------------------------------------------------------------ building */

#define STACK_ENV  256
#define STACK_STRS 2048

/* Room for one rebuilt environment: on the caller's stack, with an mmap
   for what does not fit (released if the exec returns). */
struct envbuf {
    char *ptrs_stack[STACK_ENV];
    char strs_stack[STACK_STRS];
    char **ptrs;
    char *strs;
    size_t map_len;
    void *map;
};

static void env_release(struct envbuf *b)
{
    if (b->map) {
        REAL(munmap)(b->map, b->map_len);
        b->map = NULL;
    }
}

/* Remove our entry from an LD_PRELOAD value (for a program that cannot
   load us, whose loader would complain). Writes "LD_PRELOAD=..." into
   out. */
static void preload_without_self(const char *v, char *out, size_t len)
{
    forksafe__str_copy(out, len, "LD_PRELOAD=");
    size_t o = strlen(out);
    int first = 1;
    while (*v) {
        while (*v == ':' || *v == ' ')
            v++;
        const char *s = v;
        while (*v && *v != ':' && *v != ' ')
            v++;
        size_t n = (size_t)(v - s);
        char ent[PATH_MAX];
        if (!n || n >= sizeof ent)
            continue;
        memcpy(ent, s, n);
        ent[n] = '\0';
        if (lists_self(ent) || o + n + 2 > len)
            continue;
        if (!first)
            out[o++] = ':';
        memcpy(out + o, ent, n);
        o += n;
        out[o] = '\0';
        first = 0;
    }
}

/* The environment to pass instead of env: env itself when nothing is
   missing, else a copy in b with what was put back, and the marker.
   strip != 0: the new program cannot load us; take our entry out of
   LD_PRELOAD instead. On failure (no memory), env is returned and *failed
   set. */
static char *const *env_fix(char *const *env, struct envbuf *b, int strip,
                            int *failed)
{
    static char *const empty[] = {NULL};
    if (!env)
        env = empty;
    *failed = 0;
    if (!keep_ok)
        return env;
    size_t n = 0, pre = (size_t)-1;
    int have[KEEP_MAX] = {0};
    for (; env[n]; n++) {
        if (entry_is(env[n], "LD_PRELOAD", 10))
            pre = n;
        for (int k = 0; k < nkeep; k++)
            if (keep_str[k][0] &&
                entry_is(env[n], keep_str[k], keep_namelen[k]))
                have[k] = 1;
    }
    int pre_ok = pre != (size_t)-1 && lists_self(env[pre] + 11);
    int missing = 0;
    for (int k = 0; k < nkeep; k++)
        missing |= keep_str[k][0] && !have[k];
    if (strip ? !pre_ok : pre_ok && !missing)
        return env;

    /* Sizes: every old pointer, up to KEEP_MAX + 2 new ones; the new
       LD_PRELOAD entry and the marker. */
    size_t oldpre = pre != (size_t)-1 ? strlen(env[pre]) : 0;
    size_t nptr = n + KEEP_MAX + 3;
    size_t nstr = oldpre + strlen(self_path) + 16 + sizeof marker + 256;
    b->map = NULL;
    b->ptrs = b->ptrs_stack;
    b->strs = b->strs_stack;
    if (nptr > STACK_ENV || nstr > STACK_STRS) {
        size_t len = nptr * sizeof(char *) + nstr;
        len = (len + 4095) & ~(size_t)4095;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            *failed = 1;
            return env;
        }
        b->map = m;
        b->map_len = len;
        b->ptrs = m;
        b->strs = (char *)m + nptr * sizeof(char *);
    }
    char *s = b->strs;
    size_t m = 0;
    char added[256] = "";
    for (size_t i = 0; i < n; i++)
        if (i != pre && !entry_is(env[i], marker, strlen(marker)))
            b->ptrs[m++] = env[i];
    if (strip) {
        preload_without_self(env[pre] + 11, s, nstr);
        b->ptrs[m++] = s;
    } else {
        const char *old = pre != (size_t)-1 ? env[pre] + 11 : NULL;
        forksafe__str_copy(s, nstr, "LD_PRELOAD=");
        if (old && !pre_ok) {
            /* Ours goes last: a sanitizer runtime must stay first. */
            forksafe__str_cat(s, nstr, old);
            if (*old)
                forksafe__str_cat(s, nstr, ":");
            forksafe__str_cat(s, nstr, self_path);
            forksafe__str_cat(added, sizeof added, "LD_PRELOAD+");
        } else if (old) {
            forksafe__str_cat(s, nstr, old);
        } else {
            forksafe__str_cat(s, nstr, self_path);
            forksafe__str_cat(added, sizeof added, "LD_PRELOAD");
        }
        b->ptrs[m++] = s;
        s += strlen(s) + 1;
        for (int k = 0; k < nkeep; k++) {
            if (!keep_str[k][0] || have[k])
                continue;
            b->ptrs[m++] = keep_str[k];
            if (added[0])
                forksafe__str_cat(added, sizeof added, ":");
            char name[64];
            size_t nl = keep_namelen[k] < sizeof name - 1 ? keep_namelen[k]
                                                          : sizeof name - 1;
            memcpy(name, keep_str[k], nl);
            name[nl] = '\0';
            forksafe__str_cat(added, sizeof added, name);
        }
        if (added[0]) {
            forksafe__str_copy(s, sizeof marker + 256, marker);
            forksafe__str_cat(s, sizeof marker + 256, "=");
            forksafe__str_cat(s, sizeof marker + 256, added);
            b->ptrs[m++] = s;
        }
    }
    b->ptrs[m] = NULL;
    return b->ptrs;
}

/* ------------------------------------------------------------ checks */

/* Judge the program about to be started and pick its environment. path
   is what will be exec'd (relative to dirfd), or NULL with fd. Returns
   the environment to pass; *announced says whether the policy was told
   (the exec is then expected to replace this process). */
struct verdict {
    int reason;
    int announced;
    char resolved[PATH_MAX];
};

/* Can the loader still find the interposer? Not after a chroot() (or a
   raw chroot system call, a mount namespace entered) into a root without
   it, nor after a change of user that may not read it; and where the
   record directory cannot be reached, the program would be audited for
   nothing: its records would be lost without a trace. Two access() calls
   per exec, about a microsecond each. */
static int unreachable(void)
{
    return (self_path[0] && access(self_path, R_OK) != 0) ||
           !forksafe__out_reachable();
}

static char *const *prepare(int dirfd, const char *path, int fd,
                            char *const *env, struct envbuf *b, const char *via,
                            long pid, struct verdict *v)
{
    /* Records kept for one write() (forksafe__rec_end_batched) would be
       lost with this process image. */
    forksafe__rec_flush();
    v->reason =
        forksafe__exec_check(dirfd, path, fd, v->resolved, sizeof v->resolved);
    /* Where the loader would not find the interposer (and would say so on
       the program's stderr): it is taken out of LD_PRELOAD, as for another
       ELF class, and the program is named not audited. */
    if (v->reason == FORKSAFE_EXEC_OK && unreachable())
        v->reason = FORKSAFE_EXEC_UNREACHABLE;
    int failed;
    char *const *e = env_fix(
        env, b,
        v->reason == FORKSAFE_EXEC_CLASS || v->reason == FORKSAFE_EXEC_UNREACHABLE,
        &failed);
    if (failed && v->reason == FORKSAFE_EXEC_OK)
        v->reason = FORKSAFE_EXEC_ENVIRON;
    v->announced = 0;
    /* When the record directory is out of reach too, the run page (mapped
       at start, before any chroot) carries the finding instead of the
       record below. */
    if (v->reason == FORKSAFE_EXEC_UNREACHABLE && !forksafe__out_reachable())
        forksafe__run_event(FORKSAFE_RUN_UNAUDITED, v->reason);
    if (v->reason != FORKSAFE_EXEC_OK && pid >= 0) {
        forksafe__policy_unloadable(v->resolved, v->reason, via, pid);
        v->announced = 1;
    }
    return e;
}

/* After an exec that returned (it failed): undo what prepare did. */
static void after_failed(struct envbuf *b, const struct verdict *v)
{
    int saved = errno;
    env_release(b);
    if (v->announced)
        forksafe__policy_exec_failed();
    errno = saved;
}

/* The path execvp() would try first, for the check. */
static const char *searched(const char *file, char *buf, size_t len)
{
    if (forksafe__exec_search(file, getenv("PATH"), buf, len) != 0)
        forksafe__str_copy(buf, len, file);
    return buf;
}

/* ------------------------------------------------------------ exec */

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
    struct envbuf b;
    struct verdict v;
    char *const *e =
        prepare(AT_FDCWD, path, -1, envp, &b, "execve", forksafe__getpid(), &v);
    int r = REAL(execve)(path, argv, e);
    after_failed(&b, &v);
    return r;
}

EXPORT int execv(const char *path, char *const argv[])
{
    struct envbuf b;
    struct verdict v;
    char *const *e = prepare(AT_FDCWD, path, -1, environ, &b, "execv",
                             forksafe__getpid(), &v);
    int r = REAL(execve)(path, argv, e);
    after_failed(&b, &v);
    return r;
}

EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
    struct envbuf b;
    struct verdict v;
    char buf[PATH_MAX];
    char *const *e = prepare(AT_FDCWD, searched(file, buf, sizeof buf), -1,
                             envp, &b, "execvpe", forksafe__getpid(), &v);
    int r = REAL(execvpe)(file, argv, e);
    after_failed(&b, &v);
    return r;
}

EXPORT int execvp(const char *file, char *const argv[])
{
    struct envbuf b;
    struct verdict v;
    char buf[PATH_MAX];
    char *const *e = prepare(AT_FDCWD, searched(file, buf, sizeof buf), -1,
                             environ, &b, "execvp", forksafe__getpid(), &v);
    int r = REAL(execvpe)(file, argv, e);
    after_failed(&b, &v);
    return r;
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
    struct envbuf b;
    struct verdict v;
    char *const *e = prepare(AT_FDCWD, NULL, fd, envp, &b, "fexecve",
                             forksafe__getpid(), &v);
    int r = REAL(fexecve)(fd, argv, e);
    after_failed(&b, &v);
    return r;
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[],
                    char *const envp[], int flags)
{
    struct envbuf b;
    struct verdict v;
    int empty = (flags & AT_EMPTY_PATH) && !*path;
    char *const *e = prepare(dirfd, empty ? NULL : path, empty ? dirfd : -1,
                             envp, &b, "execveat", forksafe__getpid(), &v);
    int r = REAL(execveat)(dirfd, path, argv, e, flags);
    after_failed(&b, &v);
    return r;
}

/* The execl family, collected into an argument vector on the stack (or in
   an mmap for very long lists), then as execve/execvpe. */
#define STACK_ARGS 256

static char **collect(const char *arg0, va_list ap, char **stack,
                      size_t *map_len, char *const **envp)
{
    va_list count;
    va_copy(count, ap);
    size_t n = 1;
    while (va_arg(count, char *))
        n++;
    if (envp)
        *envp = va_arg(count, char *const *);
    va_end(count);
    char **v = stack;
    *map_len = 0;
    if (n + 1 > STACK_ARGS) {
        size_t len = ((n + 1) * sizeof(char *) + 4095) & ~(size_t)4095;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        v = m;
        *map_len = len;
    }
    v[0] = (char *)arg0;
    for (size_t i = 1; i < n; i++)
        v[i] = va_arg(ap, char *);
    v[n] = NULL;
    return v;
}

static void uncollect(char **v, size_t map_len)
{
    if (map_len) {
        int saved = errno;
        REAL(munmap)(v, map_len);
        errno = saved;
    }
}

EXPORT int execl(const char *path, const char *arg0, ...)
{
    char *stack[STACK_ARGS];
    size_t ml;
    va_list ap;
    va_start(ap, arg0);
    char **v = collect(arg0, ap, stack, &ml, NULL);
    va_end(ap);
    if (!v) {
        errno = E2BIG;
        return -1;
    }
    int r = execv(path, v);
    uncollect(v, ml);
    return r;
}

EXPORT int execlp(const char *file, const char *arg0, ...)
{
    char *stack[STACK_ARGS];
    size_t ml;
    va_list ap;
    va_start(ap, arg0);
    char **v = collect(arg0, ap, stack, &ml, NULL);
    va_end(ap);
    if (!v) {
        errno = E2BIG;
        return -1;
    }
    int r = execvp(file, v);
    uncollect(v, ml);
    return r;
}

EXPORT int execle(const char *path, const char *arg0, ...)
{
    char *stack[STACK_ARGS];
    size_t ml;
    char *const *envp = NULL;
    va_list ap;
    va_start(ap, arg0);
    char **v = collect(arg0, ap, stack, &ml, &envp);
    va_end(ap);
    if (!v) {
        errno = E2BIG;
        return -1;
    }
    int r = execve(path, v, envp);
    uncollect(v, ml);
    return r;
}

/* ------------------------------------------------------------ spawn */

static int spawn(int search, pid_t *pid, const char *path,
                 const posix_spawn_file_actions_t *fa,
                 const posix_spawnattr_t *attr, char *const argv[],
                 char *const envp[])
{
    struct envbuf b;
    struct verdict v;
    char buf[PATH_MAX];
    const char *via = search ? "posix_spawnp" : "posix_spawn";
    const char *target = search ? searched(path, buf, sizeof buf) : path;
    /* The child's pid is known only afterwards: the policy is told then
       (pid -1: not yet). */
    char *const *e = prepare(AT_FDCWD, target, -1, envp, &b, via, -1, &v);
    pid_t child = 0;
    int r = search ? REAL(posix_spawnp)(&child, path, fa, attr, argv, e)
                   : REAL(posix_spawn)(&child, path, fa, attr, argv, e);
    int saved = errno;
    env_release(&b);
    if (pid && r == 0)
        *pid = child;
    if (r == 0 && v.reason != FORKSAFE_EXEC_OK)
        forksafe__policy_unloadable(v.resolved, v.reason, via, child);
    errno = saved;
    return r;
}

EXPORT int posix_spawn(pid_t *pid, const char *path,
                       const posix_spawn_file_actions_t *fa,
                       const posix_spawnattr_t *attr, char *const argv[],
                       char *const envp[])
{
    return spawn(0, pid, path, fa, attr, argv, envp);
}

EXPORT int posix_spawnp(pid_t *pid, const char *file,
                        const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *attr, char *const argv[],
                        char *const envp[])
{
    return spawn(1, pid, file, fa, attr, argv, envp);
}

/* system() and popen() start /bin/sh with the current environ from inside
   libc (its own posix_spawn, not ours). When environ lacks what the audit
   needs, environ is pointed at a repaired copy for the duration of the
   call. A thread that calls setenv() during those few hundred microseconds
   loses its change; a program that cleared its environment and calls
   system() while another thread edits the environment is already outside
   what POSIX allows (setenv is not thread-safe). */
/* The shell that system() and popen() start where the interposer cannot
   be reached (after chroot()) cannot load it: it is named not audited
   (through the run page) and left out of the shell's LD_PRELOAD, so its
   loader prints no error. */
static int shell_unreachable(void)
{
    if (!unreachable())
        return 0;
    forksafe__run_event(FORKSAFE_RUN_UNAUDITED, FORKSAFE_EXEC_UNREACHABLE);
    return 1;
}

EXPORT int system(const char *cmd)
{
    int (*real)(const char *) = REAL(system);
    if (!cmd || !keep_ok)
        return real(cmd);
    struct envbuf b;
    int failed;
    char **saved_env = environ;
    char *const *e = env_fix(environ, &b, shell_unreachable(), &failed);
    if (e == (char *const *)saved_env)
        return real(cmd);
    environ = (char **)e;
    int r = real(cmd);
    int saved = errno;
    if (environ == (char **)e)
        environ = saved_env;
    env_release(&b);
    errno = saved;
    return r;
}

EXPORT FILE *popen(const char *cmd, const char *mode)
{
    if (!keep_ok)
        return REAL(popen)(cmd, mode);
    struct envbuf b;
    int failed;
    char **saved_env = environ;
    char *const *e = env_fix(environ, &b, shell_unreachable(), &failed);
    if (e == (char *const *)saved_env)
        return REAL(popen)(cmd, mode);
    environ = (char **)e;
    FILE *f = REAL(popen)(cmd, mode);
    int saved = errno;
    if (environ == (char **)e)
        environ = saved_env;
    env_release(&b);
    errno = saved;
    return f;
}
