/* SPDX-License-Identifier: MIT */
/*
 * rules.c: the rules of docs/audit.md ("When each finding fires") that
 * need what more than one process recorded. The interposer records, in a
 * parent, what was true at a fork, and in each child whether it ran on
 * (did anything but exec or _exit: a "ranon" record) and what it touched;
 * here the two are joined:
 *
 *   - a finding about state at a fork (fork-with-threads,
 *     lock-held-at-fork, unregistered-shared-lock) is kept only when a
 *     child of that fork ran on;
 *   - fork-with-threads is a warning when libforksafe's fork handler did
 *     not run for the fork, info when it did (what forksafe does not cover
 *     is then reported by the other kinds);
 *   - lock-held-at-fork is info when a prepare took the lock, a warning
 *     when a child then blocked on it (child-deadlock, an error, is
 *     reported too), info when no child that ran on touched it;
 *   - a raw-atfork-handler is info, a warning when it takes part in a
 *     lock-order violation made inside a fork's prepare;
 *   - what children report (unsafe-call-in-child, child-deadlock,
 *     library-without-adapter, stdio-unflushed-at-fork) becomes one
 *     finding per call site and parent program, with the number of
 *     children; fd-leak-on-exec one per program and descriptor, with the
 *     number of programs.
 *
 * Every finding's sentence is written here too, the same in the text,
 * JSON and SARIF reports.
 */
#include "cli.h"

#include "../preload/execcheck.h"

#include <stdlib.h>
#include <string.h>

static const char *det(const struct forksafe_finding *f, const char *k)
{
    const char *v = forksafe__kv_get(f->details, f->ndetails, k);
    return v ? v : "?";
}

static int det_true(const struct forksafe_finding *f, const char *k)
{
    const char *v = forksafe__kv_get(f->details, f->ndetails, k);
    return v && strcmp(v, "1") == 0;
}

static long det_long(const struct forksafe_finding *f, const char *k)
{
    const char *v = forksafe__kv_get(f->details, f->ndetails, k);
    return v ? strtol(v, NULL, 10) : 0;
}

static const struct forksafe_frame *frame_of(const struct forksafe_finding *f,
                                             const char *role)
{
    for (size_t i = 0; i < f->nframes; i++)
        if (strcmp(f->frames[i].role, role) == 0)
            return &f->frames[i];
    return NULL;
}

static int is(const struct forksafe_finding *f, const char *kind)
{
    return strcmp(f->kind, kind) == 0;
}

static int same_site(const struct forksafe_frame *a, const char *obj,
                     uint64_t off)
{
    return a && a->offset == off && strcmp(a->object, obj) == 0;
}

static int same_frame(const struct forksafe_frame *a,
                      const struct forksafe_frame *b)
{
    return (!a && !b) || (a && b && same_site(a, b->object, b->offset));
}

/* Children of pid that ran on after a fork at site (NULL: any site);
   mt_only: only children of a multi-threaded fork. */
static long ran_on(const struct forksafe_run *run, long pid,
                   const struct forksafe_frame *site, int mt_only)
{
    long n = 0;
    for (size_t i = 0; i < run->nranon; i++) {
        const struct forksafe_ranon *a = &run->ranon[i];
        if (a->fork_pid != pid || (mt_only && !a->mt))
            continue;
        if (site && !same_site(site, a->object, a->offset))
            continue;
        n++;
    }
    return n;
}

/* ------------------------------------------------------------ parents */

static void parents(struct forksafe_run *run, char *drop)
{
    for (size_t i = 0; i < run->nfindings; i++) {
        struct forksafe_finding *f = &run->findings[i];
        if (is(f, "fork-with-threads")) {
            long n = ran_on(run, f->pid, frame_of(f, "fork-call"), 0);
            if (!n) {
                drop[i] = 1;
                continue;
            }
            forksafe__detail_set_int(f, "children", n);
            f->sev = det_true(f, "forksafe") ? FS_SEV_INFO : FS_SEV_WARNING;
        } else if (is(f, "lock-held-at-fork")) {
            long n = ran_on(run, f->pid, frame_of(f, "fork-call"), 0);
            if (!n) {
                drop[i] = 1;
                continue;
            }
            int blocked = 0;
            const char *lock = det(f, "lock");
            for (size_t k = 0; k < run->nfindings && !blocked; k++) {
                const struct forksafe_finding *g = &run->findings[k];
                blocked = is(g, "child-deadlock") && g->ppid == f->pid &&
                          strcmp(det(g, "lock"), lock) == 0;
            }
            int covered = forksafe__kv_get(f->details, f->ndetails,
                                           "covered_by") != NULL;
            forksafe__detail_set(f, "child_blocked", blocked ? "1" : "0",
                                 FS_V_BOOL);
            f->sev = !covered && blocked ? FS_SEV_WARNING : FS_SEV_INFO;
        } else if (is(f, "unregistered-shared-lock")) {
            if (!ran_on(run, f->pid, NULL, 1))
                drop[i] = 1;
            else
                f->sev = FS_SEV_INFO;
        }
    }
}

/* A child-deadlock names the holder as the parent saw it, and whether
   forksafe knew the lock at the fork. */
static void deadlocks(struct forksafe_run *run)
{
    for (size_t i = 0; i < run->nfindings; i++) {
        struct forksafe_finding *g = &run->findings[i];
        if (!is(g, "child-deadlock"))
            continue;
        for (size_t k = 0; k < run->nfindings; k++) {
            const struct forksafe_finding *h = &run->findings[k];
            if (!is(h, "lock-held-at-fork") || h->pid != g->ppid ||
                strcmp(det(h, "lock"), det(g, "lock")) != 0)
                continue;
            forksafe__detail_set(g, "holder_name", det(h, "holder_name"),
                                 FS_V_STR);
            if (det_true(h, "registered"))
                forksafe__detail_set(g, "registered", "1", FS_V_BOOL);
            break;
        }
    }
}

/* A raw handler whose prepare takes part in a lock-order violation. */
static void atfork(struct forksafe_run *run)
{
    for (size_t i = 0; i < run->nfindings; i++) {
        struct forksafe_finding *f = &run->findings[i];
        if (!is(f, "raw-atfork-handler"))
            continue;
        int part = 0;
        for (size_t k = 0; k < run->nfindings && !part; k++) {
            const struct forksafe_finding *g = &run->findings[k];
            if (!is(g, "lock-order-violation") || g->pid != f->pid ||
                !det_true(g, "in_prepare"))
                continue;
            const struct forksafe_frame *ht = frame_of(g, "held-taken");
            part = ht && strcmp(ht->object, det(f, "object")) == 0;
        }
        forksafe__detail_set(f, "order_violation", part ? "1" : "0",
                             FS_V_BOOL);
        f->sev = part ? FS_SEV_WARNING : FS_SEV_INFO;
    }
}

/* ------------------------------------------------------------ merging */

/* Kinds that every child (or every exec'd program) reports for itself,
   and what makes two of them the same finding. */
static int mergeable(const struct forksafe_finding *f)
{
    return is(f, "unsafe-call-in-child") || is(f, "child-deadlock") ||
           is(f, "library-without-adapter") ||
           is(f, "stdio-unflushed-at-fork") || is(f, "fd-leak-on-exec");
}

/* The target of a descriptor without the numbers that differ from one
   process to the next (pipe:[1234]). */
static void target_class(const char *t, char *out, size_t len)
{
    size_t o = 0;
    for (; *t && o + 1 < len; t++) {
        if (*t == '[') {
            while (*t && *t != ']')
                t++;
            if (!*t)
                break;
            continue;
        }
        out[o++] = *t;
    }
    out[o] = '\0';
}

static int same_merge(const struct forksafe_finding *a,
                      const struct forksafe_finding *b)
{
    if (strcmp(a->kind, b->kind) != 0 || strcmp(a->exe, b->exe) != 0)
        return 0;
    if (is(a, "unsafe-call-in-child"))
        return strcmp(det(a, "function"), det(b, "function")) == 0 &&
               same_frame(frame_of(a, "call"), frame_of(b, "call"));
    if (is(a, "child-deadlock"))
        return strcmp(det(a, "lock_kind"), det(b, "lock_kind")) == 0 &&
               same_frame(frame_of(a, "lock-call"), frame_of(b, "lock-call")) &&
               same_frame(frame_of(a, "lock-taken"),
                          frame_of(b, "lock-taken"));
    if (is(a, "library-without-adapter"))
        return strcmp(det(a, "adapter"), det(b, "adapter")) == 0 &&
               same_frame(frame_of(a, "fork-call"), frame_of(b, "fork-call"));
    if (is(a, "stdio-unflushed-at-fork"))
        return strcmp(det(a, "stream"), det(b, "stream")) == 0 &&
               same_frame(frame_of(a, "fork-call"), frame_of(b, "fork-call"));
    if (is(a, "fd-leak-on-exec")) {
        char ta[400], tb[400];
        target_class(det(a, "target"), ta, sizeof ta);
        target_class(det(b, "target"), tb, sizeof tb);
        return det_long(a, "fd") == det_long(b, "fd") && strcmp(ta, tb) == 0;
    }
    return 0;
}

static void merge(struct forksafe_run *run, char *drop)
{
    for (size_t i = 0; i < run->nfindings; i++) {
        struct forksafe_finding *f = &run->findings[i];
        if (drop[i] || !mergeable(f))
            continue;
        long n = 1;
        for (size_t k = i + 1; k < run->nfindings; k++) {
            struct forksafe_finding *g = &run->findings[k];
            if (drop[k] || !same_merge(f, g))
                continue;
            drop[k] = 1;
            if (g->pid != f->pid)
                n++;
        }
        forksafe__detail_set_int(f, is(f, "fd-leak-on-exec") ? "programs"
                                                             : "children",
                                 n);
    }
}

void forksafe__rules_apply(struct forksafe_run *run)
{
    char *drop = calloc(run->nfindings + 1, 1);
    if (!drop) {
        fputs("forksafe-audit: out of memory\n", stderr);
        exit(2);
    }
    deadlocks(run);
    parents(run, drop);
    atfork(run);
    merge(run, drop);
    size_t w = 0;
    for (size_t i = 0; i < run->nfindings; i++) {
        if (drop[i]) {
            forksafe__finding_free(&run->findings[i]);
            continue;
        }
        run->findings[w++] = run->findings[i];
    }
    run->nfindings = w;
    free(drop);
    for (size_t i = 0; i < run->nfindings; i++)
        forksafe__build_message(&run->findings[i]);
}

/* ------------------------------------------------------------ messages */

/* "1st", "2nd", ... for a decimal string; the input itself otherwise. */
static const char *ordinal(const char *n)
{
    static char buf[4][24];
    static int next;
    char *b = buf[next++ % 4];
    char *end;
    long v = strtol(n, &end, 10);
    if (*end || end == n)
        return n;
    const char *suf = (v % 100 >= 11 && v % 100 <= 13) ? "th"
                      : v % 10 == 1                    ? "st"
                      : v % 10 == 2                    ? "nd"
                      : v % 10 == 3                    ? "rd"
                                                       : "th";
    snprintf(b, sizeof buf[0], "%ld%s", v, suf);
    return b;
}

static const char *reason_text(const char *name)
{
    for (int c = FORKSAFE_EXEC_STATIC; c <= FORKSAFE_EXEC_LAST; c++)
        if (strcmp(name, forksafe__exec_reason_name(c)) == 0)
            return forksafe__exec_reason_text(c);
    return name;
}

/* " (N children)" when more than one child made it. */
static const char *children(const struct forksafe_finding *f, char *buf,
                            size_t len)
{
    long n = det_long(f, "children");
    if (n > 1)
        snprintf(buf, len, " (%ld children)", n);
    else
        buf[0] = '\0';
    return buf;
}

void forksafe__build_message(struct forksafe_finding *f)
{
    char buf[1536], ch[48];
    const char *k = f->kind;
    free(f->message);
    if (is(f, "fork-with-threads")) {
        long n = det_long(f, "threads");
        long c = det_long(f, "children");
        snprintf(buf, sizeof buf,
                 "%s() called while %ld other thread%s alive; the child "
                 "gets only the calling thread, and %ld child%s ran on "
                 "(did more than exec or _exit)%s",
                 det(f, "call"), n - 1, n - 1 == 1 ? " was" : "s were", c,
                 c == 1 ? "" : "ren",
                 det_true(f, "forksafe")
                     ? "; forksafe's fork handler ran, so what is "
                       "registered is covered"
                     : "; nothing made the fork safe (forksafe's fork "
                       "handler was not in the process)");
    } else if (is(f, "lock-held-at-fork")) {
        const char *cov = forksafe__kv_get(f->details, f->ndetails,
                                           "covered_by");
        int len = snprintf(buf, sizeof buf,
                           "%s %s was held by thread %s (%s) at fork", det(f,
                           "lock_kind"), det(f, "lock"), det(f, "holder_tid"),
                           det(f, "holder_name"));
        if (len < 0 || (size_t)len >= sizeof buf)
            len = 0;
        char *rest = buf + len;
        size_t left = sizeof buf - (size_t)len;
        if (cov && strcmp(cov, "registry") == 0 &&
            forksafe__kv_get(f->details, f->ndetails, "lock_name"))
            snprintf(rest, left,
                     "; it is registered (\"%s\", rank %s), so forksafe's "
                     "prepare waited for it and the child does not inherit "
                     "it held",
                     det(f, "lock_name"), det(f, "rank"));
        else if (cov && strcmp(cov, "registry") == 0)
            snprintf(rest, left,
                     "; it is registered, so forksafe's prepare waited for "
                     "it and the child does not inherit it held");
        else if (cov)
            snprintf(rest, left,
                     "; a fork handler's prepare (a registered callback set "
                     "or a pthread_atfork handler) took it before the fork, "
                     "so the child does not inherit it held");
        else if (det_true(f, "child_blocked"))
            snprintf(rest, left,
                     " and no prepare took it: it stays locked forever in "
                     "the child, and a child blocked on it (child-deadlock)");
        else
            snprintf(rest, left,
                     " and no prepare took it; no child that ran on touched "
                     "it (or each made it anew), so it did no harm here");
    } else if (is(f, "child-deadlock")) {
        if (strcmp(det(f, "lock_kind"), "condition") == 0)
            snprintf(buf, sizeof buf,
                     "the child waited without a timeout on condition %s, "
                     "which only another thread could signal; thread %s, "
                     "which used its mutex in the parent, does not exist in "
                     "the child; ended after %s ms with status %s%s",
                     det(f, "lock"), det(f, "holder_tid"), det(f, "grace_ms"),
                     det(f, "exit_status"), children(f, ch, sizeof ch));
        else
            snprintf(buf, sizeof buf,
                     "the child blocked on %s %s, held at fork by thread %s "
                     "which does not exist in the child; ended after %s ms "
                     "with status %s%s",
                     det(f, "lock_kind"), det(f, "lock"), det(f, "holder_tid"),
                     det(f, "grace_ms"), det(f, "exit_status"),
                     children(f, ch, sizeof ch));
    } else if (is(f, "unsafe-call-in-child")) {
        const struct forksafe_frame *o = frame_of(f, "other-thread-lock");
        char who[48] = "another thread";
        if (o && o->tid > 0)
            snprintf(who, sizeof who, "thread %ld", o->tid);
        snprintf(buf, sizeof buf,
                 "the child of a multi-threaded parent called %s() on %s %s, "
                 "which %s of the parent used too and no fork handler took "
                 "(not registered with forksafe): had it been held at the "
                 "fork, the child would have blocked forever%s",
                 det(f, "function"), det(f, "lock_kind"), det(f, "lock"), who,
                 children(f, ch, sizeof ch));
    } else if (is(f, "raw-atfork-handler")) {
        snprintf(buf, sizeof buf,
                 "%s registered fork handlers with pthread_atfork directly, "
                 "outside the forksafe registry: of the process's %s "
                 "registrations its prepare runs %s, its parent and child "
                 "handlers %s (registration order, not lock order)%s",
                 det(f, "object"), det(f, "registrations"),
                 ordinal(det(f, "prepare_position")),
                 ordinal(det(f, "child_position")),
                 det_true(f, "order_violation")
                     ? "; its prepare takes part in a lock-order violation"
                     : "");
    } else if (is(f, "lock-order-violation")) {
        snprintf(buf, sizeof buf,
                 "\"%s\" (rank %s) was taken while holding \"%s\" (rank %s): "
                 "against rank order, so forksafe's prepare can deadlock "
                 "with this code%s",
                 det(f, "taken_name"), det(f, "taken_rank"),
                 det(f, "held_name"), det(f, "held_rank"),
                 det_true(f, "in_prepare")
                     ? " (the two were taken in this order inside a fork's "
                       "prepare, by a fork handler)"
                     : "");
    } else if (is(f, "unregistered-shared-lock")) {
        const struct forksafe_frame *a = frame_of(f, "first-lock");
        const struct forksafe_frame *b = frame_of(f, "other-thread-lock");
        snprintf(buf, sizeof buf,
                 "%s %s was used by threads %ld and %ld and is not "
                 "registered with forksafe (a coverage gap: no child that "
                 "ran on blocked on it)",
                 det(f, "lock_kind"), det(f, "lock"), a ? a->tid : 0,
                 b ? b->tid : 0);
    } else if (is(f, "library-without-adapter")) {
        long live = det_long(f, "live");
        if (det_true(f, "no_safe_way"))
            snprintf(buf, sizeof buf,
                     "%s was in use (%ld live handle%s) when the process "
                     "forked, and the child ran on; it has no safe use in a "
                     "forked child: exec, or start children with "
                     "forksafe_spawn() or the fork server%s",
                     det(f, "library"), live, live == 1 ? "" : "s",
                     children(f, ch, sizeof ch));
        else
            snprintf(buf, sizeof buf,
                     "%s had %ld live handle%s (connection, context, loop or "
                     "share handle) when the process forked, and the child "
                     "ran on without the forksafe-%s adapter installed%s",
                     det(f, "library"), live, live == 1 ? "" : "s",
                     det(f, "adapter"), children(f, ch, sizeof ch));
    } else if (is(f, "stdio-unflushed-at-fork")) {
        snprintf(buf, sizeof buf,
                 "%s bytes were pending in %s at fork, and the child wrote "
                 "them a second time (it flushed the stream or called "
                 "exit)%s",
                 det(f, "bytes"), det(f, "stream"),
                 children(f, ch, sizeof ch));
    } else if (is(f, "fd-leak-on-exec")) {
        const char *sock = forksafe__kv_get(f->details, f->ndetails, "socket");
        long n = det_long(f, "programs");
        char more[64] = "";
        if (n > 1)
            snprintf(more, sizeof more, " (and %ld more programs)", n - 1);
        snprintf(buf, sizeof buf,
                 "descriptor %s (%s%s%s) has no close-on-exec flag and "
                 "survived into %s%s",
                 det(f, "fd"), det(f, "target"), sock ? ", socket " : "",
                 sock ? sock : "", f->exe, more);
    } else if (is(f, "not-audited")) {
        snprintf(buf, sizeof buf,
                 "%s was not audited: %s; its forks are not seen, nor is "
                 "anything it starts (started by %s)",
                 det(f, "program"), reason_text(det(f, "reason")),
                 det(f, "via"));
    } else if (is(f, "thread-census-failed")) {
        snprintf(buf, sizeof buf,
                 "could not count threads at %s fork%s (/proc/self/task: "
                 "%s); each was treated as a fork of a multi-threaded "
                 "process, so the child kept its deadlock guard",
                 det(f, "forks"), strcmp(det(f, "forks"), "1") ? "s" : "",
                 det(f, "error"));
    } else if (is(f, "records-lost")) {
        snprintf(buf, sizeof buf,
                 "%s record%s of this process could not be written (%s): "
                 "its findings are incomplete",
                 det(f, "records"), strcmp(det(f, "records"), "1") ? "s" : "",
                 det(f, "error"));
    } else {
        snprintf(buf, sizeof buf, "%s", k);
    }
    f->message = forksafe__xstrdup(buf);
}
