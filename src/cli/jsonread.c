/* SPDX-License-Identifier: MIT */
/*
 * jsonread.c: the JSON reader behind forksafe-audit --baseline (see
 * jsonread.h). Recursive descent over the text, one value per call, with
 * the position kept in a small cursor; every error stops the parse with
 * its offset.
 */
#include "jsonread.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

struct cur {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
    int failed;
};

static void fail(struct cur *c, const char *why)
{
    if (!c->failed)
        snprintf(c->err, c->errlen, "%s at byte %zu", why, c->pos);
    c->failed = 1;
}

static void ws(struct cur *c)
{
    while (c->pos < c->len &&
           (c->s[c->pos] == ' ' || c->s[c->pos] == '\t' ||
            c->s[c->pos] == '\n' || c->s[c->pos] == '\r'))
        c->pos++;
}

static int peek(struct cur *c)
{
    return c->pos < c->len ? (unsigned char)c->s[c->pos] : -1;
}

static int literal(struct cur *c, const char *word)
{
    size_t n = strlen(word);
    if (c->len - c->pos < n || memcmp(c->s + c->pos, word, n) != 0) {
        fail(c, "unexpected text");
        return 0;
    }
    c->pos += n;
    return 1;
}

/* Append the UTF-8 form of code point u. */
static void put_utf8(char *out, size_t *o, unsigned u)
{
    if (u < 0x80) {
        out[(*o)++] = (char)u;
    } else if (u < 0x800) {
        out[(*o)++] = (char)(0xc0 | (u >> 6));
        out[(*o)++] = (char)(0x80 | (u & 0x3f));
    } else if (u < 0x10000) {
        out[(*o)++] = (char)(0xe0 | (u >> 12));
        out[(*o)++] = (char)(0x80 | ((u >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (u & 0x3f));
    } else {
        out[(*o)++] = (char)(0xf0 | (u >> 18));
        out[(*o)++] = (char)(0x80 | ((u >> 12) & 0x3f));
        out[(*o)++] = (char)(0x80 | ((u >> 6) & 0x3f));
        out[(*o)++] = (char)(0x80 | (u & 0x3f));
    }
}

static int hex4(struct cur *c, unsigned *u)
{
    if (c->len - c->pos < 4) {
        fail(c, "short \\u escape");
        return 0;
    }
    *u = 0;
    for (int i = 0; i < 4; i++) {
        char h = c->s[c->pos++];
        int v = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (v < 0) {
            fail(c, "bad \\u escape");
            return 0;
        }
        *u = *u * 16 + (unsigned)v;
    }
    return 1;
}

/* A string; the cursor is on the opening quote. */
static char *string(struct cur *c)
{
    c->pos++;
    /* The decoded form is never longer than the text. */
    size_t start = c->pos, o = 0;
    while (c->pos < c->len && c->s[c->pos] != '"')
        c->pos += c->s[c->pos] == '\\' ? 2 : 1;
    if (c->pos >= c->len) {
        fail(c, "unterminated string");
        return NULL;
    }
    size_t end = c->pos;
    char *out = forksafe__xrealloc(NULL, end - start + 1);
    c->pos = start;
    while (c->pos < end) {
        char ch = c->s[c->pos++];
        if ((unsigned char)ch < 0x20) {
            fail(c, "control character in string");
            free(out);
            return NULL;
        }
        if (ch != '\\') {
            out[o++] = ch;
            continue;
        }
        char e = c->s[c->pos++];
        switch (e) {
        case '"':
        case '\\':
        case '/':
            out[o++] = e;
            break;
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            unsigned u;
            if (!hex4(c, &u)) {
                free(out);
                return NULL;
            }
            if (u >= 0xd800 && u < 0xdc00 && c->pos + 1 < end &&
                c->s[c->pos] == '\\' && c->s[c->pos + 1] == 'u') {
                unsigned lo;
                c->pos += 2;
                if (!hex4(c, &lo)) {
                    free(out);
                    return NULL;
                }
                if (lo >= 0xdc00 && lo < 0xe000)
                    u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                else
                    u = 0xfffd;
            } else if (u >= 0xd800 && u < 0xe000) {
                u = 0xfffd;
            }
            put_utf8(out, &o, u);
            break;
        }
        default:
            fail(c, "bad escape");
            free(out);
            return NULL;
        }
    }
    out[o] = '\0';
    c->pos = end + 1;
    return out;
}

static void value(struct cur *c, struct forksafe_jval *v, int depth);

static void add_item(struct forksafe_jval *v, char *key)
{
    v->items = forksafe__xrealloc(v->items, (v->n + 1) * sizeof *v->items);
    if (v->type == FS_J_OBJ) {
        v->keys = forksafe__xrealloc(v->keys, (v->n + 1) * sizeof *v->keys);
        v->keys[v->n] = key;
    }
    memset(&v->items[v->n], 0, sizeof v->items[0]);
    v->n++;
}

static void container(struct cur *c, struct forksafe_jval *v, int depth,
                      int object)
{
    char close = object ? '}' : ']';
    v->type = object ? FS_J_OBJ : FS_J_ARR;
    c->pos++;
    ws(c);
    if (peek(c) == close) {
        c->pos++;
        return;
    }
    for (;;) {
        char *key = NULL;
        if (object) {
            ws(c);
            if (peek(c) != '"') {
                fail(c, "expected a member name");
                return;
            }
            key = string(c);
            if (!key)
                return;
            ws(c);
            if (peek(c) != ':') {
                free(key);
                fail(c, "expected ':'");
                return;
            }
            c->pos++;
        }
        add_item(v, key);
        value(c, &v->items[v->n - 1], depth + 1);
        if (c->failed)
            return;
        ws(c);
        int ch = peek(c);
        c->pos++;
        if (ch == close)
            return;
        if (ch != ',') {
            c->pos--;
            fail(c, object ? "expected ',' or '}'" : "expected ',' or ']'");
            return;
        }
    }
}

static void number(struct cur *c, struct forksafe_jval *v)
{
    size_t start = c->pos;
    if (peek(c) == '-')
        c->pos++;
    int digits = 0;
    while (peek(c) >= '0' && peek(c) <= '9') {
        c->pos++;
        digits++;
    }
    if (peek(c) == '.') {
        c->pos++;
        while (peek(c) >= '0' && peek(c) <= '9')
            c->pos++;
    }
    if (peek(c) == 'e' || peek(c) == 'E') {
        c->pos++;
        if (peek(c) == '+' || peek(c) == '-')
            c->pos++;
        while (peek(c) >= '0' && peek(c) <= '9')
            c->pos++;
    }
    if (!digits) {
        fail(c, "bad number");
        return;
    }
    v->type = FS_J_NUM;
    size_t n = c->pos - start;
    v->str = forksafe__xrealloc(NULL, n + 1);
    memcpy(v->str, c->s + start, n);
    v->str[n] = '\0';
    v->num = strtod(v->str, NULL);
}

static void value(struct cur *c, struct forksafe_jval *v, int depth)
{
    if (depth > MAX_DEPTH) {
        fail(c, "nested too deeply");
        return;
    }
    ws(c);
    int ch = peek(c);
    if (ch == '{' || ch == '[') {
        container(c, v, depth, ch == '{');
    } else if (ch == '"') {
        v->type = FS_J_STR;
        v->str = string(c);
    } else if (ch == 't' || ch == 'f') {
        v->type = FS_J_BOOL;
        v->boolean = ch == 't';
        literal(c, ch == 't' ? "true" : "false");
    } else if (ch == 'n') {
        v->type = FS_J_NULL;
        literal(c, "null");
    } else if (ch == '-' || (ch >= '0' && ch <= '9')) {
        number(c, v);
    } else {
        fail(c, ch < 0 ? "unexpected end" : "unexpected character");
    }
}

struct forksafe_jval *forksafe__json_parse(const char *text, size_t len,
                                           char *err, size_t errlen)
{
    struct cur c = {text, len, 0, err, errlen, 0};
    struct forksafe_jval *v = forksafe__xrealloc(NULL, sizeof *v);
    memset(v, 0, sizeof *v);
    value(&c, v, 0);
    ws(&c);
    if (!c.failed && c.pos != c.len)
        fail(&c, "text after the document");
    if (c.failed) {
        forksafe__jval_free(v);
        return NULL;
    }
    return v;
}

const struct forksafe_jval *forksafe__jval_get(const struct forksafe_jval *v,
                                               const char *key)
{
    if (!v || v->type != FS_J_OBJ)
        return NULL;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0)
            return &v->items[i];
    return NULL;
}

const char *forksafe__jval_str(const struct forksafe_jval *v, const char *key)
{
    const struct forksafe_jval *m = forksafe__jval_get(v, key);
    return m && m->type == FS_J_STR ? m->str : NULL;
}

static void jval_clear(struct forksafe_jval *v)
{
    for (size_t i = 0; i < v->n; i++) {
        jval_clear(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
}

void forksafe__jval_free(struct forksafe_jval *v)
{
    if (!v)
        return;
    jval_clear(v);
    free(v);
}
