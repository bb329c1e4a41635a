/* SPDX-License-Identifier: MIT */
/*
 * runpage.h: the run page, a small file in the record directory that
 * forksafe-audit creates and every audited process maps shared at start
 * (open, mmap, close: no descriptor stays open). It carries what must get
 * through when a record file cannot be written: a process out of
 * descriptors cannot open its record file, but can still count, in shared
 * memory, that it lost records or could not count its threads. It also
 * counts every program image that loaded the interposer. Shared by the
 * interposer (writer) and the CLI (reader); all updates are atomic.
 */
#ifndef FORKSAFE_RUNPAGE_H
#define FORKSAFE_RUNPAGE_H

#include <stdint.h>

#define FORKSAFE_RUNPAGE_NAME  "run"
#define FORKSAFE_RUNPAGE_SIZE  65536
#define FORKSAFE_RUNPAGE_MAGIC 0x31727366u /* "fsr1" */

enum {
    FORKSAFE_RUN_LOST = 1,  /* a record could not be written (err: errno,
                               0 when the record buffers were all busy) */
    FORKSAFE_RUN_CENSUS = 2, /* a fork could not count threads (err) */
    FORKSAFE_RUN_UNAUDITED = 3 /* a program started where the interposer
                                  or the record directory cannot be
                                  reached (err: its FORKSAFE_EXEC_*
                                  reason); no record could name it */
};

struct forksafe_runevent {
    int32_t type, pid, err, count;
};

struct forksafe_runpage {
    uint32_t magic;
    uint32_t size;
    uint64_t images;  /* program images that mapped the page */
    uint64_t forked;  /* children of fork() and _Fork() made under it */
    uint32_t nevents; /* events appended; may pass the capacity */
    uint32_t dropped; /* events that did not fit */
    struct forksafe_runevent ev[];
};

#define FORKSAFE_RUNPAGE_EVENTS                                                \
    ((FORKSAFE_RUNPAGE_SIZE - sizeof(struct forksafe_runpage)) /               \
     sizeof(struct forksafe_runevent))

#endif
