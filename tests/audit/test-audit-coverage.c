/* SPDX-License-Identifier: MIT */
/*
 * test-audit-coverage.c: no silent pass. A process the audit cannot see
 * (statically linked, set-user-ID, set-group-ID, 32-bit) is named in the
 * report with the reason and fails --fail-on; descendants started after
 * the program emptied or rewrote its environment (clearenv, execve with
 * an empty or NULL environment, the exec family, posix_spawn, system,
 * popen, env -i, python subprocess with env={}) are still audited; a fork
 * made when the process is out of descriptors (the thread census cannot
 * run) is reported and keeps the child's deadlock guard on.
 */
#include "audit-util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *fail_warning[] = {"--fail-on", "warning", NULL};
static const char *fail_error[] = {"--fail-on", "error", NULL};

static void not_audited(char *const *argv, const char *reason)
{
    char want[64];
    snprintf(want, sizeof want, "--detail-eq=not-audited:reason=\"%s\"",
             reason);
    int plain = au_plain(argv);
    char *plain_out = strdup(au_slurp(au_out));
    /* PROGRAM's own status and output are kept... */
    assert_int_equal(au_audit(NULL, argv), plain);
    assert_string_equal(au_slurp(au_out), plain_out);
    free(plain_out);
    au_check("--has=not-audited", want, "--top=complete=false",
             "--summary=processes_not_audited=1",
             "--severity=not-audited=error");
    /* ...and both gates fail when PROGRAM succeeded. */
    if (plain == 0) {
        assert_int_equal(au_audit(fail_warning, argv), 3);
        assert_non_null(strstr(au_slurp(au_err), "not audited"));
        assert_int_equal(au_audit(fail_error, argv), 3);
    }
}

static void test_static_program_is_not_audited(void **state)
{
    (void)state;
    char *argv[] = {AU_TARGET("target-forker-static"), NULL};
    not_audited(argv, "static");
    au_check("--detail=not-audited:via~command line",
             "--detail=not-audited:program~target-forker-static");
}

static void test_static_descendant_is_not_audited(void **state)
{
    (void)state;
    char *argv[] = {"/bin/sh", "-c",
                    AU_TARGET("target-forker-static") "; exit $?", NULL};
    not_audited(argv, "static");
    au_check("--detail=not-audited:via~execve");
}

/* A copy of target-threads owned by nobody (65534), set-user-ID or
   set-group-ID: as root, the exec changes the effective ID, so the loader
   runs in secure mode and ignores LD_PRELOAD. */
static void privileged_copy(const char *name, mode_t mode, char *path,
                            size_t len)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: needs root to make a set-ID copy\n");
        skip();
    }
    snprintf(path, len, "%s/%s", au_tmp, name);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cp %s %s && chown 65534:65534 %s && chmod %o %s && "
             "chmod 755 %s",
             AU_TARGET("target-forker"), path, path, (unsigned)mode, path,
             au_tmp);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(au_run(argv, NULL, NULL, NULL, AU_RUN_MS), 0);
}

static void test_setuid_program_is_not_audited(void **state)
{
    (void)state;
    char path[300];
    privileged_copy("suid-threads", 04755, path, sizeof path);
    char *argv[] = {path, NULL};
    not_audited(argv, "setuid");
    char cmd[400];
    snprintf(cmd, sizeof cmd, "%s >/dev/null", path);
    char *sh[] = {"/bin/sh", "-c", cmd, NULL};
    not_audited(sh, "setuid");
}

static void test_setgid_program_is_not_audited(void **state)
{
    (void)state;
    char path[300];
    privileged_copy("sgid-threads", 02755, path, sizeof path);
    char *argv[] = {path, NULL};
    not_audited(argv, "setgid");
}

static void test_32bit_program_is_not_audited(void **state)
{
    (void)state;
    if (access(AU_TARGET("target-forker32"), X_OK) != 0) {
        fprintf(stderr, "skipped: no 32-bit build (apt-get install "
                        "gcc-multilib)\n");
        skip();
    }
    char *argv[] = {"/bin/sh", "-c", AU_TARGET("target-forker32"), NULL};
    not_audited(argv, "elf-class");
    /* The loader did not complain about a 64-bit LD_PRELOAD entry. */
    assert_null(strstr(au_slurp(au_err), "ld.so"));
}

/* target-exec MODE target-threads: the descendant forks with a thread;
   it must be audited whatever the program did to its environment. */
static void exec_mode(const char *mode)
{
    char *argv[] = {AU_TARGET("target-exec"), (char *)mode,
                    AU_TARGET("target-threads"), NULL};
    int st = au_audit(NULL, argv);
    if (st != 0)
        fprintf(stderr, "%s: status %d\n%s\n", mode, st, au_slurp(au_err));
    assert_int_equal(st, 0);
    au_check("--frame=fork-with-threads:thread-start:function=announce_main",
             "--lacks=not-audited");
}

static void test_clearenv_then_execv_is_audited(void **state)
{
    (void)state;
    exec_mode("clearenv");
}

static void test_execve_empty_environment_is_audited(void **state)
{
    (void)state;
    exec_mode("empty");
    exec_mode("null");
}

static void test_exec_family_is_audited(void **state)
{
    (void)state;
    exec_mode("execl");
    exec_mode("execle");
    exec_mode("execvpe");
    exec_mode("fexecve");
}

static void test_preload_removed_or_rewritten_is_audited(void **state)
{
    (void)state;
    exec_mode("unset");
    exec_mode("rewrite");
}

static void test_posix_spawn_empty_environment_is_audited(void **state)
{
    (void)state;
    exec_mode("spawn");
}

static void test_system_and_popen_after_clearenv_are_audited(void **state)
{
    (void)state;
    exec_mode("system");
    exec_mode("popen");
}

static void test_env_i_is_audited(void **state)
{
    (void)state;
    char *argv[] = {"/usr/bin/env", "-i", AU_TARGET("target-threads"), NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    au_check("--frame=fork-with-threads:thread-start:function=announce_main");
}

static void test_python_subprocess_env_empty_is_audited(void **state)
{
    (void)state;
    char *argv[] = {AU_PYTHON, AUDIT_SRC "/py_subprocess_env.py",
                    AU_TARGET("target-threads"), NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    au_check("--frame=fork-with-threads:thread-start:function=announce_main");
}

/* The program's children see the environment it gave them, not the one
   the audit needed: what the interposer put back is removed again when
   the new program starts. Each run prints the same with and without the
   audit (with system() and popen() the shell adds PWD itself). */
static void same_env(char *const *argv)
{
    assert_int_equal(au_plain(argv), 0);
    char *plain = strdup(au_slurp(au_out));
    assert_int_equal(au_audit(NULL, argv), 0);
    if (strcmp(au_slurp(au_out), plain) != 0)
        fprintf(stderr, "%s %s: without the audit:\n%s\nwith it:\n%s\n",
                argv[1], argv[2], plain, au_slurp(au_out));
    assert_string_equal(au_slurp(au_out), plain);
    free(plain);
}

static void test_restored_variables_are_hidden_from_the_program(void **state)
{
    (void)state;
    const char *modes[] = {"empty", "clearenv", "spawn", "system",
                           "popen", "execle",   NULL};
    for (const char **m = modes; *m; m++) {
        char *argv[] = {AU_TARGET("target-exec"), (char *)*m, "/usr/bin/env",
                        NULL};
        same_env(argv);
    }
    char *empty[] = {AU_TARGET("target-exec"), "empty", "/usr/bin/env", NULL};
    assert_int_equal(au_audit(NULL, empty), 0);
    assert_string_equal(au_slurp(au_out), "");
    char *unset[] = {AU_TARGET("target-exec"),   "unset", "/bin/sh", "-c",
                     "echo ${LD_PRELOAD-unset}", NULL};
    same_env(unset);
    assert_string_equal(au_slurp(au_out), "unset\n");
    char *rewrite[] = {AU_TARGET("target-exec"), "rewrite", "/bin/sh", "-c",
                       "echo \"[$LD_PRELOAD]\"", NULL};
    same_env(rewrite);
    assert_string_equal(au_slurp(au_out), "[]\n");
}

/* exec of something that is not a regular file fails (EACCES), and the
   audit's look at the target must not open it: a FIFO would block. */
static void test_exec_of_a_fifo_does_not_block(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "cd %s && rm -f fifo && mkfifo fifo && chmod +x fifo && "
             "(exec ./fifo) 2>/dev/null; echo status $?",
             au_tmp);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(au_plain(argv), 0);
    char *plain = strdup(au_slurp(au_out));
    assert_int_equal(au_audit(NULL, argv), 0);
    assert_string_equal(au_slurp(au_out), plain);
    free(plain);
}

/* Out of descriptors at the fork: /proc/self/task cannot be opened. The
   fork is reported as "could not count threads" and the child still gets
   the deadlock guard (before, it was taken for single-threaded and hung;
   the target killed it after 10 s and exited 3). */
static void test_fork_out_of_descriptors_keeps_guard(void **state)
{
    (void)state;
    const char *opts[] = {"--grace-ms", "200", NULL};
    char *argv[] = {AU_TARGET("target-emfile"), NULL};
    assert_int_equal(au_audit(opts, argv), 0);
    au_check("--has=thread-census-failed", "--has=child-deadlock",
             "--message=thread-census-failed~could not count threads",
             "--detail-eq=thread-census-failed:errno=24",
             "--top=complete=false", "--severity=thread-census-failed=error");
    /* Counted, named, and failing the gate. */
    const char *gate[] = {"--fail-on", "error", "--grace-ms", "200", NULL};
    assert_int_equal(au_audit(gate, argv), 3);
}

int main(void)
{
    fs_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_static_program_is_not_audited),
        cmocka_unit_test(test_static_descendant_is_not_audited),
        cmocka_unit_test(test_setuid_program_is_not_audited),
        cmocka_unit_test(test_setgid_program_is_not_audited),
        cmocka_unit_test(test_32bit_program_is_not_audited),
        cmocka_unit_test(test_clearenv_then_execv_is_audited),
        cmocka_unit_test(test_execve_empty_environment_is_audited),
        cmocka_unit_test(test_exec_family_is_audited),
        cmocka_unit_test(test_preload_removed_or_rewritten_is_audited),
        cmocka_unit_test(test_posix_spawn_empty_environment_is_audited),
        cmocka_unit_test(test_system_and_popen_after_clearenv_are_audited),
        cmocka_unit_test(test_env_i_is_audited),
        cmocka_unit_test(test_python_subprocess_env_empty_is_audited),
        cmocka_unit_test(test_restored_variables_are_hidden_from_the_program),
        cmocka_unit_test(test_exec_of_a_fifo_does_not_block),
        cmocka_unit_test(test_fork_out_of_descriptors_keeps_guard),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
