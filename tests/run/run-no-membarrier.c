/* SPDX-License-Identifier: MIT */
/*
 * run-no-membarrier.c: run-no-membarrier PROGRAM [ARGS...] runs PROGRAM
 * with membarrier(2) refused (EPERM, through a seccomp filter, as a
 * container's profile may refuse it), so that libforksafe-run.so in it
 * takes its fence mode: every lock call fences instead of the forker
 * making the other threads execute a barrier. Exits 3 if the filter
 * cannot be installed, 127 if PROGRAM cannot be run.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: run-no-membarrier PROGRAM [ARGS...]\n");
        return 2;
    }
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & 0xffff)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("run-no-membarrier: seccomp");
        return 3;
    }
    execv(argv[1], argv + 1);
    perror("run-no-membarrier: exec");
    return 127;
}
