/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-adapters-audit.c: the adapters' ranks checked
 * against the real libraries by forksafe-audit --fail-on error, which
 * exits 3 on any error finding (a lock-order violation among registered
 * locks, a child blocked on a lock). The single-threaded SQLite program of
 * issue 11 (target-sqlite-random; it exited 3 with the static mutexes at
 * guessed ranks), and every workload (workload-<lib>, 100 forks here; CI
 * runs 1,000 with tests/adapters/audit-adapters.sh), must come out with
 * exit status 0. Skipped in sanitizer builds, whose instrumented programs
 * cannot run under the audit's interposer.
 */
#include "common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run the audit on program (in AUDIT_DIR) with args; its exit status, or
   -1. Output goes to a file that is printed when the status is not 0. */
static int audit(const char *program, const char *args)
{
    char out[] = "/tmp/fs-adapters-audit-XXXXXX";
    int fd = mkstemp(out);
    if (fd < 0)
        return -1;
    close(fd);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' --fail-on error -- ./%s %s >'%s' 2>&1", AUDIT_DIR,
             AUDIT_CLI, program, args, out);
    int st = system(cmd);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code != 0) {
        snprintf(cmd, sizeof cmd,
                 "grep -E '^(error|fork|child|thread)' '%s' "
                 "| head -8",
                 out);
        (void)!system(cmd);
    }
    unlink(out);
    return code;
}

static void test_sqlite_random_single_thread_audit_clean(void **state)
{
    (void)state;
    if (FS_SANITIZED)
        skip();
    if (access(AUDIT_DIR "/target-sqlite-random", X_OK) != 0)
        skip();
    assert_int_equal(audit("target-sqlite-random", ""), 0);
}

static void test_workloads_audit_clean(void **state)
{
    (void)state;
    if (FS_SANITIZED)
        skip();
    char list[] = WORKLOADS;
    /* Workloads left out, as words (.ci/trixie: docs/platforms.md). */
    const char *skip = getenv("FS_WORKLOADS_SKIP");
    int n = 0;
    for (char *w = strtok(list, " "); w != NULL; w = strtok(NULL, " ")) {
        size_t len = strlen(w);
        const char *at = skip ? strstr(skip, w) : NULL;
        if (at && (at == skip || at[-1] == ' ') &&
            (at[len] == '\0' || at[len] == ' ')) {
            printf("%s left out (FS_WORKLOADS_SKIP)\n", w);
            continue;
        }
        printf("%s under forksafe-audit --fail-on error\n", w);
        assert_int_equal(audit(w, "--forks 100 --timeout-ms 300"), 0);
        n++;
    }
    assert_true(n > 0);
}

int main(void)
{
    fs_watchdog(500);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlite_random_single_thread_audit_clean),
        cmocka_unit_test(test_workloads_audit_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
