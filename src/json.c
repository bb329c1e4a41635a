/* SPDX-License-Identifier: MIT */
/*
 * json.c: the JSON writer shared by the in-process report and
 * forksafe-audit (see json.h for the dialect).
 */
#include "json.h"

#include "forksafe.h"

#include <stdio.h>
#include <string.h>

static void put(struct forksafe__json *j, const char *s, size_t n)
{
    j->out(j->ctx, s, n);
}

static void puts_(struct forksafe__json *j, const char *s)
{
    put(j, s, strlen(s));
}

void forksafe__json_init(struct forksafe__json *j,
                         void (*out)(void *, const char *, size_t), void *ctx,
                         int pretty)
{
    memset(j, 0, sizeof *j);
    j->out = out;
    j->ctx = ctx;
    j->pretty = pretty;
}

/* Before a value or a key: the separator from the previous item, and the
   line break of a pretty container. */
static void item(struct forksafe__json *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    int d = j->depth;
    if (d <= 0 || d >= FORKSAFE_JSON_DEPTH)
        return;
    if (j->count[d]++)
        put(j, ",", 1);
    if (d == 1 || (d <= j->pretty && j->array[d])) {
        put(j, "\n", 1);
        for (int i = 0; i < d; i++)
            put(j, "  ", 2);
    } else if (j->count[d] > 1) {
        put(j, " ", 1);
    }
}

static void open_(struct forksafe__json *j, const char *c)
{
    item(j);
    puts_(j, c);
    if (j->depth + 1 < FORKSAFE_JSON_DEPTH) {
        j->count[j->depth + 1] = 0;
        j->array[j->depth + 1] = c[0] == '[';
    }
    j->depth++;
}

static void close_(struct forksafe__json *j, const char *c)
{
    int d = j->depth;
    if (d > 0 && d < FORKSAFE_JSON_DEPTH &&
        (d == 1 || (d <= j->pretty && j->array[d])) && j->count[d]) {
        put(j, "\n", 1);
        for (int i = 0; i < d - 1; i++)
            put(j, "  ", 2);
    }
    j->depth--;
    puts_(j, c);
    if (j->depth == 0)
        put(j, "\n", 1);
}

void forksafe__json_begin_object(struct forksafe__json *j)
{
    open_(j, "{");
}

void forksafe__json_end_object(struct forksafe__json *j)
{
    close_(j, "}");
}

void forksafe__json_begin_array(struct forksafe__json *j)
{
    open_(j, "[");
}

void forksafe__json_end_array(struct forksafe__json *j)
{
    close_(j, "]");
}

/* Length of the valid UTF-8 sequence at s (1 to 4), or 0 if the bytes
   there are not one (RFC 3629: no overlong forms, no surrogates, nothing
   above U+10FFFF). */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 &&
                       (s[3] & 0xc0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

int forksafe__utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_seq(p);
        if (!n)
            return 0;
        p += n;
    }
    return 1;
}

static void string_body(struct forksafe__json *j, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    put(j, "\"", 1);
    while (*p) {
        const unsigned char *run = p;
        /* Copy runs of bytes that need nothing at once. */
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            put(j, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(j, esc, 2);
            p++;
        } else if (*p < 0x20) {
            const char *named = *p == '\n'   ? "\\n"
                                : *p == '\t' ? "\\t"
                                : *p == '\r' ? "\\r"
                                : *p == '\b' ? "\\b"
                                : *p == '\f' ? "\\f"
                                             : NULL;
            if (named) {
                put(j, named, 2);
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                put(j, esc, 6);
            }
            p++;
        } else {
            size_t n = utf8_seq(p);
            if (n) {
                put(j, (const char *)p, n);
                p += n;
            } else {
                put(j, "\xef\xbf\xbd", 3); /* U+FFFD for one bad byte */
                p++;
            }
        }
    }
    put(j, "\"", 1);
}

void forksafe__json_key(struct forksafe__json *j, const char *key)
{
    item(j);
    string_body(j, key);
    put(j, ": ", 2);
    j->after_key = 1;
}

void forksafe__json_string(struct forksafe__json *j, const char *s)
{
    if (!s) {
        forksafe__json_null(j);
        return;
    }
    item(j);
    string_body(j, s);
}

void forksafe__json_int(struct forksafe__json *j, long long v)
{
    char buf[32];
    item(j);
    put(j, buf, (size_t)snprintf(buf, sizeof buf, "%lld", v));
}

void forksafe__json_bool(struct forksafe__json *j, int v)
{
    item(j);
    puts_(j, v ? "true" : "false");
}

void forksafe__json_null(struct forksafe__json *j)
{
    item(j);
    puts_(j, "null");
}

void forksafe__json_address(struct forksafe__json *j, uintptr_t v)
{
    char buf[32];
    item(j);
    put(j, buf,
        (size_t)snprintf(buf, sizeof buf, "\"0x%llx\"", (unsigned long long)v));
}

void forksafe__json_hex(struct forksafe__json *j, const char *s)
{
    item(j);
    put(j, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char h[2] = {"0123456789abcdef"[*p >> 4], "0123456789abcdef"[*p & 15]};
        put(j, h, 2);
    }
    put(j, "\"", 1);
}

void forksafe__json_member_str(struct forksafe__json *j, const char *key,
                               const char *s)
{
    forksafe__json_key(j, key);
    forksafe__json_string(j, s);
    if (s && !forksafe__utf8_valid(s)) {
        char twin[128];
        snprintf(twin, sizeof twin, "%s_hex", key);
        forksafe__json_key(j, twin);
        forksafe__json_hex(j, s);
    }
}

void forksafe__json_member_int(struct forksafe__json *j, const char *key,
                               long long v)
{
    forksafe__json_key(j, key);
    forksafe__json_int(j, v);
}

void forksafe__json_member_bool(struct forksafe__json *j, const char *key,
                                int v)
{
    forksafe__json_key(j, key);
    forksafe__json_bool(j, v);
}

void forksafe__json_member_null(struct forksafe__json *j, const char *key)
{
    forksafe__json_key(j, key);
    forksafe__json_null(j);
}

void forksafe__json_header(struct forksafe__json *j, const char *schema)
{
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", FORKSAFE_VERSION_MAJOR,
             FORKSAFE_VERSION_MINOR, FORKSAFE_VERSION_PATCH);
    forksafe__json_member_str(j, "schema", schema);
    forksafe__json_member_int(j, "schema_version",
                              FORKSAFE_JSON_SCHEMA_VERSION);
    forksafe__json_member_str(j, "tool_version", version);
}
