/* SPDX-License-Identifier: MIT */
/*
 * stats.h: the statistics page, a file in the record directory that
 * forksafe-run creates and every process under it maps shared at start
 * (open, mmap, close). Each fork adds to its counters, and each fork with
 * other threads alive appends how long it waited for lock holders, so
 * that the report can give the distribution without a record per fork.
 * Shared by libforksafe-run.so (writer) and forksafe-run (reader); all
 * updates are atomic.
 */
#ifndef FORKSAFE_RUN_STATS_H
#define FORKSAFE_RUN_STATS_H

#include <stdint.h>

#define FORKSAFE_RUN_STATS_NAME  "forks"
#define FORKSAFE_RUN_STATS_SIZE  (256 * 1024)
#define FORKSAFE_RUN_STATS_MAGIC 0x31727366u /* "fsr1" */

struct forksafe_run_stats {
    uint32_t magic;
    uint32_t size;
    uint64_t images;    /* program images that loaded libforksafe-run.so */
    uint64_t forks;     /* fork() and forksafe_fork() calls */
    uint64_t threaded;  /* ... made while other threads were alive */
    uint64_t waited;    /* ... of which found a thread holding a lock */
    uint64_t timed_out; /* ... went ahead after the timeout */
    uint64_t stuck;     /* ... went ahead at once: the holders waited for
                           the forking thread */
    uint64_t overruns;  /* threads that waited at the gate for twice the
                           timeout and went on */
    uint64_t wait_max_ns;
    uint64_t nwaits;    /* waits appended; may pass the capacity */
    uint64_t wait_ns[]; /* the wait of each threaded fork, in order */
};

#define FORKSAFE_RUN_STATS_WAITS                                               \
    ((FORKSAFE_RUN_STATS_SIZE - sizeof(struct forksafe_run_stats)) /           \
     sizeof(uint64_t))

#endif
