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
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fo = open(o ? o : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(e ? e : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fi = open("/dev/null", O_RDONLY);
        if (fo < 0 || fe < 0 || fi < 0)
            _exit(120);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        for (; envs && *envs; envs++)
            putenv((char *)*envs);
        struct rlimit nocore = {0, 0};
        setrlimit(RLIMIT_CORE, &nocore);
        signal(SIGINT, SIG_DFL);
        signal(SIGQUIT, SIG_DFL);
        execv(argv[0], argv);
        _exit(121);
    }
    int code = -1;
    enum fs_wait_result r = fs_wait(pid, ms, &code);
    if (r == FS_HUNG)
        fprintf(stderr, "hung: %s %s\n", argv[0], argv[1] ? argv[1] : "");
    assert_int_not_equal(r, FS_HUNG);
    ru_signaled = r == FS_SIGNALED;
    return r == FS_EXITED ? code : 128 + code;
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
    size_t cap = 4096, n = 0;
    buf = malloc(cap);
    assert_non_null(buf);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t got;
        while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
            n += got;
            if (cap - n <= 1) {
                cap *= 2;
                buf = realloc(buf, cap);
                assert_non_null(buf);
            }
        }
        fclose(f);
    }
    buf[n] = '\0';
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
