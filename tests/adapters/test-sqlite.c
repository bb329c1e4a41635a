/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/test-sqlite.c: the SQLite adapter against the real
 * SQLite library, on database files in a fresh temporary directory. Each
 * scenario runs in its own process (forked from this single-threaded test
 * program), with another thread alive, so the same scenario can run with
 * and without the adapter; it prints its findings into a pipe that this
 * process checks.
 */
#include "common.h"

#include "adapter-test.h"

#include "sqlite-test.h"

#include <forksafe/sqlite.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static sqlite3 *open_db(const char *path)
{
    return open_db_busy(path, 3000);
}

enum mode { WITHOUT, WITH };

#define FAIL(code)                                                             \
    do {                                                                       \
        fprintf(stderr, "%s:%d: scenario step failed\n", __FILE__, __LINE__);  \
        return (code);                                                         \
    } while (0)

/* ---------------------------------------------------------------------- */

/* The child uses the connection it inherited: a new statement, a
   statement prepared before the fork, and a read. With the adapter all
   three fail and the parent's table is unchanged; without it, the child
   writes into the parent's database through the parent's connection. */
static int inherited_scenario(int m, int fd)
{
    struct dbfile f;
    if (make_db(&f) != 0)
        FAIL(2);
    sqlite3 *db = open_db(f.path);
    if (db == NULL || sqlite3_exec(db,
                                   "CREATE TABLE t(x);"
                                   "INSERT INTO t VALUES(1),(2),(3);",
                                   NULL, NULL, NULL) != SQLITE_OK)
        FAIL(3);
    if (m == WITH && forksafe_sqlite_track(db) != 0)
        FAIL(4);
    sqlite3_stmt *pending;
    if (sqlite3_prepare_v2(db, "INSERT INTO t VALUES(99)", -1, &pending,
                           NULL) != SQLITE_OK)
        FAIL(5);
    fs_idle_start();
    pid_t pid = forksafe_fork(NULL);
    if (pid < 0)
        FAIL(6);
    if (pid == 0) {
        int refused = 0;
        refused += sqlite3_exec(db, "INSERT INTO t VALUES(42)", NULL, NULL,
                                NULL) != SQLITE_OK;
        refused += sqlite3_step(pending) != SQLITE_DONE;
        refused += row_count(db) < 0;
        /* Never close or finalize anything inherited: just leave. */
        _exit(refused);
    }
    int refused;
    if (fs_wait(pid, 10000, &refused) != FS_EXITED)
        FAIL(7);
    int after_child = row_count(db);
    /* The parent's connection and its prepared statement still work. */
    int parent_ok = sqlite3_step(pending) == SQLITE_DONE &&
                    row_count(db) == after_child + 1;
    sqlite3_finalize(pending);
    if (m == WITH)
        forksafe_sqlite_untrack(db);
    sqlite3_close(db);
    remove_db(&f);
    dprintf(fd, "refused=%d rows=%d parent_ok=%d\n", refused, after_child,
            parent_ok);
    return 0;
}

static void test_sqlite_inherited_connection_refuses(void **state)
{
    (void)state;
    fs_expect_scenario(inherited_scenario, WITH,
                       "refused=3 rows=3 parent_ok=1\n");
}

static void test_sqlite_inherited_connection_writes_without(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(
        fs_run_scenario(inherited_scenario, WITHOUT, out, sizeof out), 0);
    /* Nothing refused, and two rows written by the child: 42 and 99. */
    assert_string_equal(out, "refused=0 rows=5 parent_ok=1\n");
}

/* ---------------------------------------------------------------------- */

#define N_FORKS 100

static uint64_t fs_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static sqlite3 *s_writer_db;
static atomic_bool s_stop;
static atomic_int s_commits; /* transactions the writer committed */
static atomic_int s_writer_errors;

/* Two rows per transaction, each transaction one sqlite3_exec() call,
   with a short pause between transactions. */
static void *writer(void *arg)
{
    (void)arg;
    while (!atomic_load(&s_stop)) {
        int rc = sqlite3_exec(s_writer_db,
                              "BEGIN IMMEDIATE;"
                              "INSERT INTO t(src, n) VALUES('w', 1);"
                              "INSERT INTO t(src, n) VALUES('w', 2);"
                              "COMMIT;",
                              NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            atomic_fetch_add(&s_commits, 1);
        } else {
            atomic_fetch_add(&s_writer_errors, 1);
            sqlite3_exec(s_writer_db, "ROLLBACK", NULL, NULL, NULL);
        }
        struct timespec d = {0, 300 * 1000};
        nanosleep(&d, NULL);
    }
    return NULL;
}

/* While a thread writes transactions, fork 100 times; each child opens
   its own connection to the same file and inserts one row. With the
   adapter every child succeeds and the file ends up intact with exactly
   the rows written. Without it a child soon inherits SQLite's in-process
   lock bookkeeping in the middle of the writer's transaction, and its own
   write fails (SQLITE_BUSY until its timeout) or hangs on a static mutex:
   the scenario stops at the first such child. */
static int writer_scenario(int m, int fd)
{
    struct dbfile f;
    if (make_db(&f) != 0)
        FAIL(2);
    s_writer_db = open_db(f.path);
    if (s_writer_db == NULL ||
        sqlite3_exec(s_writer_db,
                     "PRAGMA synchronous=OFF;"
                     "CREATE TABLE t(id INTEGER PRIMARY KEY, src, n);",
                     NULL, NULL, NULL) != SQLITE_OK)
        FAIL(3);
    if (m == WITH && forksafe_sqlite_track(s_writer_db) != 0)
        FAIL(4);
    pthread_t t;
    if (pthread_create(&t, NULL, writer, NULL) != 0)
        FAIL(5);
    int ok = 0, failed = 0;
    for (int k = 0; k < N_FORKS && failed == 0; k++) {
        int seen = atomic_load(&s_commits);
        while (atomic_load(&s_commits) == seen)
            sched_yield();
        /* The writer pauses right after a commit: land the fork anywhere
           in its cycle, not only in the pause. */
        uint64_t until = fs_now_us() + (uint64_t)(k * 37 % 500);
        while (fs_now_us() < until)
            ;
        pid_t pid = fork();
        if (pid < 0)
            FAIL(6);
        if (pid == 0) {
            sqlite3 *c = open_db(f.path);
            if (c == NULL)
                _exit(2);
            char sql[64];
            snprintf(sql, sizeof sql, "INSERT INTO t(src, n) VALUES('c', %d)",
                     k);
            _exit(sqlite3_exec(c, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : 1);
        }
        int code;
        if (fs_wait(pid, 6000, &code) == FS_EXITED && code == 0)
            ok++;
        else
            failed++;
    }
    atomic_store(&s_stop, true);
    pthread_join(t, NULL);
    if (m == WITH)
        forksafe_sqlite_untrack(s_writer_db);
    sqlite3_close(s_writer_db);

    sqlite3 *check = open_db(f.path);
    if (check == NULL)
        FAIL(7);
    sqlite3_stmt *st;
    char integrity[64] = "?";
    if (sqlite3_prepare_v2(check, "PRAGMA integrity_check", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(integrity, sizeof integrity, "%s",
                 (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    int rows = row_count(check);
    sqlite3_close(check);
    remove_db(&f);
    dprintf(fd, "children_ok=%d failed=%d integrity=%s rows_match=%d\n", ok,
            failed, integrity, rows == 2 * atomic_load(&s_commits) + ok);
    return 0;
}

static void test_sqlite_children_write_during_transactions(void **state)
{
    (void)state;
    fs_expect_scenario(writer_scenario, WITH,
                       "children_ok=100 failed=0 integrity=ok rows_match=1\n");
}

static void test_sqlite_children_fail_without(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(fs_run_scenario(writer_scenario, WITHOUT, out, sizeof out),
                     0);
    int ok = -1, failed = -1;
    print_message("without the adapter: %s", out);
    assert_int_equal(sscanf(out, "children_ok=%d failed=%d", &ok, &failed), 2);
    assert_int_equal(failed, 1);
    /* The parent's own file is never damaged by it. */
    assert_non_null(strstr(out, "integrity=ok rows_match=1"));
}

/* ---------------------------------------------------------------------- */

static int api_scenario(int m, int fd)
{
    (void)m;
    (void)fd;
    sqlite3 *a = open_db(":memory:"), *b = open_db(":memory:");
    if (a == NULL || b == NULL)
        FAIL(2);
    if (forksafe_adapter_installed("sqlite") != 0)
        return 10;
    if (forksafe_sqlite_uninstall() != ENOENT)
        return 11;
    if (forksafe_sqlite_install() != 0 || forksafe_sqlite_install() != 0)
        return 12;
    if (forksafe_adapter_installed("sqlite") != 1)
        return 13;
    if (forksafe_sqlite_track(NULL) != EINVAL ||
        forksafe_sqlite_untrack(NULL) != EINVAL)
        return 14;
    if (forksafe_sqlite_track(a) != 0 || forksafe_sqlite_track(a) != EEXIST ||
        forksafe_sqlite_track(b) != 0)
        return 15;
    /* The connection mutex is a registered entry now. */
    struct forksafe_info info;
    if (forksafe_lookup(sqlite3_db_mutex(a), &info) != 0 ||
        info.rank != FORKSAFE_SQLITE_RANK_DB)
        return 16;
    if (forksafe_sqlite_uninstall() != EBUSY)
        return 17;
    if (forksafe_sqlite_untrack(a) != 0 || forksafe_sqlite_untrack(a) != ENOENT)
        return 18;
    if (forksafe_lookup(sqlite3_db_mutex(a), NULL) != ENOENT)
        return 19;
    /* Tracked connections, and a fork, in any number. */
    pid_t pid = forksafe_fork(NULL);
    if (pid == 0)
        _exit(0);
    int code;
    if (pid < 0 || fs_wait(pid, 5000, &code) != FS_EXITED || code != 0)
        return 20;
    if (forksafe_sqlite_untrack(b) != 0 || forksafe_sqlite_uninstall() != 0)
        return 21;
    if (forksafe_lookup(sqlite3_mutex_alloc(SQLITE_MUTEX_STATIC_MAIN), NULL) !=
        ENOENT)
        return 22;
    /* forksafe_sqlite_close(): untracks (if tracked) and closes. */
    if (forksafe_sqlite_close(NULL) != EINVAL || forksafe_sqlite_track(a) ||
        forksafe_sqlite_close(a) != 0 || forksafe_sqlite_close(b) != 0)
        return 23;
    /* The install contract every adapter shares: nothing is tracked any
       more. */
    int shape =
        fs_adapter_shape(forksafe_sqlite_install, forksafe_sqlite_uninstall,
                         "sqlite", "sqlite", FORKSAFE_SQLITE_RANK);
    if (shape != 0)
        return 40 + shape;
    return 0;
}

static void test_sqlite_track_api(void **state)
{
    (void)state;
    fs_assert_scenario(api_scenario, WITH);
}

/* ---------------------------------------------------------------------- */

/* forksafe_sqlite_close() and forks from other threads. At every fork a
   connection being closed must be either still tracked (its mutex
   registered, so prepare takes it) or wholly inside the close, whose
   lock the fork waits for: never open, untracked and outside that lock,
   where the fork would find its mutex alive and outside every prepare.
   A callback set ranked just after the close lock checks this in each
   fork's prepare: for each connection a closer has started closing
   whose sqlite3_close() has not run (SQLITE_TRACE_CLOSE, which SQLite
   calls inside it), its mutex must be registered. */
#define N_CLOSERS 3
struct watch {
    _Atomic(void *) mutex; /* the connection being closed, or NULL */
    atomic_int closed;     /* its sqlite3_close() has run */
};
static struct watch s_watch[N_CLOSERS];
static atomic_int s_violations;

static int check_prepare(void *ctx, const struct timespec *deadline)
{
    (void)ctx;
    (void)deadline;
    for (int i = 0; i < N_CLOSERS; i++) {
        void *m = atomic_load(&s_watch[i].mutex);
        if (m == NULL || atomic_load(&s_watch[i].closed))
            continue;
        if (forksafe_lookup(m, NULL) != 0)
            atomic_fetch_add(&s_violations, 1);
    }
    return 0;
}

static const struct forksafe_ops check_ops = {check_prepare, NULL, NULL};
static int s_check_ctx; /* the callback set's key */

static int trace_close(unsigned type, void *ctx, void *p, void *x)
{
    (void)p;
    (void)x;
    if (type == SQLITE_TRACE_CLOSE)
        atomic_store(&((struct watch *)ctx)->closed, 1);
    return 0;
}

/* Close db with forksafe_sqlite_close(), watched by slot w. */
static int watched_close(sqlite3 *db, struct watch *w)
{
    atomic_store(&w->closed, 0);
    sqlite3_trace_v2(db, SQLITE_TRACE_CLOSE, trace_close, w);
    atomic_store(&w->mutex, (void *)sqlite3_db_mutex(db));
    int rc = forksafe_sqlite_close(db);
    atomic_store(&w->mutex, NULL);
    return rc;
}

/* A fork exactly where the close window was: this program interposes
   forksafe_unregister() (the adapter calls it through the dynamic
   linker), and while armed, right after the connection's mutex is
   unregistered, has another thread fork and waits up to WINDOW_MS for
   that fork to be made. Without the close lock held there the fork goes
   through at once and finds the connection open and unregistered; with
   it the fork waits for the close to end (the wait here times out). */
#define WINDOW_MS 200
static atomic_int s_arm, s_wrapped;
static pthread_mutex_t s_req_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_req_cv = PTHREAD_COND_INITIALIZER;
static int s_requests, s_forks_done, s_forks_ok; /* s_req_mu */
static bool s_forker_stop;                       /* s_req_mu */

int forksafe_unregister(const void *key)
{
    static int (*real)(const void *);
    if (real == NULL) {
        void *sym = dlsym(RTLD_NEXT, "forksafe_unregister");
        memcpy(&real, &sym, sizeof real);
    }
    int rc = real(key);
    if (rc != 0 || !atomic_load(&s_arm) ||
        key != atomic_load(&s_watch[0].mutex))
        return rc;
    atomic_fetch_add(&s_wrapped, 1);
    pthread_mutex_lock(&s_req_mu);
    int want = ++s_requests;
    pthread_cond_broadcast(&s_req_cv);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += WINDOW_MS * 1000000l;
    until.tv_sec += until.tv_nsec / 1000000000l;
    until.tv_nsec %= 1000000000l;
    while (s_forks_done < want &&
           pthread_cond_timedwait(&s_req_cv, &s_req_mu, &until) == 0)
        ;
    pthread_mutex_unlock(&s_req_mu);
    return rc;
}

/* One forksafe_fork(), its child exiting at once; 1 if both went well. */
static int fork_once(void)
{
    struct forksafe_fork_opts o = {10000, 0, {0}};
    pid_t pid = forksafe_fork(&o);
    if (pid == 0)
        _exit(0);
    int code;
    return pid > 0 && fs_wait(pid, 10000, &code) == FS_EXITED && code == 0;
}

static void *forker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&s_req_mu);
    for (int done = 0;;) {
        while (s_requests == done && !s_forker_stop)
            pthread_cond_wait(&s_req_cv, &s_req_mu);
        if (s_requests == done)
            break;
        done = s_requests;
        pthread_mutex_unlock(&s_req_mu);
        int ok = fork_once();
        pthread_mutex_lock(&s_req_mu);
        s_forks_ok += ok;
        s_forks_done = done;
        pthread_cond_broadcast(&s_req_cv);
    }
    pthread_mutex_unlock(&s_req_mu);
    return NULL;
}

#define N_WINDOW 8
static int window_scenario(int m, int fd)
{
    (void)m;
    struct dbfile f;
    if (make_db(&f) != 0)
        FAIL(2);
    if (forksafe_register_ops(&s_check_ctx, "test: close check",
                              FORKSAFE_SQLITE_RANK_CLOSE + 1, &check_ops))
        FAIL(3);
    pthread_t t;
    if (pthread_create(&t, NULL, forker, NULL) != 0)
        FAIL(4);
    int closed = 0;
    for (int k = 0; k < N_WINDOW; k++) {
        sqlite3 *db = open_db(f.path);
        if (db == NULL || forksafe_sqlite_track(db) != 0 ||
            sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS t(x);", NULL, NULL,
                         NULL) != SQLITE_OK)
            FAIL(5);
        atomic_store(&s_arm, 1);
        closed += watched_close(db, &s_watch[0]) == 0;
        atomic_store(&s_arm, 0);
        /* Let the fork end before the next round. */
        pthread_mutex_lock(&s_req_mu);
        while (s_forks_done < s_requests)
            pthread_cond_wait(&s_req_cv, &s_req_mu);
        pthread_mutex_unlock(&s_req_mu);
    }
    pthread_mutex_lock(&s_req_mu);
    s_forker_stop = true;
    pthread_cond_broadcast(&s_req_cv);
    pthread_mutex_unlock(&s_req_mu);
    pthread_join(t, NULL);
    forksafe_unregister(&s_check_ctx);
    remove_db(&f);
    dprintf(fd, "closed=%d wrapped=%d forks_ok=%d violations=%d\n", closed,
            atomic_load(&s_wrapped), s_forks_ok, atomic_load(&s_violations));
    return 0;
}

static void test_sqlite_close_fork_in_window(void **state)
{
    (void)state;
    /* Runs under forksafe-audit too (test-audit-quiet). Until the audit
       asked the registry about covered locks after the fork instead of in
       libforksafe's prepare, it hung there: the audit's lookup waited for
       the registry lock that prepare had just taken on the same thread. */
    char out[128];
    assert_int_equal(fs_run_scenario(window_scenario, WITH, out, sizeof out),
                     0);
    print_message("%s", out);
    /* Every close was caught right after its unregistering; no fork saw
       the connection open and unregistered. */
    assert_string_equal(out, "closed=8 wrapped=8 forks_ok=8 violations=0\n");
}

/* Threads open, track, use and close connections to one WAL database
   (and other threads track and untrack theirs) while another thread
   forks in a loop; each child opens its own connection to the file and
   reads from it. No fork may time out (a close that held its lock while
   waiting for the registry, or for the adapter, against a fork waiting
   for that lock would stall each such fork until its deadline), every
   child exits 0, and the check above never fails. Before the child
   handler closed the inherited connections' files, 22 of 300 runs had a
   child die of SIGBUS (in sqlite3WalFindFrame, on its mapping of the
   -shm file, which the parent had truncated as its "first connection";
   see test_sqlite_child_connection_holds_its_locks). */
#define STRESS_FORKS 150
static char s_stress_path[96];
static atomic_int s_stress_errors, s_stress_closes;

/* Under ASan only the registration allocates outside every lock a
   prepare takes (SQLite allocates under its MEM mutex, which the adapter
   registers): only that is gated, so forks are not starved by readers. */
static int gated_track(sqlite3 *db)
{
    fs_asan_enter();
    int rc = forksafe_sqlite_track(db);
    fs_asan_leave();
    return rc;
}

static void *closer(void *arg)
{
    struct watch *w = arg;
    while (!atomic_load(&s_stop)) {
        sqlite3 *db = open_db(s_stress_path);
        int bad = db == NULL || gated_track(db) != 0 ||
                  sqlite3_exec(db, "INSERT INTO t(x) VALUES(1);", NULL, NULL,
                               NULL) != SQLITE_OK;
        if (db != NULL && watched_close(db, w) != 0)
            bad = 1;
        if (bad)
            atomic_fetch_add(&s_stress_errors, 1);
        else
            atomic_fetch_add(&s_stress_closes, 1);
    }
    return NULL;
}

/* Track and untrack one connection in a loop (without closing it). */
static void *retracker(void *arg)
{
    (void)arg;
    sqlite3 *db = open_db(s_stress_path);
    if (db == NULL) {
        atomic_fetch_add(&s_stress_errors, 1);
        return NULL;
    }
    while (!atomic_load(&s_stop)) {
        if (gated_track(db) != 0 || forksafe_sqlite_untrack(db) != 0)
            atomic_fetch_add(&s_stress_errors, 1);
    }
    sqlite3_close(db);
    return NULL;
}

static int stress_scenario(int m, int fd)
{
    (void)m;
    struct dbfile f;
    if (make_db(&f) != 0)
        FAIL(2);
    snprintf(s_stress_path, sizeof s_stress_path, "%s", f.path);
    sqlite3 *db = open_db(f.path);
    if (db == NULL ||
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);", NULL,
                     NULL, NULL) != SQLITE_OK)
        FAIL(3);
    sqlite3_close(db);
    /* Installed before any thread is inside SQLite (as documented), so
       every fork takes SQLite's static mutexes. */
    if (forksafe_sqlite_install() != 0 || fs_asan_gate_register() != 0 ||
        forksafe_register_ops(&s_check_ctx, "test: close check",
                              FORKSAFE_SQLITE_RANK_CLOSE + 1, &check_ops))
        FAIL(4);
    pthread_t t[N_CLOSERS + 1];
    for (int i = 0; i < N_CLOSERS; i++)
        if (pthread_create(&t[i], NULL, closer, &s_watch[i]) != 0)
            FAIL(5);
    if (pthread_create(&t[N_CLOSERS], NULL, retracker, NULL) != 0)
        FAIL(5);
    int ok = 0, failed = 0;
    uint64_t end = fs_now_ms() + 60000;
    for (int k = 0; k < STRESS_FORKS && fs_now_ms() < end; k++) {
        struct forksafe_fork_opts o = {10000, 0, {0}};
        pid_t pid = forksafe_fork(&o);
        if (pid == 0) {
            sqlite3 *c = open_db(s_stress_path);
            if (c == NULL)
                _exit(2);
            int n = row_count(c);
            if (n < 0)
                fprintf(stderr, "child: %s (%d)\n", sqlite3_errmsg(c),
                        sqlite3_extended_errcode(c));
            _exit(n >= 0 ? 0 : 1);
        }
        int code = -1;
        enum fs_wait_result w = pid > 0 ? fs_wait(pid, 10000, &code) : FS_HUNG;
        if (pid > 0 && w == FS_EXITED && code == 0) {
            ok++;
        } else {
            failed++;
            fprintf(stderr, "fork %d: %s\n", k,
                    pid < 0 ? forksafe_last_error() : "child failed");
            fprintf(stderr, "  wait %d code %d\n", (int)w, code);
        }
    }
    atomic_store(&s_stop, true);
    for (int i = 0; i <= N_CLOSERS; i++)
        pthread_join(t[i], NULL);
    forksafe_unregister(&s_check_ctx);
    fs_asan_gate_unregister();
    char p[128];
    snprintf(p, sizeof p, "%s-wal", f.path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", f.path);
    unlink(p);
    remove_db(&f);
    dprintf(fd, "forks=%d failed=%d errors=%d closes=%d violations=%d\n", ok,
            failed, atomic_load(&s_stress_errors),
            atomic_load(&s_stress_closes) > 0, atomic_load(&s_violations));
    return 0;
}

static void test_sqlite_close_under_forks(void **state)
{
    (void)state;
    char out[128];
    assert_int_equal(fs_run_scenario(stress_scenario, WITH, out, sizeof out),
                     0);
    print_message("%s", out);
    assert_string_equal(out, "forks=150 failed=0 errors=0 closes=1 "
                             "violations=0\n");
}

/* ---------------------------------------------------------------------- */

/* Who else holds a lock on [start, start+len) of path: the pid of a
   process whose lock conflicts with a write lock there (this process's
   own locks never conflict), 0 if none, -1 on error. */
static pid_t lock_holder(const char *path, off_t start, off_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    struct flock l = {0};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    l.l_start = start;
    l.l_len = len;
    int rc = fcntl(fd, F_GETLK, &l);
    close(fd);
    return rc != 0 ? -1 : l.l_type == F_UNLCK ? 0 : l.l_pid;
}

/* SQLite's unix VFS (os_unix.c, os.h): a SHARED lock on a database is a
   read lock on the 510 bytes after the pending byte (0x40000000) + 2;
   every process with a WAL database's wal-index (-shm) open holds a read
   lock on its "dead man switch" byte, 128. A process that holds neither
   is invisible to the others: the parent's last connection then believes
   it is alone, and the next first connection truncates and rebuilds the
   -shm file under the child's mapping (SIGBUS in the child). */
#define SQLITE_SHARED_FIRST (0x40000000 + 2)
#define SQLITE_SHARED_SIZE  510
#define SQLITE_SHM_DMS      128

/* A connection of the parent has read a WAL database (so it holds the
   database's SHARED lock and its wal-index) and is tracked; the parent
   forks; the child opens its own connection and reads. Then the child
   must hold both locks itself, as any other process would. */
static int child_locks_scenario(int m, int fd)
{
    struct dbfile f;
    if (make_db(&f) != 0)
        FAIL(2);
    sqlite3 *db = open_db(f.path);
    if (db == NULL ||
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                     "INSERT INTO t VALUES(1);",
                     NULL, NULL, NULL) != SQLITE_OK ||
        row_count(db) != 1)
        FAIL(3);
    if (m == WITH && forksafe_sqlite_track(db) != 0)
        FAIL(4);
    int up[2], down[2];
    if (pipe(up) != 0 || pipe(down) != 0)
        FAIL(5);
    fs_idle_start();
    pid_t pid = forksafe_fork(NULL);
    if (pid < 0)
        FAIL(6);
    if (pid == 0) {
        sqlite3 *c = open_db(f.path);
        int n = c != NULL ? row_count(c) : -1;
        char b = n == 1 ? 'r' : 'x';
        if (write(up[1], &b, 1) != 1 || read(down[0], &b, 1) != 1)
            _exit(3);
        _exit(n == 1 ? 0 : 1);
    }
    char b = 0;
    if (read(up[0], &b, 1) != 1)
        FAIL(7);
    char shm[128];
    snprintf(shm, sizeof shm, "%s-shm", f.path);
    pid_t db_holder =
        lock_holder(f.path, SQLITE_SHARED_FIRST, SQLITE_SHARED_SIZE);
    pid_t shm_holder = lock_holder(shm, SQLITE_SHM_DMS, 1);
    if (write(down[1], "g", 1) != 1)
        FAIL(8);
    int code = -1;
    if (fs_wait(pid, 10000, &code) != FS_EXITED)
        FAIL(9);
    if (m == WITH)
        forksafe_sqlite_untrack(db);
    sqlite3_close(db);
    unlink(shm);
    char wal[128];
    snprintf(wal, sizeof wal, "%s-wal", f.path);
    unlink(wal);
    remove_db(&f);
    dprintf(fd, "read=%c code=%d db_lock=%d shm_lock=%d\n", b, code,
            db_holder == pid, shm_holder == pid);
    return 0;
}

static void test_sqlite_child_connection_holds_its_locks(void **state)
{
    (void)state;
    fs_expect_scenario(child_locks_scenario, WITH,
                       "read=r code=0 db_lock=1 shm_lock=1\n");
}

/* Without the adapter the child's new connection reuses the lock
   bookkeeping it inherited and takes neither lock. */
static void test_sqlite_child_connection_locks_without(void **state)
{
    (void)state;
    fs_expect_scenario(child_locks_scenario, WITHOUT,
                       "read=r code=0 db_lock=0 shm_lock=0\n");
}

/* A transaction spread over two calls is open on a tracked connection
   (rollback journal) at the fork. The child's own connection reads the
   committed state and its insert waits for the parent's commit, as
   another process's would. Before the child handler closed the inherited
   files, that insert got SQLITE_BUSY until its busy timeout (the child
   took the parent's RESERVED lock, inherited as bookkeeping, for its own
   process's). */
static int open_txn_scenario(int m, int fd)
{
    (void)m;
    struct dbfile f;
    if (make_db(&f) != 0)
        FAIL(2);
    sqlite3 *db = open_db(f.path);
    if (db == NULL ||
        sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", NULL,
                     NULL, NULL) != SQLITE_OK ||
        forksafe_sqlite_track(db) != 0 ||
        sqlite3_exec(db, "BEGIN; INSERT INTO t VALUES(2);", NULL, NULL, NULL) !=
            SQLITE_OK)
        FAIL(3);
    int up[2];
    if (pipe(up) != 0)
        FAIL(4);
    fs_idle_start();
    pid_t pid = forksafe_fork(NULL);
    if (pid < 0)
        FAIL(5);
    if (pid == 0) {
        sqlite3 *c = open_db(f.path); /* busy timeout 3 s */
        int n = c != NULL ? row_count(c) : -1;
        if (write(up[1], "r", 1) != 1)
            _exit(3);
        int w = c != NULL ? sqlite3_exec(c, "INSERT INTO t VALUES(3)", NULL,
                                         NULL, NULL)
                          : -1;
        if (w != SQLITE_OK)
            fprintf(stderr, "child: %s\n", sqlite3_errmsg(c));
        _exit(n != 1 ? 1 : w != SQLITE_OK ? 2 : 0);
    }
    char b;
    if (read(up[0], &b, 1) != 1)
        FAIL(6);
    int commit = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    int code = -1;
    if (fs_wait(pid, 10000, &code) != FS_EXITED)
        FAIL(7);
    int rows = row_count(db);
    forksafe_sqlite_close(db);
    remove_db(&f);
    dprintf(fd, "commit=%d child=%d rows=%d\n", commit, code, rows);
    return 0;
}

static void test_sqlite_child_waits_for_open_transaction(void **state)
{
    (void)state;
    fs_expect_scenario(open_txn_scenario, WITH, "commit=0 child=0 rows=3\n");
}

int main(void)
{
    fs_watchdog(150);
    fs_adapter_test_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sqlite_track_api),
        cmocka_unit_test(test_sqlite_inherited_connection_refuses),
        cmocka_unit_test(test_sqlite_inherited_connection_writes_without),
        cmocka_unit_test(test_sqlite_children_write_during_transactions),
        cmocka_unit_test(test_sqlite_children_fail_without),
        cmocka_unit_test(test_sqlite_close_fork_in_window),
        cmocka_unit_test(test_sqlite_close_under_forks),
        cmocka_unit_test(test_sqlite_child_connection_holds_its_locks),
        cmocka_unit_test(test_sqlite_child_connection_locks_without),
        cmocka_unit_test(test_sqlite_child_waits_for_open_transaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
