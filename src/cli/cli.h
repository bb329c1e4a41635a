/* SPDX-License-Identifier: MIT */
/*
 * cli.h: the parts of forksafe-audit, the command that runs a program under
 * libforksafe-audit.so and reports its fork hazards. main.c runs the
 * program and forwards signals; records.c reads and merges what every
 * process wrote (record files and the run page); symbols.c turns (object,
 * file offset) into function names; output.c prints the human report and
 * the JSON document (schema docs/forksafe.schema.json, written by
 * src/json.c, the writer the in-process report uses too).
 */
#ifndef FORKSAFE_CLI_H
#define FORKSAFE_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "json.h"

#define FORKSAFE_AUDIT_SCHEMA_VERSION FORKSAFE_JSON_SCHEMA_VERSION

enum forksafe_sev { FS_SEV_INFO = 0, FS_SEV_WARNING = 1, FS_SEV_ERROR = 2 };

/* The type of a record field: "key=" string, "key#=" integer, "key?="
   boolean (src/preload/emit.c). */
enum forksafe_vtype { FS_V_STR = 0, FS_V_INT = 1, FS_V_BOOL = 2 };

struct forksafe_kv {
    char *key;
    char *val;
    int type; /* enum forksafe_vtype */
};

/* One code location, symbolized. */
struct forksafe_frame {
    char *role;
    long tid;            /* 0: not a thread-specific frame */
    char *thread_name;   /* NULL if unknown */
    char *object;        /* path, "[anon]" or "?" */
    uint64_t offset;     /* object-relative (ELF virtual address) */
    char *function;      /* NULL if no symbol covers it */
    uint64_t func_delta; /* offset - function start */
};

struct forksafe_finding {
    char *kind;
    enum forksafe_sev sev;
    long pid, ppid, tid;
    char *exe;
    char *message;
    struct forksafe_frame *frames;
    size_t nframes;
    struct forksafe_kv *details;
    size_t ndetails;
    size_t order; /* position in its process's record file */
};

struct forksafe_proc {
    long pid, ppid;
    long starttime; /* clock ticks since boot; 0 unknown */
    char *exe;
    char *start;                 /* "exec" or "fork" */
    struct forksafe_kv *summary; /* NULL if the process did not exit normally */
    size_t nsummary;
    int still_running; /* alive when the report was made */
};

struct forksafe_run {
    struct forksafe_finding *findings;
    size_t nfindings;
    struct forksafe_proc *procs;
    size_t nprocs;
    char **argv;        /* the audited command */
    int status;         /* exit status, or 128 + signal */
    int signal;         /* terminating signal, 0 if it exited */
    int interrupted_by; /* signal forksafe-audit received, 0 if none */
    long images;        /* processes that ran under the interposer: program
                           images that loaded it, and children of fork() */
    long not_audited;   /* not-audited findings */
    long records_lost;  /* records the interposer could not write */
    long census_failed; /* forks that could not count threads */
};

/* Descriptor identities the audited program inherited from outside (the
   CLI's own open descriptors): fd-leak-on-exec ignores them. */
struct forksafe_fdid {
    unsigned long dev, ino;
};

/* Read every record file in dir and its run page into run (findings sorted
   by pid and record order, duplicates removed, frames symbolized).
   Descriptors listed in ignore are not reported as leaks. Returns 0 or an
   errno value. */
int forksafe__records_load(struct forksafe_run *run, const char *dir,
                           const struct forksafe_fdid *ignore, size_t nignore);

/* Add a not-audited finding for PROGRAM itself (reason: an execcheck.h
   FORKSAFE_EXEC_* value), as if its exec had reported it. */
void forksafe__records_add_unaudited(struct forksafe_run *run, long pid,
                                     const char *program, int reason,
                                     const char *via);

/* Mark the processes that are still running (daemons that outlived the
   audited program). */
void forksafe__records_mark_running(struct forksafe_run *run);

/* Free everything records_load put in run. */
void forksafe__run_free(struct forksafe_run *run);

/* Resolve object + file offset: fills the frame's offset (ELF virtual
   address), function and func_delta when a symbol covers it. */
void forksafe__symbols_resolve(struct forksafe_frame *f, uint64_t file_off);

/* Unmap and free the symbol tables read so far. */
void forksafe__symbols_free(void);

/* Look up a detail of a finding or a summary; NULL if absent. */
const char *forksafe__kv_get(const struct forksafe_kv *kv, size_t n,
                             const char *key);

/* Parse a severity name; -1 if unknown. */
int forksafe__sev_parse(const char *s);
const char *forksafe__sev_name(enum forksafe_sev s);

/* 1 when the report is not the whole story: a process was not audited,
   records were lost, a fork could not count threads, or forksafe-audit
   was interrupted. */
int forksafe__run_incomplete(const struct forksafe_run *run);

/* The human report, to out. */
void forksafe__report_text(FILE *out, const struct forksafe_run *run);
/* The JSON document, to out. Returns 0 or an errno value from writing. */
int forksafe__report_json(FILE *out, const struct forksafe_run *run);

#endif
