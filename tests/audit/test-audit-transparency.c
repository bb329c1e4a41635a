/* SPDX-License-Identifier: MIT */
/*
 * test-audit-transparency.c: running under forksafe-audit changes nothing
 * about the program. Locks whose memory went away before a fork (closed,
 * unmapped, moved, freed, unloaded) must not crash it, in C and in
 * CPython's multiprocessing; real programs nobody here wrote (bash, make,
 * git, xz, perl, python) print the same and exit the same with and
 * without the audit; signal dispositions and the signal mask the program
 * inherits are its own.
 */
#include "audit-util.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void released(const char *mode)
{
    char *argv[] = {AU_TARGET("target-release"), (char *)mode, AUDIT_BIN, NULL};
    char want[64];
    snprintf(want, sizeof want, "%s: ok\n", mode);
    assert_int_equal(au_plain(argv), 0);
    assert_string_equal(au_slurp(au_out), want);
    assert_int_equal(au_audit(NULL, argv), 0);
    assert_string_equal(au_slurp(au_out), want);
    au_check("--has=fork-with-threads");
}

/* The C reproducer: a thread does sem_open, sem_wait, sem_close
   and stays alive; main forks. Was SIGSEGV (status 139) under the audit. */
static void test_sem_closed_before_fork(void **state)
{
    (void)state;
    released("sem_close");
}

static void test_sem_unmapped_before_fork(void **state)
{
    (void)state;
    released("munmap");
}

static void test_sem_moved_by_mremap_before_fork(void **state)
{
    (void)state;
    released("mremap");
}

static void test_sem_freed_by_glibc_before_fork(void **state)
{
    (void)state;
    released("free");
}

static void test_sem_unloaded_with_dlclose_before_fork(void **state)
{
    (void)state;
    released("dlclose");
}

static void test_sem_detached_with_shmdt_before_fork(void **state)
{
    (void)state;
    released("shmdt");
}

/* Memory freed without destroying its lock, then reused for a new lock by
   another thread: the new lock is not the old one (no shared lock). */
static void test_lock_in_reused_memory_is_a_new_lock(void **state)
{
    (void)state;
    char *argv[] = {AU_TARGET("target-release"), "reuse", NULL};
    assert_int_equal(au_audit(NULL, argv), 0);
    assert_string_equal(au_slurp(au_out), "reuse: ok\n");
    au_check("--kinds=");
}

/* The python reproducer: a thread waits on a multiprocessing
   Event, drops it, and stays alive while a Process is started. */
static void test_python_event_then_process(void **state)
{
    (void)state;
    char *argv[] = {AU_PYTHON, AUDIT_SRC "/py_event_process.py", NULL};
    assert_int_equal(au_plain(argv), 0);
    char *plain = strdup(au_slurp(au_out));
    assert_int_equal(au_audit(NULL, argv), 0);
    assert_string_equal(au_slurp(au_out), plain);
    assert_string_equal(plain, "child ok\nparent ok 0\n");
    free(plain);
    au_check("--has=fork-with-threads");
}

/* Run a shell command with and without the audit: same stdout, same
   status. The command runs in a fresh scratch directory. */
static void same(const char *what, const char *script)
{
    char dir[300], cmd[4096];
    snprintf(dir, sizeof dir, "%s/scratch", au_tmp);
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir %s && cd %s && %s", dir, dir,
             dir, script);
    char *argv[] = {"/bin/bash", "-c", cmd, NULL};
    int plain_st = au_plain(argv);
    char *plain = strdup(au_slurp(au_out));
    int audit_st = au_audit(NULL, argv);
    char *audited = au_slurp(au_out);
    if (plain_st != audit_st || strcmp(plain, audited) != 0)
        fprintf(stderr,
                "%s: without the audit (status %d):\n%s\nwith it "
                "(status %d):\n%s\naudit stderr:\n%s\n",
                what, plain_st, plain, audit_st, audited, au_slurp(au_err));
    assert_int_equal(plain_st, audit_st);
    assert_string_equal(plain, audited);
    free(plain);
    au_check("--lacks=not-audited", "--lacks=records-lost",
             "--min=processes_audited=2", "--top=complete=true");
}

static void test_bash_pipelines_and_jobs(void **state)
{
    (void)state;
    same("bash", "for i in 3 1 2; do echo $i; done | sort | tr 1 x; "
                 "(echo sub; exit 4); echo status $?; "
                 "sleep 0.05 & wait $!; echo waited $?; "
                 "x=$(printf '%s' abc | wc -c); echo $x; exit 7");
}

static void test_make_recursive_parallel(void **state)
{
    (void)state;
    same("make",
         "printf 'all: a b\\n\\t@echo top done\\na:\\n\\t@$(MAKE) -s -C sub "
         "x\\nb:\\n\\t@echo b >b.out\\n' > Makefile && mkdir sub && "
         "printf 'x:\\n\\t@echo sub x\\n' > sub/Makefile && "
         "make -s -j2 && cat b.out");
}

static void test_git_commit_and_log(void **state)
{
    (void)state;
    same("git", "git init -q . && git config user.email a@b.c && "
                "git config user.name tester && echo one > f && git add f && "
                "GIT_COMMITTER_DATE=2000-01-01T00:00:00 "
                "GIT_AUTHOR_DATE=2000-01-01T00:00:00 git commit -qm first && "
                "git log --format='%H %s' && git status --short && "
                "git gc -q && git count-objects -v | grep -c pack");
}

static void test_xz_threads(void **state)
{
    (void)state;
    same("xz", "seq 1 200000 > data && xz -T2 -k data && "
               "xz -T2 -dc data.xz | md5sum && cmp data <(xz -dc data.xz) "
               "&& echo same");
}

static void test_perl_system_and_fork(void **state)
{
    (void)state;
    same("perl", "perl -e 'print qq(start\\n); system(q(echo from system)); "
                 "my $p = fork; if (!$p) { print qq(child\\n); exit 3 } "
                 "waitpid($p, 0); print qq(child status ), $? >> 8, qq(\\n); "
                 "print `echo backticks`;'");
}

static void test_python_subprocess_empty_env(void **state)
{
    (void)state;
    /* CPython's test_subprocess checks the same: env={} is empty. */
    same("python", AU_PYTHON " " AUDIT_SRC "/py_subprocess_env.py " AU_PYTHON
                             " " AUDIT_SRC "/py_env_keys.py");
    assert_string_equal(au_slurp(au_out), "[]\n");
}

/* Attacks that held (adversary round 22, af93108): more real programs,
   the same output and status with and without the audit. sort forks its
   --compress-program from a process with sorting threads; sqlite3 runs
   .shell and .system through system(); tar starts xz -T2 (threads) both
   ways; perl's ithreads join, then fork; CPython's three start methods,
   ProcessPoolExecutor, a Queue through a forked Process, a handled
   signal. */
static void test_sort_parallel_compress_program(void **state)
{
    (void)state;
    same("sort", "seq 1 300000 | sort -R --random-source=/dev/zero > in && "
                 "sort -n --parallel=2 -S 200K -T . --compress-program=gzip "
                 "in | md5sum && ls | wc -l");
}

static void test_sqlite3_shell_and_system(void **state)
{
    (void)state;
    if (access("/usr/bin/sqlite3", X_OK) != 0)
        skip();
    same("sqlite3", "sqlite3 db 'create table t(a); insert into t values(1),"
                    "(2);' && sqlite3 db 'select sum(a) from t;' "
                    "'.shell echo shell' '.system echo system; exit 3'; "
                    "echo status $?");
}

static void test_tar_through_threaded_xz(void **state)
{
    (void)state;
    same("tar", "seq 1 100000 > f && tar -cf a.txz -I 'xz -T2' f && "
                "tar -xOf a.txz -I 'xz -T2 -d' f | md5sum");
}

static void test_perl_threads_then_fork(void **state)
{
    (void)state;
    same("perl threads",
         "perl -Mthreads -e 'my @t = map { threads->create(sub { my $x = 0; "
         "$x += $_ for 1..10000; $x }) } 1..3; print join(q( ), map "
         "{ $_->join } @t), qq(\n); my $p = fork; if (!$p) { print "
         "qq(kid\n); exit 5 } waitpid($p, 0); print $? >> 8, qq(\n)'");
}

static void test_python_start_methods_and_pools(void **state)
{
    (void)state;
    same("python mp", AU_PYTHON " " AUDIT_SRC "/py_mp_methods.py");
    assert_non_null(strstr(au_slurp(au_out), "forkserver 40425\n"));
}

static void test_env_i_sees_empty_environment(void **state)
{
    (void)state;
    same("env -i", "env -i /usr/bin/env; echo status $?");
}

/* The signal dispositions and the signal mask that PROGRAM inherits are
   the ones forksafe-audit inherited (the CLI ignores SIGINT itself, but
   must not pass that on, nor reset an inherited SIG_IGN to the default).
   CPython's InterruptMainTests depend on it. */
static void test_inherited_signal_state_is_kept(void **state)
{
    (void)state;
    char cmd[600];
    const char *show = "grep -E \"^Sig(Ign|Blk)\" /proc/self/status";
    snprintf(cmd, sizeof cmd, "trap '' INT QUIT; %s; %s --json %s -- %s", show,
             AUDIT_CLI, au_json, show);
    char *argv[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(au_run(argv, NULL, au_out, au_err, AU_RUN_MS), 0);
    char *o = au_slurp(au_out);
    /* Two identical pairs of lines: outside and inside the audit. */
    size_t half = strlen(o) / 2;
    assert_true(half > 10);
    assert_memory_equal(o, o + half, half);
    assert_non_null(strstr(o, "SigIgn:\t0000000000000006"));
    assert_int_equal(au_validate(au_json), 0);

    snprintf(cmd, sizeof cmd, "%s; %s --json %s -- %s", show, AUDIT_CLI,
             au_json, show);
    char *argv2[] = {"/bin/sh", "-c", cmd, NULL};
    assert_int_equal(au_run(argv2, NULL, au_out, au_err, AU_RUN_MS), 0);
    o = au_slurp(au_out);
    half = strlen(o) / 2;
    assert_memory_equal(o, o + half, half);
    assert_null(strstr(o, "SigIgn:\t0000000000000006"));
    assert_int_equal(au_validate(au_json), 0);
}

int main(void)
{
    fs_watchdog(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sem_closed_before_fork),
        cmocka_unit_test(test_sem_unmapped_before_fork),
        cmocka_unit_test(test_sem_moved_by_mremap_before_fork),
        cmocka_unit_test(test_sem_freed_by_glibc_before_fork),
        cmocka_unit_test(test_sem_unloaded_with_dlclose_before_fork),
        cmocka_unit_test(test_sem_detached_with_shmdt_before_fork),
        cmocka_unit_test(test_lock_in_reused_memory_is_a_new_lock),
        cmocka_unit_test(test_python_event_then_process),
        cmocka_unit_test(test_bash_pipelines_and_jobs),
        cmocka_unit_test(test_make_recursive_parallel),
        cmocka_unit_test(test_git_commit_and_log),
        cmocka_unit_test(test_xz_threads),
        cmocka_unit_test(test_perl_system_and_fork),
        cmocka_unit_test(test_python_subprocess_empty_env),
        cmocka_unit_test(test_env_i_sees_empty_environment),
        cmocka_unit_test(test_sort_parallel_compress_program),
        cmocka_unit_test(test_sqlite3_shell_and_system),
        cmocka_unit_test(test_tar_through_threaded_xz),
        cmocka_unit_test(test_perl_threads_then_fork),
        cmocka_unit_test(test_python_start_methods_and_pools),
        cmocka_unit_test(test_inherited_signal_state_is_kept),
    };
    return cmocka_run_group_tests(tests, au_setup, au_teardown);
}
