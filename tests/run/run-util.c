/* SPDX-License-Identifier: MIT */
/*
 * run-util.c: running forksafe-run and its targets for the suites, and
 * reading what they print (see run-util.h).
 */
#include "run-util.h"

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

char ru_tmp[] = "/tmp/fs-run-test-XXXXXX";
char ru_json[256], ru_text[256], ru_out[256], ru_err[256];
int ru_signaled;

int ru_setup(void **state)
{
    (void)state;
    if (!mkdtemp(ru_tmp))
        return -1;
    snprintf(ru_json, sizeof ru_json, "%s/report.json", ru_tmp);
    snprintf(ru_text, sizeof ru_text, "%s/report.txt", ru_tmp);
    snprintf(ru_out, sizeof ru_out, "%s/out.txt", ru_tmp);
    snprintf(ru_err, sizeof ru_err, "%s/err.txt", ru_tmp);
    return 0;
}

int ru_teardown(void **state)
{
    (void)state;
    char *args[] = {"/bin/rm", "-rf", ru_tmp, NULL};
    ru_run(args, NULL, NULL, NULL, RU_RUN_MS);
    return 0;
}

int ru_run(char *const argv[], const char *const *envs, const char *o,
           const char *e, unsigned ms)
{
    return fs_prog_run(argv, envs, o, e, FS_PROG_DEFAULT_SIGNALS, ms,
                       &ru_signaled);
}

static int cli(const char *const *pre, const char *const *opts,
               char *const *argv)
{
    char *args[80];
    int n = 0;
    args[n++] = RUN_CLI;
    for (; pre && *pre; pre++)
        args[n++] = (char *)*pre;
    for (; opts && *opts && n < 40; opts++)
        args[n++] = (char *)*opts;
    args[n++] = "--";
    for (; *argv && n < 79; argv++)
        args[n++] = *argv;
    args[n] = NULL;
    return ru_run(args, NULL, ru_out, ru_err, RU_RUN_MS);
}

int ru_cli(const char *const *opts, char *const *argv)
{
    return cli(NULL, opts, argv);
}

int ru_cli_report(const char *const *opts, char *const *argv)
{
    const char *pre[] = {"--json", ru_json, "--report", ru_text, NULL};
    unlink(ru_json);
    unlink(ru_text);
    return cli(pre, opts, argv);
}

int ru_preload(const char *const *envs, char *const *argv)
{
    const char *all[16];
    int n = 0;
    all[n++] = "LD_PRELOAD=" RUN_PRELOAD;
    for (; envs && *envs && n < 15; envs++)
        all[n++] = *envs;
    all[n] = NULL;
    return ru_run(argv, all, ru_out, ru_err, RU_RUN_MS);
}

int ru_plain(char *const *argv)
{
    return ru_run(argv, NULL, ru_out, ru_err, RU_RUN_MS);
}

char *ru_slurp(const char *path)
{
    static char *buf;
    free(buf);
    buf = fs_slurp_alloc(path, NULL);
    return buf;
}

const char *ru_line(const char *out, const char *prefix)
{
    static char line[512];
    size_t pl = strlen(prefix);
    for (const char *p = out; p && *p;
         p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, prefix, pl) != 0)
            continue;
        size_t n = strcspn(p, "\n");
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        return line;
    }
    fprintf(stderr, "no line starting with '%s' in:\n%s\n", prefix, out);
    fail();
    return "";
}

void ru_counts(const char *out, const char *prefix, int *hung, int *n,
               int *wrong)
{
    const char *l = ru_line(out, prefix);
    const char *h = strstr(l, "hung ");
    assert_non_null(h);
    *wrong = 0;
    int got = sscanf(h, "hung %d of %d, wrong %d", hung, n, wrong);
    assert_true(got >= 2);
}

int ru_fork_ms(const char *out, const char *prefix)
{
    const char *l = ru_line(out, prefix);
    const char *t = strstr(l, "fork took ");
    assert_non_null(t);
    return atoi(t + strlen("fork took "));
}

void ru_check_args(const char *first, ...)
{
    char *args[40];
    int n = 0;
    args[n++] = RU_PYTHON;
    args[n++] = RUN_SRC "/check_run.py";
    args[n++] = ru_json;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 39; a = va_arg(ap, const char *))
        args[n++] = (char *)a;
    va_end(ap);
    args[n] = NULL;
    char co[300];
    snprintf(co, sizeof co, "%s/check.txt", ru_tmp);
    int st = ru_run(args, NULL, co, co, RU_RUN_MS);
    if (st != 0) {
        fprintf(stderr, "%s", ru_slurp(co));
        fprintf(stderr, "report:\n%s\n", ru_slurp(ru_json));
    }
    assert_int_equal(st, 0);
}
