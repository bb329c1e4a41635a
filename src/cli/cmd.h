/* SPDX-License-Identifier: MIT */
/*
 * cmd.h: what the two commands (forksafe-audit, forksafe-run) both do
 * around the program they run.
 */
#ifndef FORKSAFE_CLI_CMD_H
#define FORKSAFE_CLI_CMD_H

/* Remove the record directory dir: its files (not dot files), then dir
   itself. Best effort; nothing below it is followed. */
void forksafe__cmd_remove_dir(const char *dir);

/* CLOCK_MONOTONIC in milliseconds. */
long long forksafe__cmd_now_ms(void);

#endif
