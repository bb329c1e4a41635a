/* SPDX-License-Identifier: MIT */
/*
 * execcheck.c: can an LD_PRELOAD library load into the program an exec
 * will start (see execcheck.h)? The conditions follow the kernel's
 * secure-execution rule (AT_SECURE: the effective IDs after exec differ
 * from the real ones, or capabilities are gained) and ld.so's treatment of
 * LD_PRELOAD (ignored in secure mode; an object of the wrong class is
 * rejected with a message).
 */
#include "execcheck.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#if __SIZEOF_POINTER__ == 8
#define NATIVE_CLASS ELFCLASS64
typedef Elf64_Ehdr ehdr_t;
typedef Elf64_Phdr phdr_t;
#else
#define NATIVE_CLASS ELFCLASS32
typedef Elf32_Ehdr ehdr_t;
typedef Elf32_Phdr phdr_t;
#endif

#if defined(__x86_64__)
#define NATIVE_MACHINE EM_X86_64
#elif defined(__i386__)
#define NATIVE_MACHINE EM_386
#elif defined(__aarch64__)
#define NATIVE_MACHINE EM_AARCH64
#elif defined(__arm__)
#define NATIVE_MACHINE EM_ARM
#elif defined(__riscv)
#define NATIVE_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define NATIVE_MACHINE EM_PPC64
#elif defined(__s390x__)
#define NATIVE_MACHINE EM_S390
#else
#define NATIVE_MACHINE 0 /* unknown: the machine is not compared */
#endif

static void copy(char *dst, size_t len, const char *src)
{
    if (!dst || !len)
        return;
    size_t i = 0;
    for (; src[i] && i + 1 < len; i++)
        dst[i] = src[i];
    dst[i] = '\0';
}

/* Secure-execution mode that exec of the file open at fd would enter. */
static int privileged(int fd, const struct stat *st)
{
    int suid = (st->st_mode & S_ISUID) && st->st_uid != getuid();
    int sgid = (st->st_mode & S_ISGID) && (st->st_mode & S_IXGRP) &&
               st->st_gid != getgid();
    if (suid || sgid) {
        /* Set-ID bits do nothing on a nosuid mount or under
           PR_SET_NO_NEW_PRIVS. */
        struct statvfs vfs;
        if (fstatvfs(fd, &vfs) == 0 && (vfs.f_flag & ST_NOSUID))
            return FORKSAFE_EXEC_OK;
        if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1)
            return FORKSAFE_EXEC_OK;
        return suid ? FORKSAFE_EXEC_SETUID : FORKSAFE_EXEC_SETGID;
    }
    /* File capabilities give a non-root user privileges it did not have;
       root has them all already. */
    if (getuid() != 0 && fgetxattr(fd, "security.capability", NULL, 0) > 0)
        return FORKSAFE_EXEC_CAPS;
    return FORKSAFE_EXEC_OK;
}

static int check_fd(int fd, const struct stat *known, char *resolved,
                    size_t len, int depth);

/* "#!interpreter [arg]": judge the interpreter (the kernel allows a few
   levels of nesting; so do we). */
static int check_script(const unsigned char *buf, size_t n, char *resolved,
                        size_t len, int depth)
{
    char interp[256];
    size_t i = 2, k = 0;
    while (i < n && (buf[i] == ' ' || buf[i] == '\t'))
        i++;
    while (i < n && buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' &&
           k + 1 < sizeof interp)
        interp[k++] = (char)buf[i++];
    interp[k] = '\0';
    if (!k || depth >= 4)
        return FORKSAFE_EXEC_OK;
    struct stat st;
    if (stat(interp, &st) != 0 || !S_ISREG(st.st_mode))
        return FORKSAFE_EXEC_OK;
    int fd = open(interp, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return FORKSAFE_EXEC_OK;
    copy(resolved, len, interp);
    int r = check_fd(fd, &st, resolved, len, depth + 1);
    close(fd);
    return r;
}

/* Is st the dynamic loader of this process (its PT_INTERP)? Run as a
   program (`ld.so PROGRAM`, ldd), the loader has no PT_INTERP of its own
   but is no static program: it loads PROGRAM and honours LD_PRELOAD. */
static int own_loader(const struct stat *st)
{
    const phdr_t *ph = (const phdr_t *)(uintptr_t)getauxval(AT_PHDR);
    size_t n = (size_t)getauxval(AT_PHNUM);
    uintptr_t bias = 0, interp = 0;
    for (size_t i = 0; ph && i < n; i++) {
        if (ph[i].p_type == PT_PHDR)
            bias = (uintptr_t)ph - (uintptr_t)ph[i].p_vaddr;
        else if (ph[i].p_type == PT_INTERP)
            interp = (uintptr_t)ph[i].p_vaddr;
    }
    struct stat ls;
    return interp && stat((const char *)(bias + interp), &ls) == 0 &&
           ls.st_dev == st->st_dev && ls.st_ino == st->st_ino;
}

/* The file open at fd; known is what stat() said of its path just before
   it was opened (NULL: ask fstat). That answer is as good as fstat's: the
   exec that follows resolves the path again anyway. The ELF header and,
   in the common case (the program headers follow it, as linkers put
   them), the program headers come with one read. */
static int check_fd(int fd, const struct stat *known, char *resolved,
                    size_t len, int depth)
{
    union {
        unsigned char b[1024];
        ehdr_t eh;
    } u;
    unsigned char *buf = u.b;
    ssize_t n;
    struct stat st;
    if (known)
        st = *known;
    else if (fstat(fd, &st) != 0)
        return FORKSAFE_EXEC_OK;
    if (!S_ISREG(st.st_mode))
        return FORKSAFE_EXEC_OK;
    do
        n = pread(fd, buf, sizeof u.b, 0);
    while (n < 0 && errno == EINTR);
    /* The kernel reads the "#!" line from the first 256 bytes only. */
    if (n >= 2 && buf[0] == '#' && buf[1] == '!')
        return check_script(buf, n < 256 ? (size_t)n : 256, resolved, len,
                            depth);
    if (n < (ssize_t)EI_NIDENT || memcmp(buf, ELFMAG, SELFMAG) != 0)
        return FORKSAFE_EXEC_OK; /* not ELF: exec fails, or binfmt_misc */
    if (buf[EI_CLASS] != NATIVE_CLASS)
        return FORKSAFE_EXEC_CLASS;
    if ((size_t)n < sizeof(ehdr_t))
        return FORKSAFE_EXEC_OK;
    ehdr_t eh;
    memcpy(&eh, buf, sizeof eh);
    if (NATIVE_MACHINE && eh.e_machine != NATIVE_MACHINE)
        return FORKSAFE_EXEC_CLASS;
    int priv = privileged(fd, &st);
    if (priv)
        return priv;
    /* No PT_INTERP: the kernel starts the program itself, no loader runs
       (static and static-pie), unless it is the loader itself. */
    if (eh.e_phentsize != sizeof(phdr_t) || eh.e_phnum == 0)
        return FORKSAFE_EXEC_OK;
    /* Read where they lie (a copy would deepen the stack, and in a
       forked child every stack page written is a copy-on-write fault);
       those beyond the first read come in buffer-sized reads. */
    size_t want = eh.e_phnum < 32 ? eh.e_phnum : 32;
    size_t lo = 0, hi = 0; /* entries [lo, hi) are at buf */
    if (eh.e_phoff <= (size_t)n) {
        buf = u.b + eh.e_phoff;
        hi = ((size_t)n - eh.e_phoff) / sizeof(phdr_t);
    }
    for (size_t i = 0; i < want; i++) {
        if (i >= hi) {
            size_t k = want - i < sizeof u.b / sizeof(phdr_t)
                           ? want - i
                           : sizeof u.b / sizeof(phdr_t);
            do
                n = pread(fd, u.b, k * sizeof(phdr_t),
                          (off_t)(eh.e_phoff + i * sizeof(phdr_t)));
            while (n < 0 && errno == EINTR);
            if (n < (ssize_t)(k * sizeof(phdr_t)))
                return FORKSAFE_EXEC_OK;
            buf = u.b;
            lo = i;
            hi = i + k;
        }
        phdr_t ph;
        memcpy(&ph, buf + (i - lo) * sizeof ph, sizeof ph);
        if (ph.p_type == PT_INTERP)
            return FORKSAFE_EXEC_OK;
    }
    return eh.e_phnum > 32 || own_loader(&st) ? FORKSAFE_EXEC_OK
                                              : FORKSAFE_EXEC_STATIC;
}

int forksafe__exec_check(int dirfd, const char *path, int fd, char *resolved,
                         size_t len)
{
    int saved = errno;
    int own = -1;
    struct stat st, *known = NULL;
    if (path) {
        /* Only regular files are opened: exec refuses anything else, and
           opening a FIFO would block, a device could react. */
        if (fstatat(dirfd, path, &st, 0) != 0 || !S_ISREG(st.st_mode)) {
            errno = saved;
            return FORKSAFE_EXEC_OK;
        }
        own = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        if (own < 0) {
            errno = saved;
            return FORKSAFE_EXEC_OK;
        }
        fd = own;
        known = &st;
        copy(resolved, len, path);
    }
    int r = fd >= 0 ? check_fd(fd, known, resolved, len, 0) : FORKSAFE_EXEC_OK;
    if (own >= 0)
        close(own);
    errno = saved;
    return r;
}

int forksafe__exec_search(const char *file, const char *pathenv, char *out,
                          size_t len)
{
    if (!file || !*file)
        return -1;
    if (strchr(file, '/')) {
        copy(out, len, file);
        return 0;
    }
    const char *p = pathenv ? pathenv : "/bin:/usr/bin";
    size_t fl = strlen(file);
    int saved = errno;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dl = end ? (size_t)(end - p) : strlen(p);
        if (dl + fl + 2 <= len) {
            /* An empty element is the current directory. */
            size_t k = 0;
            if (dl) {
                memcpy(out, p, dl);
                k = dl;
                out[k++] = '/';
            }
            memcpy(out + k, file, fl + 1);
            if (access(out, X_OK) == 0) {
                errno = saved;
                return 0;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    errno = saved;
    return -1;
}

const char *forksafe__exec_reason_name(int reason)
{
    switch (reason) {
    case FORKSAFE_EXEC_STATIC:
        return "static";
    case FORKSAFE_EXEC_SETUID:
        return "setuid";
    case FORKSAFE_EXEC_SETGID:
        return "setgid";
    case FORKSAFE_EXEC_CAPS:
        return "capabilities";
    case FORKSAFE_EXEC_CLASS:
        return "elf-class";
    case FORKSAFE_EXEC_ENVIRON:
        return "environment";
    case FORKSAFE_EXEC_UNREACHABLE:
        return "unreachable";
    default:
        return "ok";
    }
}

const char *forksafe__exec_reason_text(int reason)
{
    switch (reason) {
    case FORKSAFE_EXEC_STATIC:
        return "it is statically linked, so no loader runs and LD_PRELOAD "
               "has no effect";
    case FORKSAFE_EXEC_SETUID:
        return "it is set-user-ID, so the loader runs in secure mode and "
               "ignores LD_PRELOAD";
    case FORKSAFE_EXEC_SETGID:
        return "it is set-group-ID, so the loader runs in secure mode and "
               "ignores LD_PRELOAD";
    case FORKSAFE_EXEC_CAPS:
        return "it has file capabilities, so the loader runs in secure "
               "mode and ignores LD_PRELOAD";
    case FORKSAFE_EXEC_CLASS:
        return "it is for another ELF class or machine (e.g. 32-bit), into "
               "which the interposer cannot be loaded";
    case FORKSAFE_EXEC_ENVIRON:
        return "the preload was removed from its environment and could not "
               "be put back";
    case FORKSAFE_EXEC_UNREACHABLE:
        return "the interposer or the record directory cannot be reached "
               "from it (after chroot(), in another mount namespace, or as "
               "a user who cannot read them), so it cannot be audited";
    default:
        return "it can be audited";
    }
}
