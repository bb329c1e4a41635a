/* SPDX-License-Identifier: MIT */
/*
 * json.h: the one JSON writer behind every JSON document forksafe writes
 * (forksafe_audit_write's report, src/report.c, and forksafe-audit's
 * report, src/cli/output.c), so that both speak one dialect, described by
 * docs/forksafe.schema.json:
 *   - the output is always valid UTF-8: a string that is not is written
 *     with U+FFFD for each bad byte, and forksafe__json_member_str() then
 *     also writes the exact bytes, in hex, as a sibling member KEY_hex;
 *   - numbers are numbers, flags are booleans, absent values are null,
 *     addresses are "0x..." strings;
 *   - every document starts with "schema", "schema_version" and
 *     "tool_version" (forksafe__json_header).
 * The writer allocates nothing; it hands its output to a callback.
 */
#ifndef FORKSAFE_JSON_H
#define FORKSAFE_JSON_H

#include <stddef.h>
#include <stdint.h>

/* The dialect's version: both documents carry it as "schema_version". */
#define FORKSAFE_JSON_SCHEMA_VERSION 2

#define FORKSAFE_JSON_DEPTH 16

struct forksafe__json {
    void (*out)(void *ctx, const char *s, size_t n);
    void *ctx;
    int depth;
    int pretty;    /* arrays up to this depth put each item on a line */
    int after_key; /* a key was written, its value comes next */
    int count[FORKSAFE_JSON_DEPTH];
    char array[FORKSAFE_JSON_DEPTH];
};

/* Start a writer that sends its output to out(ctx, bytes, n). The members
   of the top-level object, and the items of arrays up to depth pretty, go
   on lines of their own; everything else is written on one line. */
void forksafe__json_init(struct forksafe__json *j,
                         void (*out)(void *, const char *, size_t), void *ctx,
                         int pretty);

void forksafe__json_begin_object(struct forksafe__json *j);
void forksafe__json_end_object(struct forksafe__json *j);
void forksafe__json_begin_array(struct forksafe__json *j);
void forksafe__json_end_array(struct forksafe__json *j);
/* A member's name; its value is the next value written. */
void forksafe__json_key(struct forksafe__json *j, const char *key);

/* Values: array items, or the value of the last key. A NULL string is
   written as null. */
void forksafe__json_string(struct forksafe__json *j, const char *s);
void forksafe__json_int(struct forksafe__json *j, long long v);
void forksafe__json_bool(struct forksafe__json *j, int v);
void forksafe__json_null(struct forksafe__json *j);
/* "0x..." */
void forksafe__json_address(struct forksafe__json *j, uintptr_t v);
/* Lowercase hex of the bytes of s, as a string. */
void forksafe__json_hex(struct forksafe__json *j, const char *s);

/* Members: "key": value. member_str also writes "key_hex" when s is not
   valid UTF-8 (NULL: null, no twin). */
void forksafe__json_member_str(struct forksafe__json *j, const char *key,
                               const char *s);
void forksafe__json_member_int(struct forksafe__json *j, const char *key,
                               long long v);
void forksafe__json_member_bool(struct forksafe__json *j, const char *key,
                                int v);
void forksafe__json_member_null(struct forksafe__json *j, const char *key);

/* The three members every forksafe document starts with. */
void forksafe__json_header(struct forksafe__json *j, const char *schema);

/* 1 if the NUL-terminated s is valid UTF-8 (no overlong forms, no
   surrogates, nothing above U+10FFFF). */
int forksafe__utf8_valid(const char *s);

#endif
