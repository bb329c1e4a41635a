/* SPDX-License-Identifier: MIT */
/*
 * test-report.c: forksafe_thread_count() and forksafe_audit_write(): the
 * text and JSON reports list every entry (with its holder when held), the
 * adapters and every live thread; the JSON parses and has the documented
 * fields (checked with python3's json module); bad input is refused.
 */
#include "common.h"

#include "forksafe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char *capture(unsigned flags)
{
    char path[] = "/tmp/forksafe-report-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(forksafe_audit_write(fd, flags), 0);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);
    assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    return buf;
}

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

static void test_thread_count(void **state)
{
    (void)state;
    assert_int_equal(forksafe_thread_count(), 1);
    fs_idle_start();
    assert_int_equal(forksafe_thread_count(), 2);
    fs_idle_stop();
    assert_int_equal(forksafe_thread_count(), 1);
}

static void test_text_report(void **state)
{
    (void)state;
    pthread_setname_np(pthread_self(), "reporter");
    assert_int_equal(forksafe_register_mutex(&held, "held \"quoted\"", 1500),
                     0);
    assert_int_equal(forksafe_register_rwlock(&rw, "free rwlock", 1600), 0);
    assert_int_equal(forksafe_register_adapter("testlib"), 0);
    pthread_mutex_lock(&held);
    char *t = capture(0);
    char tid[32];
    snprintf(tid, sizeof tid, "%d (reporter)", (int)gettid());
    assert_non_null(strstr(t, "held \"quoted\""));
    assert_non_null(strstr(t, "free rwlock"));
    if (fs_layer_is("glibc")) /* musl, POSIX: no owner in a normal mutex */
        assert_non_null(strstr(t, tid));
    assert_non_null(strstr(t, "testlib"));
    assert_non_null(strstr(t, "test-report")); /* the owning object */
    /* Prepare order: rank 1500 before 1600. */
    assert_true(strstr(t, "held \"quoted\"") < strstr(t, "free rwlock"));
    free(t);
    pthread_mutex_unlock(&held);
}

static void test_json_report(void **state)
{
    (void)state;
    fs_idle_start();
    pthread_mutex_lock(&held);
    char *j = capture(FORKSAFE_AUDIT_JSON);
    pthread_mutex_unlock(&held);
    fs_idle_stop();
    char path[] = "/tmp/forksafe-json-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, j, strlen(j)), (ssize_t)strlen(j));
    close(fd);
    char cmd[2048];
    snprintf(
        cmd, sizeof cmd,
        "python3 -c 'import json,sys; d=json.load(open(sys.argv[1]));"
        "assert d[\"schema\"]==\"forksafe-report\" and d[\"version\"]==1;"
        "e={x[\"name\"]:x for x in d[\"entries\"]};"
        "h=e[\"held \\\"quoted\\\"\"];"
        "L=d[\"platform\"][\"layer\"];"
        "assert (h[\"held\"] and h[\"holder\"][\"tid\"]==%d if L==\"glibc\""
        " else h[\"held\"] and h[\"holder\"] is None if L==\"musl\""
        " else h[\"held\"] is None), h;"
        "assert h[\"rank\"]==1500 and h[\"kind\"]==\"mutex\";"
        "assert e[\"free rwlock\"][\"held\"] is (None if L==\"posix\""
        " else False);"
        "assert \"testlib\" in d[\"adapters\"];"
        "assert len(d[\"threads\"])==2, d[\"threads\"];"
        "assert all(\"tid\" in t and \"name\" in t for t in d[\"threads\"])'"
        " %s",
        (int)gettid(), path);
    int rc = system(cmd);
    unlink(path);
    if (rc != 0)
        fail_msg("JSON check failed (%d):\n%s", rc, j);
    free(j);
}

static void test_bad_input(void **state)
{
    (void)state;
    assert_int_equal(forksafe_audit_write(-1, 0), EINVAL);
    assert_int_equal(forksafe_audit_write(1, 0x100), EINVAL);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[1]);
    assert_int_equal(forksafe_audit_write(fds[1], 0), EINVAL); /* closed */
    close(fds[0]);
    /* A write error is returned: a read-only descriptor. */
    int ro = open("/dev/null", O_RDONLY);
    assert_int_equal(forksafe_audit_write(ro, 0), EBADF);
    close(ro);
}

int main(void)
{
    fs_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_count),
        cmocka_unit_test(test_text_report),
        cmocka_unit_test(test_json_report),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
