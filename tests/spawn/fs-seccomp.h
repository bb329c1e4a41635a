/* SPDX-License-Identifier: MIT */
/*
 * fs-seccomp.h: make the calling process look like a container whose
 * seccomp profile hides newer system calls, so that the fallbacks of
 * forksafe_spawn() and the fork server run: clone3, close_range,
 * pidfd_open and pidfd_send_signal fail with ENOSYS, unshare with EPERM.
 * The filter is inherited by every child and cannot be removed; call it
 * in a scenario process. x86-64 only.
 */
#ifndef FS_SECCOMP_H
#define FS_SECCOMP_H

#include <errno.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

/* The kernel's headers (not every toolchain has them: musl-gcc does not). */
#if defined(__has_include)
#if __has_include(<linux/audit.h>) && __has_include(<linux/filter.h>) &&       \
    __has_include(<linux/seccomp.h>)
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#define FS_HAVE_SECCOMP_HEADERS 1
#endif
#endif

/* 0 if the filter is installed, -1 if this platform or kernel cannot. */
static inline int fs_seccomp_hide_new_calls(void)
{
#if defined(FS_HAVE_SECCOMP_HEADERS) && defined(__x86_64__) &&                 \
    defined(SYS_clone3) && defined(SYS_close_range) &&                         \
    defined(SYS_pidfd_open) && defined(SYS_pidfd_send_signal)
#define FS_DENY(nr, err)                                                       \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                           \
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err))
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        FS_DENY(SYS_clone3, ENOSYS),
        FS_DENY(SYS_close_range, ENOSYS),
        FS_DENY(SYS_pidfd_open, ENOSYS),
        FS_DENY(SYS_pidfd_send_signal, ENOSYS),
        FS_DENY(SYS_unshare, EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
#undef FS_DENY
    struct sock_fprog prog = {(unsigned short)(sizeof f / sizeof f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -1;
    return 0;
#else
    return -1;
#endif
}

#endif
