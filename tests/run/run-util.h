/* SPDX-License-Identifier: MIT */
/*
 * run-util.h: what the forksafe-run suites share. Each runs the real
 * command (RUN_CLI) with the real library (RUN_PRELOAD) on real programs,
 * with stdout and stderr captured into files of a private temporary
 * directory, under a deadline (a hang fails the test), and checks every
 * JSON report with check_run.py, which validates it against the published
 * schema (docs/forksafe.schema.json) with python3-jsonschema first.
 */
#ifndef FORKSAFE_RUN_UTIL_H
#define FORKSAFE_RUN_UTIL_H

#include "common.h"

#define RU_PYTHON       "/usr/bin/python3"
#define RU_RUN_MS       60000
#define RU_TARGET(name) RUN_BIN "/" name

/* The temporary directory and its files: the last JSON report, the last
   text report, the program's stdout and the command's stderr. */
extern char ru_tmp[];
extern char ru_json[], ru_text[], ru_out[], ru_err[];

/* cmocka group setup and teardown: create and remove ru_tmp. */
int ru_setup(void **state);
int ru_teardown(void **state);

/* Run argv with extra environment entries envs ("K=V", NULL-terminated,
   may be NULL), stdin from /dev/null, stdout to o and stderr to e (NULL:
   /dev/null). Returns the exit status, or 128 + N if killed by signal N;
   ru_signaled then says which it was. A run that outlives ms fails the
   test. */
int ru_run(char *const argv[], const char *const *envs, const char *o,
           const char *e, unsigned ms);
extern int ru_signaled;

/* forksafe-run OPTS... -- ARGV... (opts NULL-terminated, may be NULL),
   stdout to ru_out, stderr to ru_err. */
int ru_cli(const char *const *opts, char *const *argv);
/* The same with --json ru_json --report ru_text before opts. */
int ru_cli_report(const char *const *opts, char *const *argv);
/* ARGV with LD_PRELOAD=RUN_PRELOAD and envs (may be NULL), no command. */
int ru_preload(const char *const *envs, char *const *argv);
/* ARGV as it is. */
int ru_plain(char *const *argv);

/* The contents of a file, NUL-terminated, in a buffer reused by the next
   call. */
char *ru_slurp(const char *path);

/* In the output of a target: the numbers of "hung H of N, wrong W" on the
   line that starts with prefix (W is 0 when the line has none). Fails the
   test if there is no such line. */
void ru_counts(const char *out, const char *prefix, int *hung, int *n,
               int *wrong);
/* The line of out that starts with prefix (copied into a static buffer),
   failing the test if there is none. */
const char *ru_line(const char *out, const char *prefix);
/* The "fork took N ms" figure on that line. */
int ru_fork_ms(const char *out, const char *prefix);

/* check_run.py ru_json ARGS... (NULL-terminated). */
void ru_check_args(const char *first, ...);
#define ru_check(...) ru_check_args(__VA_ARGS__, (const char *)NULL)

#endif
