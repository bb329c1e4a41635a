/* SPDX-License-Identifier: MIT */
/*
 * cmd.h: what the two commands (forksafe-audit, forksafe-run) both do
 * around the program they run.
 */
#ifndef FORKSAFE_CLI_CMD_H
#define FORKSAFE_CLI_CMD_H

#include <stddef.h>

/* Remove the record directory dir: its files (not dot files), then dir
   itself. Best effort; nothing below it is followed. */
void forksafe__cmd_remove_dir(const char *dir);

/* CLOCK_MONOTONIC in milliseconds. */
long long forksafe__cmd_now_ms(void);

/* Where a command's preload library is. */
struct forksafe_cmd_preload {
    const char *cmd;       /* "forksafe-audit": error messages */
    const char *env;       /* "FORKSAFE_AUDIT_PRELOAD": overrides the rest */
    const char *name;      /* "libforksafe-audit.so" */
    const char *build_dir; /* where the build tree keeps it, relative to the
                              command's folder ("../preload", ".") */
    const char *libdir;    /* "lib": an installed bin/'s ../LIBDIR/forksafe/ */
    const char *installed; /* the path baked in at build time */
};

/* Find the library: $ENV, else in the build tree next to this program,
   else relative to an installed bin/ (../LIBDIR/forksafe/NAME), else the
   installed path. The result is absolute where it can be made so (a
   program that changes directory before it execs another must still find
   it). Returns 0 with the path in out[len], or -1 after a message on
   stderr naming what was looked for. */
int forksafe__cmd_find_preload(const struct forksafe_cmd_preload *p, char *out,
                               size_t len);

#endif
