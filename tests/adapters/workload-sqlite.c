/* SPDX-License-Identifier: MIT */
/*
 * tests/adapters/workload-sqlite.c: SQLite as its users use it, while the
 * main thread forks (see workload.h). Threads each keep a tracked
 * connection to one WAL database and run transactions that insert
 * random() and randomblob() rows, read them back, look up VFSes, and
 * open, track, use, untrack and close short-lived connections (SQLite's
 * OPEN, MAIN, VFS, PRNG and memory mutexes all get taken). Each child
 * opens its own connection to the same file, writes a row and reads the
 * count.
 */
#include "workload.h"

#include <forksafe/sqlite.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char s_path[128];
/* Microseconds each thread pauses between requests: 2,000 by default,
   500 with --mode busy (six threads that keep two cores saturated). */
static long s_pause_us = 2000;

/* Retry every 200 us for up to 5 s. SQLite's default busy handler
   sleeps up to 100 ms at a time, holding the connection mutex; a writer
   then stays inside SQLite for hundreds of milliseconds after the lock it
   waits for is free, which any fork deadline shorter than that refuses. */
static int s_busy; /* busy-handler calls in this process (for the child) */

static int busy_wait(void *arg, int tries)
{
    (void)arg;
    s_busy++;
    struct timespec pause = {0, 200 * 1000};
    nanosleep(&pause, NULL);
    return tries < 25000;
}

static sqlite3 *open_db(void)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(s_path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_handler(db, busy_wait, NULL);
    return db;
}

static int run(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static void *worker(void *arg)
{
    (void)arg;
    sqlite3 *db = open_db();
    if (db == NULL || forksafe_sqlite_track(db) != 0) {
        wl_thread_error("open/track");
        return NULL;
    }
    for (unsigned n = 0; !atomic_load(&wl_stop); n++) {
        /* A pause between requests, as servers have: six writers that
           never pause keep one another (and the children) waiting in
           SQLite's busy handler, holding the connection mutex. */
        struct timespec pause = {0, s_pause_us * 1000L};
        nanosleep(&pause, NULL);
        if (n % 4 == 0 &&
            run(db, "BEGIN IMMEDIATE;"
                    "INSERT INTO t(a, b) VALUES (random(), randomblob(16));"
                    "INSERT INTO t(a, b) VALUES (random(), randomblob(32));"
                    "COMMIT;") != 0) {
            wl_thread_error(sqlite3_errmsg(db));
            run(db, "ROLLBACK");
        }
        if (run(db, "SELECT count(*), max(a) FROM t") != 0)
            wl_thread_error(sqlite3_errmsg(db));
        if (sqlite3_vfs_find(NULL) == NULL || sqlite3_vfs_find("unix") == NULL)
            wl_thread_error("vfs_find");
        if (n % 16 == 0) {
            /* A short-lived connection, as request handlers make. */
            sqlite3 *c = open_db();
            if (c == NULL || forksafe_sqlite_track(c) != 0 ||
                run(c, "SELECT count(*) FROM t") != 0)
                wl_thread_error("short connection");
            if (c != NULL && forksafe_sqlite_close(c) != 0)
                wl_thread_error("close");
        }
    }
    if (forksafe_sqlite_close(db) != 0)
        wl_thread_error("close");
    return NULL;
}

static int child(void *arg)
{
    (void)arg;
    sqlite3 *db = open_db();
    if (db == NULL)
        return 10;
    int rc = 0;
    if (run(db, "INSERT INTO t(a, b) VALUES (random(), randomblob(8));"
                "SELECT count(*) FROM t") != 0) {
        fprintf(stderr, "child: %s (%d) after %d busy calls\n",
                sqlite3_errmsg(db), sqlite3_extended_errcode(db), s_busy);
        rc = 11;
    }
    sqlite3_close(db);
    return rc;
}

int main(int argc, char **argv)
{
    struct wl_opts o = {1000, 300, 6, 0, ""};
    wl_parse(argc, argv, &o);
    snprintf(s_path, sizeof s_path, "/tmp/fs-workload-sqlite-%d.db",
             (int)getpid());
    sqlite3 *db = open_db();
    int wal = strcmp(o.mode, "rollback") != 0;
    if (strcmp(o.mode, "busy") == 0)
        s_pause_us = 500;
    if (db == NULL || (wal && run(db, "PRAGMA journal_mode=WAL")) ||
        run(db, "PRAGMA synchronous=NORMAL;"
                "CREATE TABLE t(id INTEGER PRIMARY KEY, a, b)"))
        return 3;
    sqlite3_close(db);
    if (forksafe_sqlite_install() != 0)
        return 3;
    wl_run(&o, worker, child, NULL);
    char p[160];
    unlink(s_path);
    snprintf(p, sizeof p, "%s-wal", s_path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", s_path);
    unlink(p);
    return wl_report("workload-sqlite", &o);
}
