/* SPDX-License-Identifier: MIT */
/* tests/adapters/target-sqlite-random.c: the single-threaded program of
   issue 11. SQLite 3.40 takes its MAIN mutex while holding PRNG
   (sqlite3_randomness -> sqlite3_vfs_find); with the adapter's static
   mutexes ranked in a guessed order, forksafe-audit --fail-on error
   exited 3 on it (lock-order-violation). test-adapters-audit runs it. */
#include <forksafe/sqlite.h>

int main(void)
{
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        forksafe_sqlite_track(db) != 0 ||
        sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (random());",
                     NULL, NULL, NULL) != SQLITE_OK)
        return 1;
    forksafe_sqlite_untrack(db);
    return sqlite3_close(db) == SQLITE_OK ? 0 : 1;
}
