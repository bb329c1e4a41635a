/* SPDX-License-Identifier: MIT */
/* sqlite-test.h: the database files and connections test-sqlite.c and
   test-sqlite-hostile.c work on. */
#ifndef FORKSAFE_TESTS_SQLITE_TEST_H
#define FORKSAFE_TESTS_SQLITE_TEST_H

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A database file in a new directory; remove_db() deletes both. */
struct dbfile {
    char dir[64];
    char path[96];
};

static inline int make_db(struct dbfile *f)
{
    snprintf(f->dir, sizeof f->dir, "/tmp/forksafe-sqlite-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->path, sizeof f->path, "%s/test.db", f->dir);
    return 0;
}

/* The database, its journal, WAL and wal-index, then the directory. */
static inline void remove_db(const struct dbfile *f)
{
    char p[128];
    static const char *const sfx[] = {"", "-journal", "-wal", "-shm", ".other"};
    for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
        snprintf(p, sizeof p, "%s%s", f->path, sfx[i]);
        unlink(p);
    }
    rmdir(f->dir);
}

/* A serialized (FULLMUTEX) connection to path, created if needed, with a
   busy timeout of busy_ms; NULL on failure. */
static inline sqlite3 *open_db_busy(const char *path, int busy_ms)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, busy_ms);
    return db;
}

/* SELECT count(*) FROM t through db, or -1. */
static inline int row_count(sqlite3 *db)
{
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL) !=
        SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

#endif
