/* SPDX-License-Identifier: MIT */
/*
 * report.c: forksafe_audit_write(), the in-process report of every entry,
 * adapter and live thread, as text or JSON (schema: docs/report.md).
 * The report is built in memory under the registry lock and written after
 * it is released, so a slow reader of fd never holds up a fork.
 */
#include "internal.h"
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

/* A JSON string literal (RFC 8259 escapes). */
static void put_json_str(struct buf *b, const char *s)
{
    put(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            put(b, "\\%c", c);
        else if (c < 0x20)
            put(b, "\\u%04x", c);
        else
            put(b, "%c", c);
    }
    put(b, "\"");
}

struct thread_list {
    struct buf *b;
    int json;
    int n;
};

static void put_thread(pid_t tid, void *arg)
{
    struct thread_list *t = arg;
    char name[64];
    forksafe__thread_name(tid, name, sizeof name);
    if (t->json) {
        put(t->b, "%s\n    {\"tid\": %d, \"name\": ", t->n ? "," : "",
            (int)tid);
        put_json_str(t->b, name);
        put(t->b, "}");
    } else {
        put(t->b, "  %-8d %s\n", (int)tid, name);
    }
    t->n++;
}

static void build(struct buf *b, int json)
{
    char obj[512], tname[64];
    size_t n = 0;
    for (struct forksafe_entry *e = forksafe__registry_first(); e; e = e->next)
        n++;
    if (json)
        put(b,
            "{\n  \"schema\": \"forksafe-report\",\n  \"version\": 1,\n"
            "  \"pid\": %d,\n  \"default_timeout_ms\": %u,\n",
            (int)getpid(), forksafe__default_timeout_ms());
    else
        put(b, "forksafe report: pid %d, %zu registered entr%s\n",
            (int)getpid(), n, n == 1 ? "y" : "ies");
    struct forksafe_platform_info pi;
    forksafe__platform_info(&pi);
    const struct forksafe_platform *P = forksafe__platform();
    unsigned long child_failures = P->child_failures ? P->child_failures() : 0;
    if (json) {
        put(b, "  \"platform\": {\"layer\": ");
        put_json_str(b, pi.layer);
        put(b, ", \"libc\": ");
        put_json_str(b, pi.libc);
        put(b, ", \"arch\": ");
        put_json_str(b, pi.arch);
        put(b, ", \"fallback\": ");
        put_json_str(b, pi.fallback);
        put(b, ", \"child_failures\": %lu},\n  \"entries\": [", child_failures);
    } else {
        put(b, "platform: %s layer (%s, %s)%s%s\n", pi.layer, pi.libc, pi.arch,
            *pi.fallback ? "; " : "", pi.fallback);
        if (child_failures)
            put(b,
                "platform: %lu registered lock(s) could not be handed to "
                "this process when it was forked\n",
                child_failures);
        put(b, "entries, in prepare order:\n  %-6s %-9s %-18s %-24s %-22s %s\n",
            "rank", "kind", "type", "name", "holder", "object");
    }
    int first = 1;
    for (struct forksafe_entry *e = forksafe__registry_first(); e;
         e = e->next) {
        const struct forksafe_kind_ops *k = &forksafe__kinds[e->kind];
        forksafe__entry_object(e, obj, sizeof obj);
        pid_t h = k->holder(e->key);
        if (h > 0)
            forksafe__thread_name(h, tname, sizeof tname);
        if (json) {
            put(b, "%s\n    {\"name\": ", first ? "" : ",");
            put_json_str(b, e->name);
            put(b,
                ", \"rank\": %u, \"seq\": %lu, \"kind\": \"%s\", "
                "\"type\": \"%s\", \"key\": \"%p\", \"object\": ",
                e->rank, (unsigned long)e->seq, k->name, k->detail(e->key),
                e->key);
            put_json_str(b, obj);
            put(b, ", \"held\": %s, \"holder\": ",
                h == FS_HOLDER_UNKNOWN ? "null"
                : h                    ? "true"
                                       : "false");
            if (h > 0) {
                put(b, "{\"tid\": %d, \"name\": ", (int)h);
                put_json_str(b, tname);
                put(b, "}}");
            } else {
                put(b, "null}");
            }
        } else {
            char holder[96];
            if (h > 0)
                snprintf(holder, sizeof holder, "%d (%s)", (int)h, tname);
            else
                snprintf(holder, sizeof holder, "%s",
                         h == FS_HOLDER_UNKNOWN ? "unknown"
                         : h                    ? "held (unknown)"
                                                : "-");
            put(b, "  %-6u %-9s %-18s %-24s %-22s %s\n", e->rank, k->name,
                k->detail(e->key), e->name, holder, obj);
        }
        first = 0;
    }
    if (json)
        put(b, "%s],\n  \"adapters\": [", first ? "" : "\n  ");
    else
        put(b, "adapters installed:");
    const char *a;
    for (size_t i = 0; (a = forksafe__adapter_name(i)) != NULL; i++) {
        if (json) {
            put(b, "%s", i ? ", " : "");
            put_json_str(b, a);
        } else {
            put(b, " %s", a);
        }
    }
    const char *text;
    unsigned long fails = forksafe__plain_failures(&text);
    if (json) {
        put(b, "],\n  \"plain_fork_failures\": {\"count\": %lu, \"last\": ",
            fails);
        put_json_str(b, text);
        put(b, "},\n  \"threads\": [");
    } else {
        put(b, "%s\nplain fork() prepare failures: %lu%s%s\nthreads:\n",
            forksafe__adapter_name(0) ? "" : " none", fails,
            fails ? "; last: " : "", fails ? text : "");
    }
}

int forksafe_audit_write(int fd, unsigned flags)
{
    if (flags & ~FORKSAFE_AUDIT_JSON)
        return EINVAL;
    if (fd < 0 || fcntl(fd, F_GETFL) < 0)
        return EINVAL;
    int json = (flags & FORKSAFE_AUDIT_JSON) != 0;
    struct buf b = {0};
    int locked = !forksafe__in_fork();
    if (locked) {
        forksafe__registry_lock();
        forksafe__registry_sweep();
    }
    build(&b, json);
    if (locked)
        forksafe__registry_unlock();
    struct thread_list t = {&b, json, 0};
    int err = forksafe__threads_visit(put_thread, &t);
    if (json)
        put(&b, "%s]\n}\n", t.n ? "\n  " : "");
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
