/* SPDX-License-Identifier: MIT */
/*
 * report.c: forksafe_audit_write(), the in-process report of every entry,
 * adapter and live thread, as text or JSON (docs/report.md; the JSON is
 * written by json.c in the dialect it shares with forksafe-audit, schema
 * docs/forksafe.schema.json).
 * The report is built in memory under the registry lock and written after
 * it is released, so a slow reader of fd never holds up a fork.
 */
#include "internal.h"
#include "json.h"
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct buf {
    char *p;
    size_t len, cap;
    int oom;
};

static void put(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0 || b->oom)
            return;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

static void buf_out(void *ctx, const char *s, size_t n)
{
    struct buf *b = ctx;
    if (b->oom)
        return;
    if (b->cap - b->len <= n) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

struct thread_list {
    struct buf *b;
    struct forksafe__json *j; /* NULL: text */
    int n;
};

static void put_thread(pid_t tid, void *arg)
{
    struct thread_list *t = arg;
    char name[64];
    forksafe__thread_name(tid, name, sizeof name);
    if (t->j) {
        forksafe__json_begin_object(t->j);
        forksafe__json_member_int(t->j, "tid", (int)tid);
        forksafe__json_member_str(t->j, "name", name);
        forksafe__json_end_object(t->j);
    } else {
        put(t->b, "  %-8d %s\n", (int)tid, name);
    }
    t->n++;
}

static void build_json(struct forksafe__json *j)
{
    char obj[512], tname[64];
    forksafe__json_begin_object(j);
    forksafe__json_header(j, "forksafe-report");
    forksafe__json_member_int(j, "pid", (int)getpid());
    forksafe__json_member_int(j, "default_timeout_ms",
                              forksafe__default_timeout_ms());
    struct forksafe_platform_info pi;
    forksafe__platform_info(&pi);
    const struct forksafe_platform *P = forksafe__platform();
    forksafe__json_key(j, "platform");
    forksafe__json_begin_object(j);
    forksafe__json_member_str(j, "layer", pi.layer);
    forksafe__json_member_str(j, "libc", pi.libc);
    forksafe__json_member_str(j, "arch", pi.arch);
    forksafe__json_member_str(j, "fallback", *pi.fallback ? pi.fallback : NULL);
    forksafe__json_member_int(j, "child_failures",
                              P->child_failures ? (long long)P->child_failures()
                                                : 0);
    forksafe__json_end_object(j);
    forksafe__json_key(j, "entries");
    forksafe__json_begin_array(j);
    for (struct forksafe_entry *e = forksafe__registry_first(); e;
         e = e->next) {
        const struct forksafe_kind_ops *k = &forksafe__kinds[e->kind];
        forksafe__entry_object(e, obj, sizeof obj);
        pid_t h = k->holder(e->key);
        forksafe__json_begin_object(j);
        forksafe__json_member_str(j, "name", e->name);
        forksafe__json_member_int(j, "rank", e->rank);
        forksafe__json_member_int(j, "seq", (long long)e->seq);
        forksafe__json_member_str(j, "kind", k->name);
        forksafe__json_member_str(j, "type", k->detail(e->key));
        forksafe__json_key(j, "key");
        forksafe__json_address(j, (uintptr_t)e->key);
        forksafe__json_member_str(j, "object", obj);
        if (h == FS_HOLDER_UNKNOWN)
            forksafe__json_member_null(j, "held");
        else
            forksafe__json_member_bool(j, "held", h != 0);
        forksafe__json_key(j, "holder");
        if (h > 0) {
            forksafe__thread_name(h, tname, sizeof tname);
            forksafe__json_begin_object(j);
            forksafe__json_member_int(j, "tid", (int)h);
            forksafe__json_member_str(j, "name", tname);
            forksafe__json_end_object(j);
        } else {
            forksafe__json_null(j);
        }
        forksafe__json_end_object(j);
    }
    forksafe__json_end_array(j);
    forksafe__json_key(j, "adapters");
    forksafe__json_begin_array(j);
    const char *a;
    for (size_t i = 0; (a = forksafe__adapter_name(i)) != NULL; i++)
        forksafe__json_string(j, a);
    forksafe__json_end_array(j);
    const char *text;
    unsigned long fails = forksafe__plain_failures(&text);
    forksafe__json_key(j, "plain_fork_failures");
    forksafe__json_begin_object(j);
    forksafe__json_member_int(j, "count", (long long)fails);
    forksafe__json_member_str(j, "last", fails && text[0] ? text : NULL);
    forksafe__json_end_object(j);
    forksafe__json_key(j, "threads");
    forksafe__json_begin_array(j);
}

static void build_text(struct buf *b)
{
    char obj[512], tname[64];
    size_t n = 0;
    for (struct forksafe_entry *e = forksafe__registry_first(); e; e = e->next)
        n++;
    put(b, "forksafe report: pid %d, %zu registered entr%s\n", (int)getpid(), n,
        n == 1 ? "y" : "ies");
    struct forksafe_platform_info pi;
    forksafe__platform_info(&pi);
    const struct forksafe_platform *P = forksafe__platform();
    unsigned long child_failures = P->child_failures ? P->child_failures() : 0;
    put(b, "platform: %s layer (%s, %s)%s%s\n", pi.layer, pi.libc, pi.arch,
        *pi.fallback ? "; " : "", pi.fallback);
    if (child_failures)
        put(b,
            "platform: %lu registered lock(s) could not be handed to "
            "this process when it was forked\n",
            child_failures);
    put(b, "entries, in prepare order:\n  %-6s %-9s %-18s %-24s %-22s %s\n",
        "rank", "kind", "type", "name", "holder", "object");
    for (struct forksafe_entry *e = forksafe__registry_first(); e;
         e = e->next) {
        const struct forksafe_kind_ops *k = &forksafe__kinds[e->kind];
        forksafe__entry_object(e, obj, sizeof obj);
        pid_t h = k->holder(e->key);
        char holder[96];
        if (h > 0) {
            forksafe__thread_name(h, tname, sizeof tname);
            snprintf(holder, sizeof holder, "%d (%s)", (int)h, tname);
        } else {
            snprintf(holder, sizeof holder, "%s",
                     h == FS_HOLDER_UNKNOWN ? "unknown"
                     : h                    ? "held (unknown)"
                                            : "-");
        }
        put(b, "  %-6u %-9s %-18s %-24s %-22s %s\n", e->rank, k->name,
            k->detail(e->key), e->name, holder, obj);
    }
    put(b, "adapters installed:");
    const char *a;
    for (size_t i = 0; (a = forksafe__adapter_name(i)) != NULL; i++)
        put(b, " %s", a);
    const char *text;
    unsigned long fails = forksafe__plain_failures(&text);
    put(b, "%s\nplain fork() prepare failures: %lu%s%s\n",
        forksafe__adapter_name(0) ? "" : " none", fails,
        fails ? "; last: " : "", fails ? text : "");
    if (*forksafe__peer_text()) /* several copies of libforksafe */
        put(b, "%s\n", forksafe__peer_text());
    put(b, "threads:\n");
}

int forksafe_audit_write(int fd, unsigned flags)
{
    FORKSAFE_FORWARD(audit_write(fd, flags));
    if (flags & ~FORKSAFE_AUDIT_JSON)
        return EINVAL;
    if (fd < 0 || fcntl(fd, F_GETFL) < 0)
        return EINVAL;
    int json = (flags & FORKSAFE_AUDIT_JSON) != 0;
    struct buf b = {0};
    struct forksafe__json j;
    forksafe__json_init(&j, buf_out, &b, 2);
    int locked = !forksafe__in_fork();
    if (locked) {
        forksafe__registry_lock();
        forksafe__registry_sweep();
    }
    if (json)
        build_json(&j);
    else
        build_text(&b);
    if (locked)
        forksafe__registry_unlock();
    struct thread_list t = {&b, json ? &j : NULL, 0};
    int err = forksafe__threads_visit(put_thread, &t);
    if (json) {
        forksafe__json_end_array(&j);
        forksafe__json_end_object(&j);
    }
    if (b.oom) {
        free(b.p);
        return ENOMEM;
    }
    (void)err; /* without /proc the thread list is empty, not an error */
    size_t off = 0;
    int rc = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.p + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = errno;
            break;
        }
        off += (size_t)w;
    }
    free(b.p);
    return rc;
}
