/* SPDX-License-Identifier: MIT */
/*
 * zygote-decode-check.h: one fuzz input run through the fork server's
 * request decoder, with every promise of its contract checked. Shared by
 * the libFuzzer target and by test-zygote-decode, which replays the corpus
 * (and every crash ever found) as a regression test in every build.
 *
 * Input format: byte 0 is the number of descriptors "received" (0-255),
 * the rest is the request record.
 */
#ifndef FORKSAFE_ZYGOTE_DECODE_CHECK_H
#define FORKSAFE_ZYGOTE_DECODE_CHECK_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spawn-zygote.h"

/* Returns the decoder's verdict; aborts if the verdict or the decoded
   fields break the contract in spawn-zygote.h. */
static inline int fs_zygote_decode_check(const uint8_t *data, size_t size)
{
    if (size == 0)
        return EPROTO;
    size_t nfds = data[0];
    const uint8_t *msg = data + 1;
    size_t len = size - 1;
    /* Decode from an exact-size heap copy, so that ASan catches any read
       past the record. */
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        abort();
    memcpy(copy, msg, len);
    struct forksafe__zygote_req req;
    memset(&req, 0xa5, sizeof req);
    int r = forksafe__zygote_decode(copy, len, nfds, &req);
    struct forksafe__zygote_hdr h;
    if (len < sizeof h) {
        if (r != EPROTO || req.seq != 0)
            abort();
        free(copy);
        return r;
    }
    memcpy(&h, msg, sizeof h);
    if (req.seq != h.seq)
        abort();
    if (r != 0 && r != EPROTO && r != EINVAL && r != E2BIG)
        abort();
    if (r == 0) {
        const uint8_t *end = copy + len;
        if (h.magic != FORKSAFE__ZYGOTE_MAGIC || h.reserved != 0 ||
            req.name_len == 0 || req.name_len > FORKSAFE_ZYGOTE_NAME_MAX ||
            req.arg_len > FORKSAFE_ZYGOTE_ARG_MAX ||
            req.nfds != nfds || nfds > FORKSAFE_ZYGOTE_FDS_MAX ||
            req.deadline != h.deadline ||
            len != sizeof h + req.arg_len + req.name_len)
            abort();
        if ((const uint8_t *)req.name < copy + sizeof h ||
            (const uint8_t *)req.name + req.name_len != end)
            abort();
        if (memchr(req.name, 0, req.name_len) != NULL)
            abort();
        if (req.arg_len > 0 && (const uint8_t *)req.arg != copy + sizeof h)
            abort();
        if (req.arg_len == 0 && req.arg != NULL)
            abort();
    }
    free(copy);
    return r;
}

#endif
