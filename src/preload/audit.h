/* SPDX-License-Identifier: MIT */
/*
 * audit.h: what libforksafe-audit.so adds to the interposer core
 * (interpose.h). setup.c is the constructor and the exec policy; fork.c
 * handles fork() and _Fork() and owns the fork state; child.c acts in a
 * child of a multi-threaded fork (the deadlock guard, calls that are not
 * async-signal-safe); atfork.c sees __register_atfork; report.c writes the
 * exit report and the inherited descriptors. Nothing declared here is
 * exported from the .so: only the interposed functions, marked EXPORT
 * where they are defined, are.
 */
#ifndef FORKSAFE_AUDIT_H
#define FORKSAFE_AUDIT_H

#include "interpose.h"

#pragma GCC visibility push(hidden)

/* ------------------------------------------------------------ fork state */

#define SNAP_MAX 80

/* Locks other threads held when the last multi-threaded fork happened. */
struct snap {
    void *lock;
    void *site;
    int holder;
    int kind;
};

/* Small per-process "report once" sets: fork call sites, held locks,
   unsafe call sites, stdio streams. Reset in every child. */
#define ONCE_MAX 32
struct once {
    uintptr_t key[ONCE_MAX];
    int n;
};

/* Everything fork() and the child write, in one page (fork.c). */
struct fork_state {
    int child_mt;          /* we are a child of a multi-threaded fork */
    int child_has_threads; /* ... that has started threads since */
    int snap_busy;         /* a fork owns the snapshot */
    int nsnap;
    struct once once_fork, once_held, once_unsafe, once_stdio;
    struct snap snap[SNAP_MAX];
};
extern struct fork_state forksafe__audit_fk;

/* fork() and _Fork() calls this process made (not its parent's). */
long forksafe__audit_forks(void);

/* 1 the first time key is offered (0 when already seen or the set is
   full, so a flood of findings is capped). Lock-free; safe in a signal
   handler and in a forked child. */
int forksafe__audit_once_first(struct once *o, uintptr_t key);
/* Start a finding record: kind, severity, pid, ppid and tid. */
void forksafe__audit_rec_common(struct forksafe__rec *r, const char *kind,
                                const char *sev);
/* Numeric entries of a /proc directory (tasks or fds): returns how many
   there are (-errno if dir cannot be opened), and stores the first max of
   them in out. If dirfd_out is not NULL it receives the descriptor used for
   the scan (closed again before the return). Raw system calls only. */
int forksafe__audit_list_numeric(const char *dir, int *out, int max,
                                 int *dirfd_out);
/* The name of thread tid from /proc ("?" if unknown). */
void forksafe__audit_thread_name(long tid, char *name, size_t len);

/* ------------------------------------------------------------ child */

/* Grace period, in milliseconds, for a lock in a child of a
   multi-threaded fork (child.c; FORKSAFE_AUDIT_GRACE_MS, read by the
   constructor). */
extern long forksafe__audit_grace_ms;

/* Report fn as called from site in a child of a multi-threaded parent,
   once per call site. Does nothing elsewhere; errno is kept. */
void forksafe__audit_note_unsafe(const char *fn, void *site);

/* ------------------------------------------------------------ atfork */

/* Raw atfork registrations seen, and those made by libforksafe
   (atfork.c). */
extern int forksafe__audit_atfork_raw, forksafe__audit_atfork_registry;

/* 1 if the object path obj is libforksafe or one of its adapters (not
   libforksafe-audit itself). */
int forksafe__audit_is_forksafe_object(const char *obj);

/* ------------------------------------------------------------ reports */

/* The exit report without registry questions: the fallback atexit handler
   registered by the constructor (report.c). Runs at most once per process,
   whichever exit path comes first. */
void forksafe__audit_exit_late(void);
/* Report every descriptor above 2 inherited across exec without
   close-on-exec. Called from the constructor, before the first record. */
void forksafe__audit_report_inherited_fds(void);

#pragma GCC visibility pop

#endif
