/* SPDX-License-Identifier: MIT */
/*
 * audit-util.c: running the CLI and checking its reports for the
 * forksafe-audit suites (see audit-util.h).
 */
#include "audit-util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char au_tmp[] = "/tmp/fs-audit-test-XXXXXX";
char au_json[256], au_out[256], au_err[256];

int au_setup(void **state)
{
    (void)state;
    if (!mkdtemp(au_tmp))
        return -1;
    snprintf(au_json, sizeof au_json, "%s/report.json", au_tmp);
    snprintf(au_out, sizeof au_out, "%s/out.txt", au_tmp);
    snprintf(au_err, sizeof au_err, "%s/err.txt", au_tmp);
    return 0;
}

int au_teardown(void **state)
{
    (void)state;
    char *args[] = {"/bin/rm", "-rf", au_tmp, NULL};
    au_run(args, NULL, NULL, NULL, AU_RUN_MS);
    return 0;
}

pid_t au_start(char *const argv[], const char *const *envs, const char *o,
               const char *e)
{
    return fs_prog_start(argv, envs, o, e, 0);
}

int au_run(char *const argv[], const char *const *envs, const char *o,
           const char *e, unsigned ms)
{
    return fs_prog_run(argv, envs, o, e, 0, ms, NULL);
}

char *au_slurp_alloc(const char *path, size_t *len)
{
    return fs_slurp_alloc(path, len);
}

char *au_slurp(const char *path)
{
    static char *last;
    free(last);
    last = au_slurp_alloc(path, NULL);
    return last;
}

const char *au_cli(void)
{
    /* Another build's CLI (FS_AUDIT_TEST_CLI, with FORKSAFE_AUDIT_PRELOAD
       naming its interposer): how a test is seen failing on the code
       before a fix. */
    const char *cli = getenv("FS_AUDIT_TEST_CLI");
    return cli && *cli ? cli : AUDIT_CLI;
}

int au_audit(const char *const *opts, char *const *argv)
{
    char *args[64];
    int n = 0;
    args[n++] = (char *)au_cli();
    args[n++] = "--json";
    args[n++] = au_json;
    for (; opts && *opts && n < 40; opts++)
        args[n++] = (char *)*opts;
    args[n++] = "--";
    for (; *argv && n < 63; argv++)
        args[n++] = *argv;
    args[n] = NULL;
    unlink(au_json);
    int st = au_run(args, NULL, au_out, au_err, AU_RUN_MS);
    /* Every report the suites produce is validated, whatever the test
       goes on to check (or not). */
    if (access(au_json, F_OK) == 0)
        assert_int_equal(au_validate(au_json), 0);
    return st;
}

int au_plain(char *const *argv)
{
    return au_run(argv, NULL, au_out, au_err, AU_RUN_MS);
}

void au_check_args(const char *first, ...)
{
    char *args[40];
    int n = 0;
    args[n++] = AU_PYTHON;
    args[n++] = AUDIT_SRC "/check_report.py";
    args[n++] = au_json;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 39; a = va_arg(ap, const char *))
        args[n++] = (char *)a;
    va_end(ap);
    args[n] = NULL;
    char co[300];
    snprintf(co, sizeof co, "%s/check.txt", au_tmp);
    int st = au_run(args, NULL, co, co, AU_RUN_MS);
    if (st != 0) {
        fprintf(stderr, "%s\n", au_slurp(co));
        fprintf(stderr, "audit stderr:\n%s\n", au_slurp(au_err));
    }
    assert_int_equal(st, 0);
}

int au_validate(const char *path)
{
    char *args[] = {AU_PYTHON, AUDIT_SRC "/check_report.py", "--any",
                    (char *)path, NULL};
    char co[300];
    snprintf(co, sizeof co, "%s/validate.txt", au_tmp);
    int st = au_run(args, NULL, co, co, AU_RUN_MS);
    if (st != 0)
        fprintf(stderr, "%s\n", au_slurp(co));
    return st;
}
