/* SPDX-License-Identifier: MIT */
/*
 * preload.h: internal interfaces of libforksafe-audit.so, the LD_PRELOAD
 * interposer behind forksafe-audit. Everything declared here may run inside
 * a signal handler, in the child of a multi-threaded fork or in a vfork
 * child, so none of it allocates or takes a lock: buffers come from a small
 * static pool claimed with atomics, and all I/O is raw system calls.
 * Record syntax: see emit.c.
 */
#ifndef FORKSAFE_PRELOAD_H
#define FORKSAFE_PRELOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Small state that every process touches (settings, counters, the real
   function pointers) goes into .data, next to each other, instead of
   being scattered over the zero pages of .bss: each page first touched is
   a page fault, and exec-heavy scripts pay them in every process. */
#define HOT __attribute__((section(".data.forksafe_hot")))

/* The record file in FORKSAFE_AUDIT_DIR, shared by every process. */
#define FORKSAFE_RECORDS_NAME "all.rec"

/* Exit status of a child ended by the audit after a child-deadlock. */
#define FORKSAFE_AUDIT_DEADLOCK_STATUS 86

/* One record being built: a line of tab-separated key=value fields. */
struct forksafe__rec {
    char buf[6144];
    size_t len;
    int truncated;
};

/* Claim a record buffer from the static pool and start a record of type
   `type` ("finding", "lockinfo", "summary", ...). Returns NULL when the pool
   is exhausted (the record is then dropped, never waited for, and counted
   as lost in the run page) or when no record directory is set. */
struct forksafe__rec *forksafe__rec_begin(const char *type);

/* Append a string field; the value is escaped (tab, newline, carriage
   return, backslash). */
void forksafe__rec_str(struct forksafe__rec *r, const char *key,
                       const char *value);
/* Append an integer field (the JSON report shows it as a number). */
void forksafe__rec_int(struct forksafe__rec *r, const char *key, long value);
/* Append a boolean field. */
void forksafe__rec_bool(struct forksafe__rec *r, const char *key, int value);
/* Append a string field key=0x<hex> (addresses are strings). */
void forksafe__rec_hex(struct forksafe__rec *r, const char *key,
                       uintptr_t value);
/* Append a frame: frame=role|tid|thread-name|object|0xoffset, where object
   and offset come from /proc/self/maps (offset is a file offset; the CLI
   turns it into a symbol). tid 0 and name NULL mean "not applicable". */
void forksafe__rec_frame(struct forksafe__rec *r, const char *role, long tid,
                         const char *name, const void *addr);
/* Write the record as one line with one write() to this process's record
   file (opened and closed around it), and give the buffer back to the
   pool. Safe in a signal handler and in a forked child; errno is kept. A
   record that cannot be written is counted as lost in the run page. */
void forksafe__rec_end(struct forksafe__rec *r);
/* The same, but kept in a buffer with others and written with them (one
   write for a burst of records from a short-lived process): before the
   next other record, and whenever forksafe__rec_flush() is called. */
void forksafe__rec_end_batched(struct forksafe__rec *r);
/* Write what forksafe__rec_end_batched kept. Called before a fork, an exec
   and an exit. */
void forksafe__rec_flush(void);
/* The same, without the "proc" line or any other static state: for
   records written from an exec hook, which may run in a vfork child that
   shares the parent's memory. */
void forksafe__rec_end_aside(struct forksafe__rec *r);
/* The same, for the last record of a process about to _exit: when it is
   out of descriptors, one descriptor is closed to make room first
   (forksafe__rec_make_room, which a caller about to _exit may also call
   before building its record, so that /proc can be read). */
void forksafe__rec_end_final(struct forksafe__rec *r);
void forksafe__rec_make_room(void);

/* 1 if this process has written a record already. */
int forksafe__rec_written(void);

/* Count an event in the run page (runpage.h FORKSAFE_RUN_*), for this
   process; needs no descriptor. Does nothing without a run page. */
void forksafe__run_event(int type, int err);
/* Count a new child of fork() in the run page (called in the child). */
void forksafe__run_count_fork(void);

/* Read the output directory from the environment (FORKSAFE_AUDIT_DIR,
   or the variable named with forksafe__out_use_variable). Called from the
   constructor; harmless to call again. */
void forksafe__out_init(void);
/* Take the record directory from the variable name (a string that lives
   as long as the library) instead of FORKSAFE_AUDIT_DIR. Called by a
   library's constructor before forksafe__out_init(). */
void forksafe__out_use_variable(const char *name);
/* 1 if records are being collected (a usable directory was given). */
int forksafe__out_enabled(void);
/* 0 if records are collected but their directory cannot be reached from
   here (after chroot(), in another mount namespace, once forksafe-audit
   has ended), else 1. One access(). */
int forksafe__out_reachable(void);
/* The pid this program image started in (read by forksafe__out_init(),
   so without a system call of its own). */
long forksafe__out_image_pid(void);

/* Find the mapping that contains addr: copies the object's path (or
   "[anon]") into obj and returns the file offset in *off. Returns 0, or -1
   if no mapping contains addr. Reads /proc/self/maps with raw syscalls. */
int forksafe__maps_find(const void *addr, char *obj, size_t objlen,
                        uintptr_t *off);
/* The extent [*lo, *hi) of the mapping that contains addr: 0, or -1. */
int forksafe__maps_extent(const void *addr, uintptr_t *lo, uintptr_t *hi);
/* Whether the mapping that contains addr is shared (MAP_SHARED, System V
   shared memory): 1 if it is, 0 if it is private, -1 if no mapping
   contains it or /proc/self/maps cannot be read. */
int forksafe__maps_shared(const void *addr);
/* Forget what forksafe__maps_find cached about [lo, hi) (it is being
   unmapped). */
void forksafe__maps_forget(uintptr_t lo, uintptr_t hi);
/* The segment [lo, hi) of the object at path, whose first byte is at file
   offset fileoff, was unloaded (dlclose): forksafe__maps_find keeps naming
   addresses in it, when no mapping contains them any more, so that code
   addresses recorded while the object was loaded (a lock's acquire site,
   reported at exit) still resolve to the object and offset. The most
   recent 32 unloaded objects are kept. */
void forksafe__maps_note_unloaded(uintptr_t lo, uintptr_t hi,
                                  uintptr_t fileoff, const char *path);

/* Small async-signal-safe helpers. */
long forksafe__gettid(void);
long forksafe__getpid(void);
/* The number of threads in this process from /proc/self/task's link
   count (raw clone() threads included), or -1. One system call, no
   descriptor. */
int forksafe__task_count(void);
/* open() that, when a single-threaded process is out of descriptors
   (EMFILE), retries with the soft RLIMIT_NOFILE raised by one if the hard
   limit allows it, and puts the limit back: a child that used every
   descriptor can still have its /proc files read and its records
   written. Returns the descriptor or -1 with errno set. */
int forksafe__open_spare(const char *path, int flags, mode_t mode);
/* The longest line forksafe__proc_lines() passes whole (longer ones are
   cut to FORKSAFE_PROC_LINE - 1 bytes). */
#define FORKSAFE_PROC_LINE 640
/* Read a file of /proc line by line with raw system calls (no allocation,
   no lock): fn(line, arg) for each line, NUL-terminated without its
   newline, until fn returns non-zero. Returns fn's non-zero value, 0 at
   the end of the file, or -1 if the file cannot be opened. */
int forksafe__proc_lines(const char *path, int (*fn)(char *line, void *arg),
                         void *arg);
/* Read the whole of a small file into buf (NUL-terminated, trailing newline
   dropped). Returns the length or -1. */
long forksafe__read_small(const char *path, char *buf, size_t len);
/* Decimal formatting into a buffer; returns the length written. */
size_t forksafe__fmt_dec(char *out, long v);
/* Bounded string copy and append that always NUL-terminate. */
void forksafe__str_copy(char *dst, size_t len, const char *src);
void forksafe__str_cat(char *dst, size_t len, const char *src);

#endif
