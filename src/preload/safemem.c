/* SPDX-License-Identifier: MIT */
/*
 * safemem.c: reading the program's memory without trusting it. A lock
 * another thread took may have been closed, unmapped or freed since (a
 * multiprocessing.Event's semaphores are sem_close'd while the thread
 * that waited on them lives on); a FILE may have been closed. Reads of
 * such memory go through process_vm_readv() on our own pid, which fails
 * with EFAULT instead of faulting; values are then taken from the copy.
 * (The C library's own stdin, stdout and stderr objects are read in
 * place: they are its static data.)
 *
 * What a lock is (process-shared, who holds it) is asked of the platform
 * layer (src/platform/platform.h), the only code that reads a C library's
 * private structures; see forksafe__lock_pshared() and friends below.
 */
#include "interpose.h"

#include "platform/platform.h"

#include <errno.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* 0 unknown, 1 works, -1 not allowed here (seccomp, old kernel): then
   nothing is read at all. */
HOT static int vm_state;

int forksafe__mem_read(void *dst, const void *src, size_t n)
{
    if (LOAD(&vm_state) < 0 || !src)
        return -1;
    int saved = errno;
    struct iovec local = {dst, n};
    struct iovec remote = {(void *)src, n};
    long got = syscall(SYS_process_vm_readv, forksafe__getpid(), &local, 1UL,
                       &remote, 1UL, 0UL);
    if (got < 0 && (errno == ENOSYS || errno == EPERM))
        STORE(&vm_state, -1);
    else if (got >= 0 && !LOAD(&vm_state))
        STORE(&vm_state, 1);
    errno = saved;
    return got == (long)n ? 0 : -1;
}

int forksafe__sem_value(const sem_t *s)
{
    /* sem_getvalue only loads the value word: on a private copy it gives
       the value without any knowledge of the layout. */
    sem_t copy;
    int v;
    if (forksafe__mem_read(&copy, s, sizeof copy) != 0 ||
        sem_getvalue(&copy, &v) != 0)
        return -1;
    return v;
}

/* glibc's own stdin, stdout and stderr objects: static data of the C
   library, mapped for the whole life of the process, so reading them
   needs no fault-safe copy (weak: absent on other C libraries). */
extern char _IO_2_1_stdin_[] __attribute__((weak));
extern char _IO_2_1_stdout_[] __attribute__((weak));
extern char _IO_2_1_stderr_[] __attribute__((weak));

size_t forksafe__file_pending(FILE *f)
{
    /* The narrow-stream buffer pointers of the public struct _IO_FILE
       (bits/types/struct_FILE.h), as __fpending() reads them. A wide
       stream (_mode > 0) keeps its buffer elsewhere: not followed. */
    if (!f)
        return 0;
    char *p = (char *)f;
    if (p == _IO_2_1_stdout_ || p == _IO_2_1_stderr_ || p == _IO_2_1_stdin_) {
        /* The common case (fork() checks stdout and stderr every time):
           no system call. Another thread may be writing meanwhile; the
           copy below is not more exact. */
        int mode = LOAD(&f->_mode);
        char *wp = LOAD(&f->_IO_write_ptr), *wb = LOAD(&f->_IO_write_base);
        if (mode > 0 || wp < wb)
            return 0;
        return (size_t)(wp - wb);
    }
    FILE copy;
    if (forksafe__mem_read(&copy, f, sizeof copy) != 0 || copy._mode > 0 ||
        copy._IO_write_ptr < copy._IO_write_base)
        return 0;
    return (size_t)(copy._IO_write_ptr - copy._IO_write_base);
}

/* ------------------------------------------------------------ lock facts */

HOT static const struct forksafe_platform *layer;

void forksafe__platform_init(void)
{
    /* The layer may run a self-check on scratch locks: not audited. */
    forksafe__in_hook++;
    const struct forksafe_platform *p = forksafe__platform();
    forksafe__in_hook--;
    STORE(&layer, p);
}

static const struct forksafe_platform *plat(void)
{
    const struct forksafe_platform *p = LOAD(&layer);
    if (!p)
        forksafe__platform_init();
    return LOAD(&layer);
}

/* A lock its C library calls process-shared (pshared, 1) is shared with
   another process only when its memory is: one in private memory (static
   data, the heap, a private mapping) is copied by fork, and a thread of
   the parent that releases it releases the parent's copy only. glibc also
   marks every robust mutex process-shared, whatever its attribute. So a
   pshared lock counts as process-shared only when /proc/self/maps says
   its mapping is shared, or cannot say. */
static int shared_in_fact(const void *lock, int pshared)
{
    return pshared == 1 && forksafe__maps_shared(lock) == 0 ? 0 : pshared;
}

int forksafe__mutex_pshared(const pthread_mutex_t *m)
{
    unsigned k = plat()->mutex_kind(m);
    return (k & FS_MX_UNKNOWN) ? -1
                               : shared_in_fact(m, (k & FS_MX_PSHARED) != 0);
}

int forksafe__mutex_pi(const pthread_mutex_t *m)
{
    unsigned k = plat()->mutex_kind(m);
    return (k & FS_MX_UNKNOWN) ? -1 : (k & FS_MX_PI) != 0;
}

long forksafe__mutex_owner(const pthread_mutex_t *m)
{
    pid_t h = plat()->mutex_holder(m);
    return h > 0 ? h : 0;
}

int forksafe__sem_pshared(const sem_t *s)
{
    const struct forksafe_platform *p = plat();
    return p->sem_pshared ? shared_in_fact(s, p->sem_pshared(s)) : -1;
}

int forksafe__lock_pshared_copy(const void *lock, int kind, int *value)
{
    if (value)
        *value = -1;
    const struct forksafe_platform *p = plat();
    if (kind == KIND_SEMAPHORE) {
        sem_t copy;
        int v;
        if (forksafe__mem_read(&copy, lock, sizeof copy) != 0)
            return -1;
        if (value && sem_getvalue(&copy, &v) == 0)
            *value = v;
        return p->sem_pshared ? shared_in_fact(lock, p->sem_pshared(&copy))
                              : -1;
    }
    if (kind == KIND_RWLOCK) {
        pthread_rwlock_t copy;
        if (forksafe__mem_read(&copy, lock, sizeof copy) != 0)
            return -1;
        unsigned k = p->rwlock_kind(&copy);
        return (k & FS_RW_UNKNOWN) ? -1
                                   : shared_in_fact(lock,
                                                    (k & FS_RW_PSHARED) != 0);
    }
    pthread_mutex_t copy;
    if (forksafe__mem_read(&copy, lock, sizeof copy) != 0)
        return -1;
    unsigned k = p->mutex_kind(&copy);
    return (k & FS_MX_UNKNOWN) ? -1
                               : shared_in_fact(lock, (k & FS_MX_PSHARED) != 0);
}
