/* SPDX-License-Identifier: MIT */
/*
 * spawn-zygote.h: the fork server's wire protocol, shared by the client in
 * zygote.c, the server loop and the fuzz target. The request decoder is a
 * pure function of its input bytes so that a fuzzer can drive it directly.
 *
 * A request is one SOCK_SEQPACKET record: a fixed header, then the argument
 * bytes, then the entry name (no NUL), with the descriptors in one
 * SCM_RIGHTS message and the sender's credentials in SCM_CREDENTIALS. The
 * argument comes first so that it is 8-byte aligned in the server's buffer.
 * The header carries the client's deadline: a server that reads the
 * request too late (it was stopped, or the machine stalled) refuses it
 * with ETIMEDOUT instead of forking a worker nobody waits for.
 * The server's first record is a hello (below). A reply is one fixed
 * record echoing the request's sequence number; a
 * successful one carries a pidfd for the worker in SCM_RIGHTS where the
 * kernel has them, so the client can kill a worker whose reply came after
 * it had given up, without signalling a PID it may no longer own.
 * All integers are in host byte order: both ends are the same program.
 */
#ifndef FORKSAFE_SPAWN_ZYGOTE_H
#define FORKSAFE_SPAWN_ZYGOTE_H

#include <stddef.h>
#include <stdint.h>

#include "forksafe.h"

#define FORKSAFE__ZYGOTE_MAGIC 0x315a5346u /* "FSZ1" */
#define FORKSAFE__ZYGOTE_REPLY 0x525a5346u /* "FSZR" */
#define FORKSAFE__ZYGOTE_SPAWN 1u          /* the only request kind */

struct forksafe__zygote_hdr {
    uint32_t magic;    /* FORKSAFE__ZYGOTE_MAGIC */
    uint32_t kind;     /* FORKSAFE__ZYGOTE_SPAWN */
    uint32_t name_len; /* 1..FORKSAFE_ZYGOTE_NAME_MAX */
    uint32_t arg_len;  /* 0..FORKSAFE_ZYGOTE_ARG_MAX */
    uint32_t nfds;     /* 0..FORKSAFE_ZYGOTE_FDS_MAX, as many as attached */
    uint32_t reserved; /* 0 */
    uint64_t seq;      /* echoed in the reply */
    uint64_t deadline; /* the server's CLOCK_MONOTONIC, in ns; 0: none */
};

/* The largest well-formed request; the server reads one byte more so that
   an oversized record is seen as truncated (MSG_TRUNC). */
#define FORKSAFE__ZYGOTE_REQ_MAX                                               \
    (sizeof(struct forksafe__zygote_hdr) + FORKSAFE_ZYGOTE_ARG_MAX +           \
     FORKSAFE_ZYGOTE_NAME_MAX)

struct forksafe__zygote_reply {
    uint32_t magic; /* FORKSAFE__ZYGOTE_REPLY */
    int32_t err;    /* 0 or an errno value */
    int32_t pid;    /* the worker, when err is 0 */
    uint32_t reserved;
    uint64_t seq; /* the request's, or 0 if its header was unreadable */
};

/* The server's first record, sent once it is ready (or refusing): err is 0
   or why it cannot serve (ENOTSUP: its parent is not in its PID namespace),
   pid its own PID as it sees it, and mono its CLOCK_MONOTONIC just before
   sending. The client subtracts its own clock at receipt, which gives the
   offset between the two clocks (nonzero when the server lives in another
   time namespace) to within the hello's latency, erring early; it adds that
   offset to every deadline it sends, so that both ends mean the same
   instant. */
#define FORKSAFE__ZYGOTE_HELLO 0x485a5346u /* "FSZH" */

struct forksafe__zygote_hello {
    uint32_t magic; /* FORKSAFE__ZYGOTE_HELLO */
    int32_t err;
    int32_t pid;
    uint32_t reserved;
    uint64_t mono; /* ns */
};

/* A decoded request; pointers point into the buffer that was decoded. */
struct forksafe__zygote_req {
    const char *name; /* not NUL-terminated */
    size_t name_len;
    const void *arg; /* NULL when arg_len is 0 */
    size_t arg_len;
    size_t nfds;
    uint64_t seq;
    uint64_t deadline; /* as in the header */
};

/* Decode one request record msg[0..len) that arrived with nfds_received
   descriptors. Pure: reads only msg, writes only *req, never allocates.
   Returns 0 with *req filled, or an error for the reply:
     EPROTO  shorter than the header, wrong magic or kind, reserved not
             zero, length not exactly header + arg_len + name_len, or nfds
             different from the descriptors received;
     EINVAL  name empty, longer than FORKSAFE_ZYGOTE_NAME_MAX, or holding
             a NUL byte;
     E2BIG   arg_len > FORKSAFE_ZYGOTE_ARG_MAX or nfds (declared or
             received) > FORKSAFE_ZYGOTE_FDS_MAX.
   On error req->seq holds the header's seq if the header was readable,
   else 0; the other fields are unspecified. */
int forksafe__zygote_decode(const void *msg, size_t len, size_t nfds_received,
                            struct forksafe__zygote_req *req);

/* The client end of the channel in this process, or -1. For tests that
   send hand-made requests. */
int forksafe__zygote_fd(void);

/* Close every open descriptor from lo to hi (spawn.c; the fork server uses
   it too): close_range(), else what listing /proc/self/fd finds, else
   every number below RLIMIT_NOFILE. Raw system calls only, no allocation:
   safe in a vfork()-style child that shares its parent's memory. */
void forksafe__close_span(unsigned lo, unsigned hi);

#endif
