/* SPDX-License-Identifier: MIT */
/*
 * setup.c: the constructor of libforksafe-audit.so, and the audit's policy
 * for programs it cannot follow. The constructor reads the audit's
 * settings, records what the exec hooks must keep in descendants, removes
 * what a parent's exec hook put back into this program's environment,
 * resolves the real functions that signal handlers and children may need,
 * and scans the descriptors inherited by exec.
 */
#include "audit.h"

#include "execcheck.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

/* What every descendant needs to be audited, and the marker naming what
   an exec hook put back. */
static const char *const keep[] = {"FORKSAFE_AUDIT_DIR", "FORKSAFE_AUDIT_ROOT",
                                   "FORKSAFE_AUDIT_GRACE_MS", NULL};
#define MARKER    "FORKSAFE_AUDIT_RESTORED"
#define SELF_BASE "libforksafe-audit.so"

/* The leading decimal digits of s (saturated), as strtol(s, NULL, 10) for
   the values the CLI writes; strtol would be one more page of libc's code
   and its character table to fault in for every program image. */
static long dec(const char *s)
{
    long v = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        v = v > (LONG_MAX - 9) / 10 ? LONG_MAX : v * 10 + (*s - '0');
    return v;
}

/* glibc passes the program's arguments and environment to constructors. */
__attribute__((constructor)) static void audit_init(int argc, char **argv,
                                                    char **envp)
{
    int saved = errno;
    forksafe__out_init();
    forksafe__resolve_early();
    forksafe__thread_key_init();
    /* A fallback for programs whose main() we did not see start; see
       main_wrapper (report.c) for why that one is preferred. */
    atexit(forksafe__audit_exit_late);
    const char *g = getenv("FORKSAFE_AUDIT_GRACE_MS");
    if (g && *g >= '0' && *g <= '9')
        forksafe__audit_grace_ms = dec(g);
    if (forksafe__out_enabled())
        forksafe__exec_keep_init(keep, SELF_BASE, MARKER);
    forksafe__exec_unkeep();
    if (!forksafe__out_enabled()) {
        errno = saved;
        return;
    }
    /* The descriptor scan comes first, before our own record file is
       opened. */
    const char *root = getenv("FORKSAFE_AUDIT_ROOT");
    if (root && dec(root) != forksafe__out_image_pid())
        forksafe__audit_report_inherited_fds(argc, argv, envp);
    errno = saved;
}

/* ------------------------------------------------------------ policy */

/* A program this process is about to start (or has started, for
   posix_spawn) cannot load the interposer: say so, with the reason. The
   record goes to a file of its own: an exec hook may run in a vfork child,
   which must not touch the parent's record state. */
void forksafe__policy_unloadable(const char *path, int reason, const char *via,
                                 long pid)
{
    struct forksafe__rec *r = forksafe__rec_begin("unaudited");
    if (!r)
        return;
    forksafe__rec_int(r, "pid", pid);
    forksafe__rec_int(
        r, "ppid", pid == forksafe__getpid() ? getppid() : forksafe__getpid());
    forksafe__rec_str(r, "program", path);
    forksafe__rec_str(r, "reason", forksafe__exec_reason_name(reason));
    forksafe__rec_str(r, "via", via);
    forksafe__rec_end_aside(r);
}

/* The exec announced above returned: it failed, nothing was started. */
void forksafe__policy_exec_failed(void)
{
    struct forksafe__rec *r = forksafe__rec_begin("exec-failed");
    if (!r)
        return;
    forksafe__rec_int(r, "pid", forksafe__getpid());
    forksafe__rec_end_aside(r);
}
