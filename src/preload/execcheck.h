/* SPDX-License-Identifier: MIT */
/*
 * execcheck.h: will an LD_PRELOAD library of this build load into the
 * program that an exec is about to start? Shared by the interposer (exec
 * hooks, for descendants) and forksafe-audit (for PROGRAM itself). The
 * loader ignores LD_PRELOAD, or cannot honour it, when the program is
 * statically linked (no PT_INTERP), when the exec changes the effective
 * user or group ID or grants file capabilities (secure-execution mode,
 * ld.so(8)), and when the program is for another ELF class or machine
 * (it then prints an error, which is why the exec hooks take the library
 * out of that program's LD_PRELOAD). A #! script is judged by its
 * interpreter. Everything here is async-signal-safe (open, pread, fstat,
 * fgetxattr, close) and allocates nothing.
 */
#ifndef FORKSAFE_EXECCHECK_H
#define FORKSAFE_EXECCHECK_H

#include <stddef.h>

enum {
    FORKSAFE_EXEC_OK = 0, /* it will load (or the exec will fail anyway) */
    FORKSAFE_EXEC_STATIC, /* statically linked */
    FORKSAFE_EXEC_SETUID, /* set-user-ID to another user */
    FORKSAFE_EXEC_SETGID, /* set-group-ID to another group */
    FORKSAFE_EXEC_CAPS,   /* file capabilities */
    FORKSAFE_EXEC_CLASS,  /* another ELF class or machine (e.g. 32-bit) */
    FORKSAFE_EXEC_ENVIRON, /* the environment could not be rebuilt */
    FORKSAFE_EXEC_UNREACHABLE, /* the interposer's file cannot be reached
                                  from it (chroot(), a mount namespace) */
    FORKSAFE_EXEC_LAST = FORKSAFE_EXEC_UNREACHABLE
};

/* Judge the program that exec of path (relative to dirfd, as openat) or,
   when path is NULL, of the open descriptor fd would start. The path of
   the program that actually runs (the interpreter of a script) is copied
   to resolved (len bytes, may be NULL). Returns a FORKSAFE_EXEC_* value;
   a file that cannot be read or is not ELF gives FORKSAFE_EXEC_OK. */
int forksafe__exec_check(int dirfd, const char *path, int fd, char *resolved,
                         size_t len);

/* The file that execvp(file) would run, searched in pathenv (NULL: the
   default "/bin:/usr/bin", as glibc does) when file has no '/'. Returns 0
   and the path in out, or -1 when none is found. */
int forksafe__exec_search(const char *file, const char *pathenv, char *out,
                          size_t len);

/* Stable short name ("static", "setuid", "setgid", "capabilities",
   "elf-class", "environment", "unreachable") and a phrase for people. */
const char *forksafe__exec_reason_name(int reason);
const char *forksafe__exec_reason_text(int reason);

#endif
