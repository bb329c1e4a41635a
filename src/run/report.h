/* SPDX-License-Identifier: MIT */
/*
 * report.h: the parts of forksafe-run, the command. main.c runs the
 * program (exec'ing it directly when no report is asked for, so that
 * nothing stands between it and its caller); report.c reads what the
 * processes wrote (the statistics page, stats.h, and the records of slow
 * forks and of programs that could not load the library) and writes the
 * text report and the JSON document (schema docs/forksafe.schema.json,
 * "forksafe-run", written by src/json.c like every forksafe document).
 */
#ifndef FORKSAFE_RUN_REPORT_H
#define FORKSAFE_RUN_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../cli/cli.h"

struct run_blocker_rec {
    long tid;
    char *name;
    char *state; /* "holds", "taking", "waits-to-fork", "waits-for-forker",
                    "holds-untracked" */
    char *lock;  /* "0x..." or NULL */
    char *lock_kind;
    long lock_holder; /* for "taking": who holds it (0 unknown) */
    struct forksafe_frame frames[2];
    size_t nframes;
};

struct run_slow {
    long pid, ppid, tid, seq;
    char *exe;
    char *call;   /* "fork" or "forksafe_fork" */
    char *reason; /* "timeout" or "stuck" */
    long wait_us, timeout_ms;
    struct forksafe_frame frame; /* fork-call */
    int has_frame;
    struct run_blocker_rec *blockers;
    size_t nblockers;
};

struct run_uncovered {
    long pid, ppid;
    char *program, *reason, *via;
};

struct run_report {
    char **argv;
    int status;         /* exit status, or 128 + signal */
    int signal;         /* terminating signal, 0 if it exited */
    int interrupted_by; /* signal forksafe-run received, 0 if none */
    unsigned timeout_ms;
    int have_stats; /* the statistics page could be read */
    uint64_t images, forks, threaded, waited, timed_out, stuck, overruns;
    uint64_t wait_max_ns;
    uint64_t nwaits; /* forks with a wait sample (all threaded forks) */
    uint64_t *waits; /* sorted, min(nwaits, capacity) of them */
    size_t nsamples;
    long records_lost;
    struct run_slow *slow;
    size_t nslow;
    struct run_uncovered *uncovered;
    size_t nuncovered;
};

/* Read the statistics page and the records in dir into rep. Returns 0 or
   an errno value (what could be read is kept). */
int forksafe__rr_load(struct run_report *rep, const char *dir);
/* Add PROGRAM itself as not covered (reason: an execcheck.h value). */
void forksafe__rr_add_uncovered(struct run_report *rep, long pid,
                                const char *program, int reason);
void forksafe__rr_free(struct run_report *rep);

/* The text report and the JSON document. Return 0 or an errno value from
   writing. */
int forksafe__rr_text(FILE *out, const struct run_report *rep);
int forksafe__rr_json(FILE *out, const struct run_report *rep);

/* 1 when the report is not the whole story (a process could not be
   covered, records were lost, forksafe-run was interrupted). */
int forksafe__rr_incomplete(const struct run_report *rep);

#endif
