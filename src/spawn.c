/* SPDX-License-Identifier: MIT */
/*
 * spawn.c: forksafe_spawn(), a posix_spawn() with safe defaults. A child
 * that will exec needs none of fork()'s copying and none of its hazards, so
 * this is the cheapest and safest way to start one: no page tables copied,
 * no fork handlers run, no inherited locks.
 *
 * DESIGN. Everything is decided in the parent and handed to glibc as spawn
 * attributes and file actions, so the child (which shares our memory until
 * it execs, glibc using CLONE_VM|CLONE_VFORK) runs only glibc's own code:
 *  - descriptor hygiene is a closefrom() file action after the fd_map
 *    dup2s, so a descriptor opened without O_CLOEXEC does not leak;
 *  - PATH search is done here, with the PATH of a copy of environ, because
 *    posix_spawnp() would call getenv() in the child while other threads of
 *    the parent may be running setenv();
 *  - the child's environment, when the caller passes none, is that same
 *    copy, for the same reason.
 */
#include "forksafe.h"
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define SPAWN_KNOWN_FLAGS                                                    \
    (FORKSAFE_SPAWN_KEEP_FDS | FORKSAFE_SPAWN_KEEP_SIGMASK |                 \
     FORKSAFE_SPAWN_KEEP_SIGDEFAULTS | FORKSAFE_SPAWN_NO_PATH_SEARCH |       \
     FORKSAFE_SPAWN_SETSID | FORKSAFE_SPAWN_SETPGROUP | FORKSAFE_SPAWN_PIDFD)

/* The PATH execvp() uses when the environment has none (glibc's
   _CS_PATH). */
#define SPAWN_DEFAULT_PATH "/bin:/usr/bin"

/* Copy the pointers of environ into a new NULL-terminated array. Another
   thread may run setenv()/unsetenv() meanwhile: glibc never frees the
   strings it installs (they stay reachable from its value tree), so copying
   the pointers is enough; what can change is the array itself, which
   setenv() of a new name reallocates. We re-read environ after copying and
   retry if it moved, so the copy is never a mix of two arrays. On success
   *out must be freed by the caller. */
static int env_copy(char ***out)
{
    for (int attempt = 0; attempt < 64; attempt++) {
        char **cur = __atomic_load_n(&environ, __ATOMIC_ACQUIRE);
        size_t n = 0;
        if (cur != NULL)
            while (__atomic_load_n(&cur[n], __ATOMIC_RELAXED) != NULL)
                n++;
        char **copy = malloc((n + 1) * sizeof *copy);
        if (copy == NULL)
            return ENOMEM;
        size_t k = 0;
        for (; k < n; k++) {
            /* unsetenv() shifts entries left in place: stop at the first
               NULL rather than trusting the count taken above. */
            copy[k] = __atomic_load_n(&cur[k], __ATOMIC_RELAXED);
            if (copy[k] == NULL)
                break;
        }
        copy[k] = NULL;
        if (__atomic_load_n(&environ, __ATOMIC_ACQUIRE) == cur) {
            *out = copy;
            return 0;
        }
        free(copy);
    }
    return EAGAIN;
}

/* The value of PATH in env, or NULL. */
static const char *env_path(char *const *env)
{
    for (; env != NULL && *env != NULL; env++)
        if (strncmp(*env, "PATH=", 5) == 0)
            return *env + 5;
    return NULL;
}

/* 1 if the running kernel has pidfd_open(), else 0; probed once on the
   calling process itself, which is always a valid target. */
static int pidfd_supported(void)
{
    static int cached = -1; /* -1 unknown, 0 no, 1 yes */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v >= 0)
        return v;
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, (long)getpid(), 0L);
    if (fd >= 0) {
        close((int)fd);
        v = 1;
    } else {
        v = errno == ENOSYS ? 0 : 1;
    }
#else
    v = 0;
#endif
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}

/* Check opts for EINVAL/EBADF before anything is allocated. */
static int opts_check(const struct forksafe_spawn_opts *o)
{
    if ((o->flags & ~SPAWN_KNOWN_FLAGS) != 0)
        return EINVAL;
    for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; i++)
        if (o->reserved[i] != NULL)
            return EINVAL;
    if ((o->flags & FORKSAFE_SPAWN_SETSID) &&
        (o->flags & FORKSAFE_SPAWN_SETPGROUP))
        return EINVAL; /* a session leader cannot change its group */
    if ((o->flags & FORKSAFE_SPAWN_SETPGROUP) && o->pgroup < 0)
        return EINVAL;
    if ((o->flags & FORKSAFE_SPAWN_PIDFD) && o->pidfd_out == NULL)
        return EINVAL;
    if (o->n_fd_map > 0 && o->fd_map == NULL)
        return EINVAL;
    if (o->n_fd_map > (size_t)INT_MAX / 2)
        return EINVAL;
    for (size_t i = 0; i < o->n_fd_map; i++) {
        const struct forksafe_fd_map *m = &o->fd_map[i];
        if (m->child_fd < 0 || m->parent_fd < 0)
            return EINVAL;
        for (size_t j = 0; j < i; j++)
            if (o->fd_map[j].child_fd == m->child_fd)
                return EINVAL;
    }
    for (size_t i = 0; i < o->n_fd_map; i++)
        if (fcntl(o->fd_map[i].parent_fd, F_GETFD) < 0)
            return EBADF;
    return 0;
}

/* Whether child_fd n is a target of the map. */
static int map_has_child(const struct forksafe_spawn_opts *o, int n)
{
    for (size_t i = 0; i < o->n_fd_map; i++)
        if (o->fd_map[i].child_fd == n)
            return 1;
    return 0;
}

/* Turn opts into file actions. The map is applied as if simultaneously:
   every parent_fd is first copied above all the numbers involved, then
   moved to its child_fd, so one mapping's target cannot clobber another's
   source. Then everything that is not 0-2 or a target is closed. */
static int actions_build(posix_spawn_file_actions_t *fa,
                         const struct forksafe_spawn_opts *o)
{
    int r;
    if (o->cwd != NULL && (r = posix_spawn_file_actions_addchdir_np(
                               fa, o->cwd)) != 0)
        return r;
    int top = 2; /* highest descriptor number that must survive */
    int base = 3;
    for (size_t i = 0; i < o->n_fd_map; i++) {
        const struct forksafe_fd_map *m = &o->fd_map[i];
        if (m->child_fd > top)
            top = m->child_fd;
        if (m->child_fd >= base)
            base = m->child_fd + 1;
        if (m->parent_fd >= base)
            base = m->parent_fd + 1;
    }
    for (size_t i = 0; i < o->n_fd_map; i++)
        if ((r = posix_spawn_file_actions_adddup2(fa, o->fd_map[i].parent_fd,
                                                  base + (int)i)) != 0)
            return r;
    for (size_t i = 0; i < o->n_fd_map; i++)
        if ((r = posix_spawn_file_actions_adddup2(fa, base + (int)i,
                                                  o->fd_map[i].child_fd)) != 0)
            return r;
    /* The temporaries are closed explicitly: a closefrom that is not a
       file action (the platform layer's, where the libc has none) sees
       only the descriptors open before the spawn. */
    for (size_t i = 0; i < o->n_fd_map; i++)
        if ((r = posix_spawn_file_actions_addclose(fa, base + (int)i)) != 0)
            return r;
    if (o->flags & FORKSAFE_SPAWN_KEEP_FDS)
        return 0;
    /* glibc ignores EBADF from a close action on a descriptor that is not
       open, so holes below top can be closed blindly. */
    for (int fd = 3; fd <= top; fd++)
        if (!map_has_child(o, fd) &&
            (r = posix_spawn_file_actions_addclose(fa, fd)) != 0)
            return r;
    return forksafe__platform()->spawn_closefrom(fa, top + 1);
}

static int attr_build(posix_spawnattr_t *at, const struct forksafe_spawn_opts *o)
{
    short fl = 0;
    int r;
    if (!(o->flags & FORKSAFE_SPAWN_KEEP_SIGMASK)) {
        sigset_t none;
        sigemptyset(&none);
        if ((r = posix_spawnattr_setsigmask(at, &none)) != 0)
            return r;
        fl |= POSIX_SPAWN_SETSIGMASK;
    }
    if (!(o->flags & FORKSAFE_SPAWN_KEEP_SIGDEFAULTS)) {
        sigset_t all;
        sigfillset(&all);
        if ((r = posix_spawnattr_setsigdefault(at, &all)) != 0)
            return r;
        fl |= POSIX_SPAWN_SETSIGDEF;
    }
    if (o->flags & FORKSAFE_SPAWN_SETSID)
        fl |= POSIX_SPAWN_SETSID;
    if (o->flags & FORKSAFE_SPAWN_SETPGROUP) {
        if ((r = posix_spawnattr_setpgroup(at, o->pgroup)) != 0)
            return r;
        fl |= POSIX_SPAWN_SETPGROUP;
    }
    return posix_spawnattr_setflags(at, fl);
}

/* Search PATH like execvp(): the first candidate that execs wins; ENOENT
   and ENOTDIR move on to the next directory, EACCES is remembered, any
   other error stops the search. Absolute candidates that access() says do
   not exist are skipped without starting a child. */
static int spawn_search(pid_t *pid, const char *file, const char *path,
                        const posix_spawn_file_actions_t *fa,
                        const posix_spawnattr_t *at, char *const argv[],
                        char *const envp[])
{
    size_t flen = strlen(file);
    int seen_eacces = 0;
    char buf[PATH_MAX];
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dlen = end != NULL ? (size_t)(end - p) : strlen(p);
        /* An empty element means the current directory (POSIX legacy). */
        const char *dir = dlen > 0 ? p : ".";
        size_t dl = dlen > 0 ? dlen : 1;
        if (dl + 1 + flen + 1 <= sizeof buf) {
            memcpy(buf, dir, dl);
            buf[dl] = '/';
            memcpy(buf + dl + 1, file, flen + 1);
            int skip = buf[0] == '/' && access(buf, F_OK) != 0 &&
                       (errno == ENOENT || errno == ENOTDIR);
            if (!skip) {
                int r = posix_spawn(pid, buf, fa, at, argv, envp);
                if (r == 0)
                    return 0;
                if (r == EACCES)
                    seen_eacces = 1;
                else if (r != ENOENT && r != ENOTDIR && r != ESTALE &&
                         r != ENAMETOOLONG && r != ELOOP)
                    return r;
            }
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    return seen_eacces ? EACCES : ENOENT;
}

static int spawn_impl(pid_t *pid, const char *file, char *const argv[],
                      char *const envp[], const struct forksafe_spawn_opts *opts)
{
    static const struct forksafe_spawn_opts defaults;
    const struct forksafe_spawn_opts *o = opts != NULL ? opts : &defaults;
    if (pid == NULL || file == NULL || argv == NULL || file[0] == '\0')
        return EINVAL;
    int r = opts_check(o);
    if (r != 0)
        return r;
    if ((o->flags & FORKSAFE_SPAWN_PIDFD) && !pidfd_supported())
        return ENOSYS;

    int search = !(o->flags & FORKSAFE_SPAWN_NO_PATH_SEARCH) &&
                 strchr(file, '/') == NULL;
    char **env = NULL;
    if (envp == NULL || search) {
        if ((r = env_copy(&env)) != 0)
            return r;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    if ((r = posix_spawn_file_actions_init(&fa)) != 0)
        goto out_env;
    if ((r = posix_spawnattr_init(&at)) != 0)
        goto out_fa;
    if ((r = actions_build(&fa, o)) != 0 || (r = attr_build(&at, o)) != 0)
        goto out_attr;

    pid_t child;
    char *const *cenv = envp != NULL ? envp : env;
    if (search) {
        const char *path = env_path(env);
        r = spawn_search(&child, file, path != NULL ? path : SPAWN_DEFAULT_PATH,
                         &fa, &at, argv, cenv);
    } else {
        r = posix_spawn(&child, file, &fa, &at, argv, cenv);
    }
    if (r == 0 && (o->flags & FORKSAFE_SPAWN_PIDFD)) {
        /* The child cannot have been reaped yet (we have not returned its
           PID to anyone), so its PID still names it here. */
        long fd = syscall(SYS_pidfd_open, (long)child, 0L);
        if (fd < 0) {
            r = errno;
            kill(child, SIGKILL);
            while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
            }
        } else {
            *o->pidfd_out = (int)fd;
        }
    }
    if (r == 0)
        *pid = child;
out_attr:
    posix_spawnattr_destroy(&at);
out_fa:
    posix_spawn_file_actions_destroy(&fa);
out_env:
    free(env);
    return r;
}

/* Contract in forksafe.h. The errno value the caller had is preserved:
   results travel only in the return value. */
FORKSAFE_API int forksafe_spawn(pid_t *pid, const char *file,
                                char *const argv[], char *const envp[],
                                const struct forksafe_spawn_opts *opts)
{
    int saved = errno;
    int r = spawn_impl(pid, file, argv, envp, opts);
    errno = saved;
    return r;
}
