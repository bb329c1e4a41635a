/* SPDX-License-Identifier: MIT */
/*
 * test-report.c: forksafe_thread_count() and forksafe_audit_write(): the
 * text and JSON reports list every entry (with its holder when held), the
 * adapters and every live thread; the JSON is valid against the published
 * schema (docs/forksafe.schema.json, checked with python3-jsonschema) and
 * has the documented values (also after a plain fork() had to skip a
 * lock), with a name that is not UTF-8 carried as valid UTF-8 plus its
 * exact bytes; bad input is refused.
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

/* Validate the JSON document j against the schema, then run the python
   expression checks (with d bound to the document) on it. */
static void check_json(const char *j, const char *checks)
{
    char path[] = "/tmp/forksafe-json-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, j, strlen(j)), (ssize_t)strlen(j));
    close(fd);
    char script[4096];
    snprintf(script, sizeof script,
             "import json, sys, jsonschema\n"
             "raw = open(sys.argv[1], 'rb').read()\n"
             "d = json.loads(raw.decode('utf-8', 'strict'))\n"
             "s = json.load(open('%s/docs/forksafe.schema.json'))\n"
             "jsonschema.Draft202012Validator(s).validate(d)\n"
             "%s\n",
             FS_TOPDIR, checks);
    char spath[] = "/tmp/forksafe-json-check-XXXXXX";
    int sfd = mkstemp(spath);
    assert_true(sfd >= 0);
    assert_int_equal(write(sfd, script, strlen(script)),
                     (ssize_t)strlen(script));
    close(sfd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", spath, path);
    int rc = system(cmd);
    unlink(path);
    unlink(spath);
    if (rc != 0)
        fail_msg("JSON check failed (%d):\n%s", rc, j);
}

static void test_json_report(void **state)
{
    (void)state;
    fs_idle_start();
    pthread_mutex_lock(&held);
    char *j = capture(FORKSAFE_AUDIT_JSON);
    pthread_mutex_unlock(&held);
    fs_idle_stop();
    char checks[2048];
    snprintf(checks, sizeof checks,
             "assert d['schema'] == 'forksafe-report'\n"
             "assert d['schema_version'] == 2 and 'version' not in d\n"
             "e = {x['name']: x for x in d['entries']}\n"
             "h = e['held \"quoted\"']\n"
             "L = d['platform']['layer']\n"
             "if L == 'glibc':\n"
             "    assert h['held'] is True and h['holder']['tid'] == %d, h\n"
             "elif L == 'musl':\n"
             "    assert h['held'] is True and h['holder'] is None, h\n"
             "else:\n"
             "    assert h['held'] is None and h['holder'] is None, h\n"
             "assert h['rank'] == 1500 and h['kind'] == 'mutex'\n"
             "assert e['free rwlock']['held'] is (None if L == 'posix' "
             "else False)\n"
             "assert e['free rwlock']['holder'] is None\n"
             "assert 'testlib' in d['adapters']\n"
             "assert d['plain_fork_failures'] == {'count': 0, 'last': None}\n"
             "assert len(d['threads']) == 2, d['threads']\n",
             (int)gettid());
    check_json(j, checks);
    free(j);
}

static void *returns_at_once(void *arg)
{
    return arg;
}

/* The report's thread list leaves out a thread that has begun to exit:
   one joined a moment ago is still in /proc/self/task for a while (seen:
   test_json_report listing the idle thread of the test before it). Joined
   by spinning on pthread_tryjoin_np(), which returns as soon as the thread
   has cleared its TID, as early as a join can. */
static void test_report_right_after_a_join(void **state)
{
    (void)state;
    int listed_twice = 0;
    for (int i = 0; i < 1000; i++) {
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, returns_at_once, NULL), 0);
        while (pthread_tryjoin_np(th, NULL) == EBUSY)
            ;
        char *t = capture(0);
        const char *list = strstr(t, "threads:\n");
        assert_non_null(list);
        int lines = 0;
        for (const char *p = list + strlen("threads:\n"); *p; p++)
            lines += *p == '\n';
        listed_twice += lines != 1;
        free(t);
    }
    if (listed_twice)
        fail_msg("%d of 1000 reports listed a joined thread", listed_twice);
}

/* A name that is not UTF-8 (an entry name and this thread's name) comes
   out as valid UTF-8 with U+FFFD, and its exact bytes beside it in hex. */
static pthread_mutex_t badname = PTHREAD_MUTEX_INITIALIZER;

static void test_json_report_not_utf8(void **state)
{
    (void)state;
    assert_int_equal(forksafe_register_mutex(&badname, "bad\xff\xfe\\\t", 1700),
                     0);
    pthread_setname_np(pthread_self(), "t\xc3(");
    char *j = capture(FORKSAFE_AUDIT_JSON);
    pthread_setname_np(pthread_self(), "reporter");
    check_json(
        j, "e = [x for x in d['entries'] if x['rank'] == 1700][0]\n"
           "assert e['name'] == 'bad\\ufffd\\ufffd\\\\\\t', e\n"
           "assert bytes.fromhex(e['name_hex']) == b'bad\\xff\\xfe\\\\\\t'\n"
           "t = [x for x in d['threads'] if 'name_hex' in x][0]\n"
           "assert bytes.fromhex(t['name_hex']) == b't\\xc3('\n"
           "assert all('name_hex' not in x for x in d['entries'] "
           "if x['rank'] != 1700)\n");
    free(j);
    assert_int_equal(forksafe_unregister(&badname), 0);
}

/* A plain fork() that had to skip a lock (it did not yield by the
   deadline: FORKSAFE_TIMEOUT_MS=300 here, see main) is in the report as a
   count and the text of the last failure, which names the lock: valid
   UTF-8, with its exact bytes in last_hex when the name is not. */
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;
static int busy_ready[2], busy_release[2];

static void *busy_main(void *arg)
{
    (void)arg;
    char c = 'r';
    pthread_mutex_lock(&busy);
    if (write(busy_ready[1], &c, 1) != 1 || read(busy_release[0], &c, 1) != 1)
        abort();
    pthread_mutex_unlock(&busy);
    return NULL;
}

static void test_json_report_after_plain_fork_failure(void **state)
{
    (void)state;
    assert_int_equal(forksafe_register_mutex(&busy, "busy\xff\t", 1800), 0);
    assert_int_equal(pipe(busy_ready), 0);
    assert_int_equal(pipe(busy_release), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, busy_main, NULL), 0);
    char c;
    assert_int_equal(read(busy_ready[0], &c, 1), 1);
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    assert_true(pid > 0);
    fs_assert_child_ok(pid, 5000);
    char *j = capture(FORKSAFE_AUDIT_JSON);
    assert_int_equal(write(busy_release[1], "x", 1), 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    check_json(j,
               "f = d['plain_fork_failures']\n"
               "assert f['count'] == 1, f\n"
               "assert 'busy\\ufffd\\t' in f['last'], f\n"
               "assert b'busy\\xff\\t' in bytes.fromhex(f['last_hex']), f\n");
    free(j);
    assert_int_equal(forksafe_unregister(&busy), 0);
    close(busy_ready[0]);
    close(busy_ready[1]);
    close(busy_release[0]);
    close(busy_release[1]);
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

int main(int argc, char **argv)
{
    (void)argc;
    /* The default timeout is read when the library starts: run this
       program again with a short one, for the plain fork() that must skip
       a lock. */
    if (!getenv("FORKSAFE_TIMEOUT_MS")) {
        setenv("FORKSAFE_TIMEOUT_MS", "300", 1);
        execv("/proc/self/exe", argv);
        return 2;
    }
    fs_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thread_count),
        cmocka_unit_test(test_text_report),
        cmocka_unit_test(test_json_report),
        cmocka_unit_test(test_report_right_after_a_join),
        cmocka_unit_test(test_json_report_not_utf8),
        cmocka_unit_test(test_json_report_after_plain_fork_failure),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
