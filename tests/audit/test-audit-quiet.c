/* SPDX-License-Identifier: MIT */
/*
 * test-audit-quiet.c: correct programs stay quiet (issue 9, item 6).
 * Every example (examples/library, the demo's registered part: `demo
 * --registered`), every adapter suite (test-<lib>, without its deliberately
 * hazardous "*without*" scenarios), every workload (workload-<lib>, 100
 * forks) and target-sqlite-random run under `forksafe-audit --fail-on
 * warning` and must exit 0: no warning, no error. The findings judged and
 * not yet fixed are in quiet.supp, each with its reason. A program that is
 * not built here (an adapter whose library is missing) is skipped and
 * said so. Skipped in sanitizer builds, whose instrumented programs cannot
 * run under the interposer.
 */
#include "audit-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXAMPLES AUDIT_BIN "/../../examples"
#define ADAPTERS AUDIT_BIN "/../adapters"
#define SUPP     AUDIT_SRC "/quiet.supp"

static const char *const k_libs[] = {"stdio", "random", "openssl", "sqlite",
                                     "curl",  "uv",     "event",   "zmq"};
#define N_LIBS (sizeof k_libs / sizeof k_libs[0])

/* Programs whose audit did not exit 0, in the current test. */
static int s_loud;

/* Run program (a path) with up to 6 arguments under the audit; 1 if it ran
   (0: not built here). Counts it in s_loud unless the audit exits 0; each
   test fails at its end if any did, having run them all. */
static int quiet(const char *program, const char *const *args)
{
    if (access(program, X_OK) != 0) {
        printf("%s: not built here, skipped\n", program);
        return 0;
    }
    const char *argv[16] = {au_cli(), "--fail-on", "warning",
                            "--json", au_json,     "--suppressions",
                            SUPP,     "--",        program};
    int n = 9;
    for (int i = 0; args && args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    const char *envs[] = {"FS_TEST_SKIP=*without*", NULL};
    int st = au_run((char *const *)argv, envs, au_out, au_err, 120000);
    printf("%s: audit exit status %d\n", program, st);
    if (st != 0) {
        /* The warnings and errors, one line each, with the text report. */
        fprintf(stderr, "%s\n", au_slurp(au_err));
        s_loud++;
    }
    return 1;
}

static void test_examples_quiet(void **state)
{
    (void)state;
    if (FS_SANITIZED)
        skip();
    static const char *const reg[] = {"--registered", NULL};
    s_loud = 0;
    int n = quiet(EXAMPLES "/library", NULL);
    n += quiet(EXAMPLES "/demo", reg);
    assert_int_equal(s_loud, 0);
    if (n == 0)
        skip(); /* the examples are off on this C library */
}

static void test_adapter_suites_quiet(void **state)
{
    (void)state;
    if (FS_SANITIZED)
        skip();
    int n = 0;
    s_loud = 0;
    char path[512];
    for (size_t i = 0; i < N_LIBS; i++) {
        snprintf(path, sizeof path, "%s/test-%s", ADAPTERS, k_libs[i]);
        n += quiet(path, NULL);
    }
    assert_int_equal(s_loud, 0);
    if (n == 0)
        skip();
}

static void test_workloads_quiet(void **state)
{
    (void)state;
    if (FS_SANITIZED)
        skip();
    /* A fork deadline a loaded machine keeps (a refused fork fails the
       workload): this test is about findings, not about waiting. */
    static const char *const args[] = {"--forks", "100", "--timeout-ms", "3000",
                                       NULL};
    int n = 0;
    s_loud = 0;
    char path[512];
    for (size_t i = 0; i < N_LIBS; i++) {
        snprintf(path, sizeof path, "%s/workload-%s", ADAPTERS, k_libs[i]);
        n += quiet(path, args);
    }
    n += quiet(ADAPTERS "/target-sqlite-random", NULL);
    assert_int_equal(s_loud, 0);
    if (n == 0)
        skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_quiet),
        cmocka_unit_test(test_adapter_suites_quiet),
        cmocka_unit_test(test_workloads_quiet),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
