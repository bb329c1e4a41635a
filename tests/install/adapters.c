/* SPDX-License-Identifier: MIT */
/*
 * adapters.c: a program that calls only adapter functions (sqlite, random),
 * never the core's, built against an installed forksafe by
 * tests/install/check.sh in three ways: with --as-needed (so libforksafe is
 * not among its own dependencies and is found only through the adapters),
 * statically with `pkg-config --static` alone, and through CMake. It
 * checks that the adapters did their work in a child: the inherited SQLite
 * connection refuses work and random() draws a new sequence.
 * Exit status 0 and one line "adapters ok" on success.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* random(), srandom() under -std=c11 */
#endif
#include <forksafe/random.h>
#include <forksafe/sqlite.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "adapters: %s\n", what);
    return 1;
}

int main(void)
{
    alarm(60); /* a hang is a failure */
    sqlite3 *db;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)", NULL,
                     NULL, NULL) != SQLITE_OK)
        return fail("sqlite3 setup failed");
    if (forksafe_sqlite_track(db) != 0)
        return fail("forksafe_sqlite_track failed");
    if (forksafe_random_install() != 0)
        return fail("forksafe_random_install failed");
    srandom(42);

    int fds[2];
    if (pipe(fds) != 0)
        return fail("pipe");
    pid_t pid = fork();
    if (pid < 0)
        return fail("fork");
    if (pid == 0) {
        long r[2] = {random(),
                     sqlite3_exec(db, "SELECT x FROM t", NULL, NULL, NULL)};
        _exit(write(fds[1], r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    long child[2];
    ssize_t n = read(fds[0], child, sizeof child);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0 || n != (ssize_t)sizeof child)
        return fail("the child failed");
    long mine = random();
    if (child[0] == mine)
        return fail("the child drew the parent's random() sequence");
    if (child[1] == SQLITE_OK)
        return fail("the child could use the parent's SQLite connection");
    if (sqlite3_exec(db, "SELECT x FROM t", NULL, NULL, NULL) != SQLITE_OK)
        return fail("the parent's connection stopped working");
    printf("adapters ok: the child's inherited SQLite connection refused "
           "work (%ld), its random() differed\n",
           child[1]);
    return 0;
}
