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

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t fs_now_ms(void);

#endif
