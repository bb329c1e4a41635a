/* SPDX-License-Identifier: MIT */
/*
 * audit-util.h: what the forksafe-audit suites share. Each suite runs the
 * real CLI (AUDIT_CLI) with the real interposer on real programs, with
 * stdout and stderr captured into files of a private temporary directory,
 * under a deadline (a hang fails the test), and checks the JSON report
 * with check_report.py, which validates it against the published schema
 * (docs/forksafe.schema.json) with python3-jsonschema before it checks
 * any expectation.
 */
#ifndef FORKSAFE_AUDIT_UTIL_H
#define FORKSAFE_AUDIT_UTIL_H

#include "common.h"

#define AU_PYTHON       "/usr/bin/python3"
#define AU_RUN_MS       30000
#define AU_TARGET(name) AUDIT_BIN "/" name

/* The temporary directory of this suite and the files in it: the last
   JSON report, the audited program's stdout and the CLI's stderr (which
   holds the program's stderr and the text report). */
extern char au_tmp[];
extern char au_json[], au_out[], au_err[];

/* cmocka group setup and teardown: create and remove au_tmp. */
int au_setup(void **state);
int au_teardown(void **state);

/* Run argv with extra environment entries envs ("K=V", NULL-terminated, may
   be NULL), stdin from /dev/null, stdout to o and stderr to e (NULL:
   /dev/null). Returns the exit status, 128 + N if killed by signal N. A
   run that outlives ms fails the test. */
int au_run(char *const argv[], const char *const *envs, const char *o,
           const char *e, unsigned ms);

/* Start argv the same way without waiting; returns its pid. */
pid_t au_start(char *const argv[], const char *const *envs, const char *o,
               const char *e);

/* The CLI under test: AUDIT_CLI, or FS_AUDIT_TEST_CLI from the
   environment (another build's, to see a test fail on it). */
const char *au_cli(void);

/* The CLI with --json au_json, the options opts (NULL-terminated, may be
   NULL), "--" and argv; stdout to au_out, stderr to au_err. Returns the
   CLI's exit status. A report it wrote must be valid against the schema
   (au_validate), or the test fails. */
int au_audit(const char *const *opts, char *const *argv);

/* argv without the audit, stdout to au_out, stderr to au_err. */
int au_plain(char *const *argv);

/* The contents of a file (NUL-terminated; a static buffer reused by the
   next call, so copy what must be kept). */
char *au_slurp(const char *path);
/* The same into a malloc'd buffer (*len bytes, NUL added). */
char *au_slurp_alloc(const char *path, size_t *len);

/* check_report.py au_json ARGS... (NULL-terminated): the report must be
   valid against the schema and meet every expectation. */
void au_check_args(const char *first, ...);
#define au_check(...) au_check_args(__VA_ARGS__, (const char *)NULL)

/* Validate any forksafe JSON document (an audit report or an in-process
   report) against the schema; 0 when valid. */
int au_validate(const char *path);

/* A known break, not fixed yet: the test is skipped unless FORKSAFE_ADV=1
   (the adversary suites, tests/audit/test-audit-hostile-*.c). */
#define ADV_BREAK(why)                                                         \
    do {                                                                       \
        const char *adv_ = getenv("FORKSAFE_ADV");                             \
        if (!adv_ || strcmp(adv_, "1") != 0) {                                 \
            fprintf(stderr,                                                    \
                    "skipped (known break, FORKSAFE_ADV=1 runs it): "          \
                    "%s\n",                                                    \
                    why);                                                      \
            skip();                                                            \
        }                                                                      \
    } while (0)

#endif
