/* SPDX-License-Identifier: MIT */
/*
 * tests/common.h: helpers shared by the test suites. Forking tests check
 * their children through waitpid() and the exit status, always with a
 * deadline, so that a hang is a failure and never a stuck run.
 */
#ifndef FORKSAFE_TESTS_COMMON_H
#define FORKSAFE_TESTS_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sys/types.h>

/* Kill the whole test program with SIGALRM after `seconds`, so a hang in
   the parent fails the suite. Call it first in main(). */
void fs_watchdog(unsigned seconds);

/* Result of fs_wait: the child exited with a status, died of a signal, or
   was still running at the deadline (then it is killed and reaped). */
enum fs_wait_result { FS_EXITED, FS_SIGNALED, FS_HUNG };

/* Wait for child pid for at most timeout_ms. *code receives the exit status
   or the signal number. A hung child is killed with SIGKILL and reaped. */
enum fs_wait_result fs_wait(pid_t pid, unsigned timeout_ms, int *code);

/* Assert that child pid exits with status 0 within timeout_ms. */
#define fs_assert_child_ok(pid, timeout_ms)                                    \
    do {                                                                       \
        int fs_code_ = -1;                                                     \
        enum fs_wait_result fs_r_ = fs_wait((pid), (timeout_ms), &fs_code_);   \
        assert_int_equal(fs_r_, FS_EXITED);                                    \
        assert_int_equal(fs_code_, 0);                                         \
    } while (0)

/* A second thread that stays alive (blocked) until fs_idle_stop(), so that
   the process is multi-threaded and fork takes the full path. */
void fs_idle_start(void);
void fs_idle_stop(void);

/* Run fn(mode, fd) in a new process, fd being the write end of a pipe,
   so that one scenario can run with and without the thing under test in
   fresh processes. Everything it and its descendants write to the pipe
   within 40 s is collected into a malloc'd, NUL-terminated *buf (*len
   bytes), which the caller frees; SIGPIPE is ignored in the scenario.
   Returns its exit status, or -1 if it died of a signal or was still
   running 10 s after the pipe closed. */
int fs_run_scenario_alloc(int (*fn)(int mode, int fd), int mode, char **buf,
                          size_t *len);

/* The same into out (cap bytes with the NUL; the rest is dropped). */
int fs_run_scenario(int (*fn)(int mode, int fd), int mode, char *out,
                    size_t cap);

/* Run fn(mode, fd) as fs_run_scenario() does and assert that it exited
   0; otherwise the test fails with the exit status (-1: killed or hung)
   and what the scenario wrote (its first 4 KiB). An exit status of 77
   marks the test skipped: the scenario found this machine lacks what it
   needs (a user namespace, seccomp, an unprivileged uid, ...). */
void fs_assert_scenario(int (*fn)(int mode, int fd), int mode);

/* As fs_assert_scenario(), and then assert that what the scenario wrote
   is exactly expected (unless expected is NULL); the failure shows both. */
void fs_expect_scenario(int (*fn)(int mode, int fd), int mode,
                        const char *expected);

/* FS_ASAN is 1 under AddressSanitizer. GCC 12's (and clang 14's) ASan
   allocator takes no locks around fork(): a child forked while another
   thread is inside malloc() can hang in the allocator (glibc's own malloc
   is made safe by fork itself). Tests whose threads allocate while the
   main thread forks hold fs_asan_gate for reading around that work under
   ASan; fs_asan_gate_register() registers the gate with forksafe at an
   outer rank, so every fork waits until no such thread is allocating. */
#if defined(__SANITIZE_ADDRESS__)
#define FS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FS_ASAN 1
#endif
#endif
#ifndef FS_ASAN
#define FS_ASAN 0
#endif

extern pthread_rwlock_t fs_asan_gate;
/* Register fs_asan_gate (rank FORKSAFE_RANK_APP - 1) under ASan; no-op
   otherwise. Returns 0 or an errno value. */
int fs_asan_gate_register(void);
void fs_asan_gate_unregister(void);
/* Around an allocating stretch in a thread, under ASan only. */
void fs_asan_enter(void);
void fs_asan_leave(void);

struct forksafe_fork_opts;

/* Call forksafe_fork(opts) where the test expects it to fail. If a child is
   made anyway, it exits at once, is reaped, and the test fails. Returns the
   errno of the failure; *took_ms (may be NULL) receives how long the call
   took. */
int fs_fork_must_fail(const struct forksafe_fork_opts *opts, uint64_t *took_ms);

/* The platform layer the library uses in this process ("glibc", "musl" or
   "posix"), read from its report, so a test can expect what that layer
   promises (docs/platforms.md). */
const char *fs_layer(void);
/* Whether fs_layer() is name. */
int fs_layer_is(const char *name);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t fs_now_ms(void);

/* Start argv[0] (a path, no PATH search) with extra environment entries
   envs ("K=V", NULL-terminated, may be NULL), stdin from /dev/null,
   stdout to file o and stderr to file e (NULL: /dev/null; created or
   truncated), no core file. FS_PROG_DEFAULT_SIGNALS also resets SIGINT
   and SIGQUIT to their defaults (a background job starts with them
   ignored). In the child: status 120 if a file cannot be opened, 121 if
   the program cannot be run. */
#define FS_PROG_DEFAULT_SIGNALS 1
pid_t fs_prog_start(char *const argv[], const char *const *envs, const char *o,
                    const char *e, int flags);
/* fs_prog_start, then wait at most ms: returns the exit status, or
   128 + N if killed by signal N (*signaled, if not NULL, says which it
   was). A program that outlives ms fails the test. */
int fs_prog_run(char *const argv[], const char *const *envs, const char *o,
                const char *e, int flags, unsigned ms, int *signaled);
/* The contents of path (empty if it cannot be read), NUL-terminated, in a
   buffer the caller frees; *len (if not NULL) is its length. */
char *fs_slurp_alloc(const char *path, size_t *len);

#endif
