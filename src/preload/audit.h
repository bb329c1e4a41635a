/* SPDX-License-Identifier: MIT */
/*
 * audit.h: what libforksafe-audit.so adds to the interposer core
 * (interpose.h). setup.c is the constructor and the exec policy; fork.c
 * handles fork(), _Fork() and forksafe_fork() and owns the fork state;
 * child.c acts in the child of a fork (whether it runs on, the deadlock
 * guard, locks other threads used, output written twice); libs.c sees the
 * few library calls that create state a forked child must not inherit
 * unprepared, and the adapters that forksafe installs; atfork.c sees
 * __register_atfork; report.c writes the exit report and the inherited
 * descriptors. Nothing declared here is exported from the .so: only the
 * interposed functions, marked EXPORT where they are defined, are.
 *
 * How the rules of docs/audit.md are split between the processes: the
 * parent records what was true at a fork (threads, locks other threads
 * held and whether a prepare handler took them, pending stdio, library
 * state); its child records whether it ran on (did anything but exec or
 * _exit) and what it touched; forksafe-audit joins the two (src/cli/).
 */
#ifndef FORKSAFE_AUDIT_H
#define FORKSAFE_AUDIT_H

#include "interpose.h"

#pragma GCC visibility push(hidden)

/* ------------------------------------------------------------ fork state */

#define SNAP_MAX 80

/* How a lock another thread held at the fork was covered. */
enum {
    COVER_NONE = 0,
    COVER_REGISTRY = 1, /* libforksafe's prepare took it: a registered lock */
    COVER_PREPARE = 2   /* another prepare took it: a registered callback
                           set or a pthread_atfork handler */
};

/* Locks other threads held when the last multi-threaded fork happened. */
struct snap {
    void *lock;
    void *site;
    int holder;
    unsigned char kind;
    unsigned char covered; /* COVER_* (set by the prepare window) */
    unsigned char named;   /* the registry named it (snap_names) */
    unsigned char ask;     /* taken from libforksafe's code: ask the
                              registry whether it is registered, once the
                              fork is made (fork.c, resolve_covers()) */
};

/* Small per-process "report once" sets: fork call sites, held locks,
   unsafe call sites, stdio streams, libraries. Reset in every child. */
#define ONCE_MAX 32
struct once {
    uintptr_t key[ONCE_MAX];
    int n;
};

/* A library with live state (an open connection, context, loop or share
   handle) at the fork: libs.c's table index, how many, and where the
   oldest live one was created. */
#define LIBSNAP_MAX 8
struct libsnap {
    int lib;
    int count;
    int tid;
    int adapter; /* its forksafe adapter was installed at the fork */
    void *site;
};

/* Everything fork() and the child write, in one page (fork.c). Fields the
   parent sets for its child are written only when they change, so that a
   single-threaded fork with nothing to pass on writes nothing here. */
struct fork_state {
    int child_mt;          /* we are a child of a multi-threaded fork */
    int child_has_threads; /* ... that has started threads since */
    int watch;             /* we are a child that may have inherited state
                              (multi-threaded parent, live library state,
                              pending stdio): watch whether it runs on */
    int ran_on;            /* ... and it has (the "ranon" record is out) */
    int snap_busy;         /* a fork owns the snapshot */
    int nsnap;
    int coordinated; /* libforksafe's fork handler ran for this fork */
    int nlibs;
    long fork_pid;         /* the process that made this fork */
    void *fork_site;       /* and where */
    long stdio_pending[2]; /* bytes pending in stdout, stderr at the fork */
    struct libsnap libs[LIBSNAP_MAX];
    struct once once_fork, once_held, once_unsafe, once_stdio;
    struct snap snap[SNAP_MAX];
};
/* The page that holds it is found in a two-page block at run time: an
   object aligned to a page would align all of .bss, and the first page of
   .bss would then be one more page fault for every program image (the
   loader has already written the page where .data ends). */
extern char forksafe__audit_fk_space[];
#define forksafe__audit_fk                                                     \
    (*(struct fork_state *)(((uintptr_t)forksafe__audit_fk_space + 4095) &     \
                            ~(uintptr_t)4095))

/* The name and rank of a covered lock (struct snap's named), kept off the
   fork state page. */
struct snap_name {
    char name[64];   /* registered name, when struct snap's named */
    long rank;
    char holder[20]; /* the holder thread's name, read at the fork */
    unsigned untracked; /* locks the holder took past its held stack's
                           HELD_CAP entries and held at the fork, not
                           recorded (thread_rec.dropped) */
};
extern struct snap_name forksafe__audit_snap_names[SNAP_MAX];

/* fork() and _Fork() calls this process made (not its parent's). */
long forksafe__audit_forks(void);
/* Forks this process made while other threads were alive. */
long forksafe__audit_forks_mt(void);


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

/* ------------------------------------------------------------ prepare */

/* The prepare window: from the moment a fork starts on this thread (fork,
   _Fork or forksafe_fork) until the real call returns, every lock this
   thread acquires is taken by a fork handler's prepare (forksafe's, a
   registered callback's, or a raw pthread_atfork handler's). Those locks
   are covered: the child does not inherit them from a thread that is
   gone. forksafe__audit_prepared() says whether lock was one of them at
   the fork that made this process (in a child) or at the last fork (in a
   parent). */
int forksafe__audit_prepared(const void *lock);
/* "b was taken while a was held" pairs made inside prepare windows, for
   the exit report (lock-order violations that go through a fork handler). */
int forksafe__audit_prepare_edge(const void *a, const void *b);

/* Nonzero while this thread is inside a real fork() or _Fork() call (its
   fork handlers run then): what they do is not the child running on. */
extern TLS int forksafe__audit_forking;

/* libforksafe's forksafe_lookup(), once libforksafe has registered its fork
   handler (atfork.c): safe to call on the forking thread inside
   libforksafe's own prepare, where it takes no lock. NULL until then. */
struct forksafe_info;
typedef int (*forksafe__lookup_fn)(const void *, struct forksafe_info *);
extern forksafe__lookup_fn forksafe__audit_lookup;
/* The extent of libforksafe's text, for telling its prepare from others'. */
extern uintptr_t forksafe__audit_core_lo, forksafe__audit_core_hi;

/* ------------------------------------------------------------ child */

/* Grace period, in milliseconds, for a lock in a child of a
   multi-threaded fork (child.c; FORKSAFE_AUDIT_GRACE_MS, read by the
   constructor). */
extern long forksafe__audit_grace_ms;

/* In a watched child: the child does something other than exec or _exit
   (the first time: the "ranon" record, and what it inherited without an
   adapter). Does nothing elsewhere; errno is kept. */
void forksafe__audit_ran_on(void);
/* In a watched child: lock (KIND_*) was acquired with fn from site.
   Reports a lock that another thread of the parent used and no prepare
   took at the fork (unsafe-call-in-child). */
void forksafe__child_acquired(void *lock, int kind, const char *fn,
                              void *site);
/* In a watched child: stream f (NULL: every stream) is about to be
   flushed (flushing != 0), or an output call on it has just returned
   (flushing == 0). Reports output pending at the fork that this child
   writes a second time. site: the child's call. */
void forksafe__audit_stdio_check(FILE *f, int flushing, void *site);

/* ------------------------------------------------------------ atfork */

/* Raw atfork registrations seen, and those made by libforksafe
   (atfork.c). */
extern int forksafe__audit_atfork_raw, forksafe__audit_atfork_registry;

/* 1 if the object path obj is libforksafe or one of its adapters (not
   libforksafe-audit itself). */
int forksafe__audit_is_forksafe_object(const char *obj);

/* ------------------------------------------------------------ libraries */

/* Copy the libraries with live state now into the fork state (fk.libs,
   fk.nlibs), writing nothing when there is none and was none. */
void forksafe__audit_libs_snapshot(void);
/* The path of the object that defines library lib's functions ("?" if not
   known) and the adapter that covers it, and whether there is no safe way
   across fork without exec. */
const char *forksafe__audit_lib_path(int lib);
const char *forksafe__audit_lib_adapter(int lib);
int forksafe__audit_lib_no_safe_way(int lib);
/* Libraries with live state at some fork of this process, and how many
   of them had their adapter (for the exit summary). */
void forksafe__audit_libs_needed(int *needed, int *present);
/* The real definition of name for a hook whose own address is self, as
   the loader would have bound the caller (whose return address is caller)
   without the interposer: the next definition in the global scope, else
   the caller's own dependencies (a library loaded with RTLD_LOCAL).
   NULL if there is none. Not for signal handlers (dlsym). */
void *forksafe__audit_resolve_lib(const char *name, void *self, void *caller);
/* An object was unloaded from [lo, hi): forget the real functions cached
   in it. */
void forksafe__audit_libs_unloaded(uintptr_t lo, uintptr_t hi);

/* ------------------------------------------------------------ reports */

/* The exit report without registry questions: the fallback atexit handler
   registered by the constructor (report.c). Runs at most once per process,
   whichever exit path comes first. */
void forksafe__audit_exit_late(void);
/* Report every descriptor above 2 inherited across exec without
   close-on-exec, except those the program was told about (argv, envp, a
   jobserver in MAKEFLAGS, LISTEN_FDS). Called from the constructor,
   before the first record. */
void forksafe__audit_report_inherited_fds(int argc, char **argv, char **envp);

#pragma GCC visibility pop

#endif
