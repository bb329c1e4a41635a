/* SPDX-License-Identifier: MIT */
/*
 * cli.h: the parts of forksafe-audit, the command that runs a program under
 * libforksafe-audit.so and reports its fork hazards. main.c runs the
 * program; records.c reads and merges what every process wrote; symbols.c
 * turns (object, file offset) into function names; output.c prints the
 * human report and the JSON document (schema in docs/audit.md).
 */
#ifndef FORKSAFE_CLI_H
#define FORKSAFE_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define FORKSAFE_AUDIT_SCHEMA_VERSION 1

enum forksafe_sev { FS_SEV_INFO = 0, FS_SEV_WARNING = 1, FS_SEV_ERROR = 2 };

struct forksafe_kv {
    char *key;
    char *val;
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
    char *exe;
    char *start;                 /* "exec" or "fork" */
    struct forksafe_kv *summary; /* NULL if the process did not exit normally */
    size_t nsummary;
};

struct forksafe_run {
    struct forksafe_finding *findings;
    size_t nfindings;
    struct forksafe_proc *procs;
    size_t nprocs;
    char **argv; /* the audited command */
    int status;  /* exit status, or 128 + signal */
    int signal;  /* terminating signal, 0 if it exited */
};

/* Descriptor identities the audited program inherited from outside (the
   CLI's own open descriptors): fd-leak-on-exec ignores them. */
struct forksafe_fdid {
    unsigned long dev, ino;
};

/* Read every <pid>.rec file in dir into run (findings sorted by pid and
   record order, duplicates removed, frames symbolized). Descriptors listed
   in ignore are not reported as leaks. Returns 0 or an errno value. */
int forksafe__records_load(struct forksafe_run *run, const char *dir,
                           const struct forksafe_fdid *ignore, size_t nignore);

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

/* The human report, to out. */
void forksafe__report_text(FILE *out, const struct forksafe_run *run);
/* The JSON document, to out. Returns 0 or an errno value from writing. */
int forksafe__report_json(FILE *out, const struct forksafe_run *run);

#endif
