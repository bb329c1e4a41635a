/* SPDX-License-Identifier: MIT */
/*
 * cli.h: the parts of forksafe-audit, the command that runs a program under
 * libforksafe-audit.so and reports its fork hazards. main.c runs the
 * program and forwards signals; records.c reads what every process wrote
 * (record files and the run page); rules.c joins what parents and their
 * children recorded into findings, under the rules of docs/audit.md;
 * symbols.c turns (object, file offset) into function, file and line
 * (DWARF through elfutils' libdwfl in symbols-dw.c when the build has it,
 * the ELF symbol tables otherwise); suppress.c applies --suppressions and
 * --baseline (reading an old report with jsonread.c); output.c prints the
 * human report and the JSON document (schema docs/forksafe.schema.json,
 * written by src/json.c, the writer the in-process report uses too);
 * sarif.c writes SARIF 2.1.0.
 */
#ifndef FORKSAFE_CLI_H
#define FORKSAFE_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "json.h"
#include "xalloc.h"

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

/* A function inlined at a frame's address, innermost first: it was
   inlined into the next one (or the frame's function) at call_file:
   call_line. */
struct forksafe_inline {
    char *function;
    char *call_file;
    int call_line;
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
    char *file;          /* source file from DWARF, NULL if unknown */
    int line;            /* 0 if unknown */
    struct forksafe_inline *inlined;
    size_t ninlined;
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
    size_t order;      /* position in the record file */
    char *fingerprint; /* stable across runs (suppress.c) */
    int baseline;      /* 0: no baseline given; 1: new; 2: in the baseline */
    const struct forksafe_supp *suppressed_by; /* NULL: reported */
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

/* A child that ran on (did more than exec or _exit), from its "ranon"
   record: which process forked it, where. */
struct forksafe_ranon {
    long pid, fork_pid;
    char *object;
    uint64_t offset;
    int mt;       /* the parent had other threads at the fork */
    int forksafe; /* libforksafe's fork handler ran for the fork */
};

/* One suppression rule (suppress.c): a kind glob and conditions. */
struct forksafe_supp_cond {
    char *key; /* object, function, lock, exe, file */
    char *glob;
};
struct forksafe_supp {
    char *file;
    int line;
    char *kind; /* glob */
    struct forksafe_supp_cond *conds;
    size_t nconds;
    long hits;
};

struct forksafe_run {
    struct forksafe_finding *findings; /* reported */
    size_t nfindings;
    struct forksafe_finding *suppressed; /* matched a suppression rule */
    size_t nsuppressed;
    struct forksafe_proc *procs;
    size_t nprocs;
    struct forksafe_ranon *ranon;
    size_t nranon;
    char **argv;        /* the audited command */
    int status;         /* exit status, or 128 + signal */
    int signal;         /* terminating signal, 0 if it exited */
    int interrupted_by; /* signal forksafe-audit received, 0 if none */
    long images;        /* processes that ran under the interposer: program
                           images that loaded it, and children of fork() */
    long not_audited;   /* not-audited findings */
    long records_lost;  /* records the interposer could not write */
    long census_failed; /* forks that could not count threads */
    const char *baseline_path; /* --baseline FILE, NULL if none */
    long baselined;            /* findings found in the baseline */
    struct forksafe_supp *supps;
    size_t nsupps;
};

/* A descriptor the audited program inherited from outside (forksafe-audit's
   own open descriptors without close-on-exec, at start): fd-leak-on-exec
   ignores that descriptor number when it still refers to the same file. */
struct forksafe_fdid {
    int fd;
    unsigned long dev, ino;
};

/* Read every record file in dir and its run page into run, then apply
   the rules (rules.c): findings sorted by pid and record order,
   duplicates removed, frames symbolized. Descriptors listed in ignore are
   not reported as leaks. Returns 0 or an errno value. */
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

/* Free every string a frame owns (role, thread name, object, and what
   forksafe__symbols_resolve added: function, file, inlined functions);
   NULL members are fine. symbols.c. */
void forksafe__frame_free(struct forksafe_frame *f);

/* Free everything records_load put in run. */
void forksafe__run_free(struct forksafe_run *run);
void forksafe__finding_free(struct forksafe_finding *f);

/* The rules of docs/audit.md that need what several processes recorded
   (a parent's fork and its children): applied to the raw findings in
   run, with lockinfo records (pid, lock, name, rank). rules.c. */
void forksafe__rules_apply(struct forksafe_run *run);

/* One sentence per finding, the same in every report (rules.c). */
void forksafe__build_message(struct forksafe_finding *f);

/* Resolve object + file offset: fills the frame's offset (ELF virtual
   address), function and func_delta when a symbol covers it, and file,
   line and inlined functions when the object (or its separate debug file,
   found by build-id) carries DWARF and the build has libdw. */
void forksafe__symbols_resolve(struct forksafe_frame *f, uint64_t file_off);
/* The ELF symbol tables only (the fallback, and for objects without
   DWARF). */
void forksafe__symbols_resolve_elf(struct forksafe_frame *f,
                                   uint64_t file_off);
/* DWARF through libdwfl: 0 if it filled the frame, -1 otherwise (no
   libdw in the build, no DWARF for the object). */
int forksafe__symbols_resolve_dw(struct forksafe_frame *f, uint64_t vaddr);
/* "libdw" or "elf": what symbolizes frames in this build. */
const char *forksafe__symbols_backend(void);

/* Unmap and free the symbol tables read so far. */
void forksafe__symbols_free(void);
void forksafe__symbols_free_dw(void);

/* Look up a detail of a finding or a summary; NULL if absent. */
const char *forksafe__kv_get(const struct forksafe_kv *kv, size_t n,
                             const char *key);
/* Set (replace or add) a detail. */
void forksafe__detail_set(struct forksafe_finding *f, const char *key,
                          const char *val, int type);
void forksafe__detail_set_int(struct forksafe_finding *f, const char *key,
                              long v);
void forksafe__detail_del(struct forksafe_finding *f, const char *key);

/* Allocation that exits with a message when memory runs out. */

/* Parse a severity name; -1 if unknown. */
int forksafe__sev_parse(const char *s);
const char *forksafe__sev_name(enum forksafe_sev s);

/* 1 when the report is not the whole story: a process was not audited,
   records were lost, a fork could not count threads, or forksafe-audit
   was interrupted. */
int forksafe__run_incomplete(const struct forksafe_run *run);

/* --suppressions FILE: parse the rules into run (appending). Returns 0,
   or -1 after printing "forksafe-audit: FILE:LINE: why" to stderr. */
int forksafe__supp_load(struct forksafe_run *run, const char *path);
/* Move findings that match a rule from run->findings to run->suppressed. */
void forksafe__supp_apply(struct forksafe_run *run);
/* Compute every finding's fingerprint. */
void forksafe__fingerprint_all(struct forksafe_run *run);
/* --baseline OLD.json: the fingerprints of the old report's findings.
   Returns 0, or -1 after printing why to stderr (not a forksafe-audit
   report, not JSON, unreadable). */
struct forksafe_baseline;
struct forksafe_baseline *forksafe__baseline_load(const char *path);
/* Mark each finding new or unchanged against the baseline. */
void forksafe__baseline_apply(struct forksafe_run *run,
                              struct forksafe_baseline *b);
void forksafe__baseline_free(struct forksafe_baseline *b);
/* The fingerprint of a finding (malloc'd). */
char *forksafe__fingerprint(const struct forksafe_finding *f);

/* The human report, to out. */
void forksafe__report_text(FILE *out, const struct forksafe_run *run);
/* The JSON document, to out. Returns 0 or an errno value from writing. */
int forksafe__report_json(FILE *out, const struct forksafe_run *run);
/* The SARIF 2.1.0 log, to out. Returns 0 or an errno value. */
int forksafe__report_sarif(FILE *out, const struct forksafe_run *run);

#endif
