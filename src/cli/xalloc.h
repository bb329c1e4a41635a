/* SPDX-License-Identifier: MIT */
/*
 * xalloc.h: allocation for the commands (forksafe-audit, forksafe-run),
 * which have nothing to do without memory: these print
 * "<program>: out of memory" and exit with status 2 instead of returning
 * NULL.
 */
#ifndef FORKSAFE_CLI_XALLOC_H
#define FORKSAFE_CLI_XALLOC_H

#include <stddef.h>

/* A copy of s (NULL: of ""). */
char *forksafe__xstrdup(const char *s);
/* realloc(p, n), n == 0 taken as 1. */
void *forksafe__xrealloc(void *p, size_t n);

#endif
