/* SPDX-License-Identifier: MIT */
/*
 * zygote-proto.c: the fork server's request decoder, kept pure (bytes in,
 * verdict out) so the server can trust nothing it did not check and the
 * fuzzer in tests/fuzz/ can drive exactly the code the server runs.
 */
#include "spawn-zygote.h"

#include <errno.h>
#include <string.h>

/* Contract in spawn-zygote.h. Every length is checked against a small
   bound before it takes part in any arithmetic, so no sum can overflow. */
int forksafe__zygote_decode(const void *msg, size_t len, size_t nfds_received,
                            struct forksafe__zygote_req *req)
{
    struct forksafe__zygote_hdr h;
    req->seq = 0;
    if (msg == NULL || len < sizeof h)
        return EPROTO;
    memcpy(&h, msg, sizeof h); /* msg need not be aligned */
    req->seq = h.seq;
    if (h.magic != FORKSAFE__ZYGOTE_MAGIC || h.kind != FORKSAFE__ZYGOTE_SPAWN ||
        h.reserved != 0)
        return EPROTO;
    if (h.name_len == 0 || h.name_len > FORKSAFE_ZYGOTE_NAME_MAX)
        return EINVAL;
    if (h.arg_len > FORKSAFE_ZYGOTE_ARG_MAX)
        return E2BIG;
    if (h.nfds > FORKSAFE_ZYGOTE_FDS_MAX ||
        nfds_received > FORKSAFE_ZYGOTE_FDS_MAX)
        return E2BIG;
    if (len != sizeof h + (size_t)h.arg_len + (size_t)h.name_len)
        return EPROTO;
    if (h.nfds != nfds_received)
        return EPROTO;
    const unsigned char *p = (const unsigned char *)msg + sizeof h;
    if (memchr(p + h.arg_len, '\0', h.name_len) != NULL)
        return EINVAL;
    req->arg = h.arg_len > 0 ? p : NULL;
    req->arg_len = h.arg_len;
    req->name = (const char *)(p + h.arg_len);
    req->name_len = h.name_len;
    req->nfds = h.nfds;
    req->deadline = h.deadline;
    return 0;
}
