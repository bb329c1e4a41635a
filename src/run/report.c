/* SPDX-License-Identifier: MIT */
/*
 * report.c: what forksafe-run tells at the end. It reads the statistics
 * page (stats.h) and the records every process appended to all.rec
 * (syntax in src/preload/emit.c: "proc" lines naming each process,
 * "slowfork" and "blocker" records for forks that went ahead with a lock
 * held, "uncovered" for programs that could not load the library), then
 * writes the text report and the JSON document, "forksafe-run" in the
 * schema docs/forksafe.schema.json.
 */
#include "report.h"

#include "stats.h"
#include "../cli/xalloc.h"
#include "../preload/execcheck.h"
#include "../preload/preload.h"
#include "../preload/runpage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "forksafe.h"

/* ------------------------------------------------------------ records */

#define FIELDS_MAX 32

struct rec {
    char *type;
    int n;
    char *key[FIELDS_MAX];
    char *val[FIELDS_MAX];
};

/* Undo the interposer's escaping in place: \\ \t \n \r (and \| inside
   frames, which are split before this). */
static void unescape(char *s)
{
    char *w = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *w++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
}

/* Split one line (modified in place) into its type and fields; the type
   markers of keys (# and ?) are dropped. Frames stay escaped. */
static void parse(char *line, struct rec *r)
{
    r->n = 0;
    r->type = line;
    char *p = strchr(line, '\t');
    if (!p)
        return;
    *p++ = '\0';
    while (p && *p && r->n < FIELDS_MAX) {
        char *next = strchr(p, '\t');
        if (next)
            *next++ = '\0';
        char *eq = strchr(p, '=');
        if (eq) {
            *eq = '\0';
            size_t kl = strlen(p);
            if (kl && (p[kl - 1] == '#' || p[kl - 1] == '?'))
                p[kl - 1] = '\0';
            r->key[r->n] = p;
            r->val[r->n] = eq + 1;
            if (strcmp(p, "frame") != 0)
                unescape(eq + 1);
            r->n++;
        }
        p = next;
    }
}

static const char *get(const struct rec *r, const char *key)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->key[i], key) == 0)
            return r->val[i];
    return NULL;
}

static long get_long(const struct rec *r, const char *key)
{
    const char *v = get(r, key);
    return v ? strtol(v, NULL, 10) : 0;
}

/* frame=role|tid|name|object|0xoffset, '|' escaped as \| in the parts;
   symbolized as forksafe-audit does (src/cli/symbols.c). */
static void parse_frame(const char *v, struct forksafe_frame *f)
{
    char *s = forksafe__xstrdup(v), *part[5] = {0};
    int np = 0;
    char *w = s, *start = s;
    for (const char *p = v;; p++) {
        if (*p == '\\' && p[1] == '|') {
            *w++ = '|';
            p++;
            continue;
        }
        if (*p == '|' || *p == '\0') {
            *w++ = '\0';
            if (np < 5)
                part[np++] = start;
            start = w;
            if (*p == '\0')
                break;
            continue;
        }
        *w++ = *p;
    }
    memset(f, 0, sizeof *f);
    for (int i = 0; i < np; i++)
        unescape(part[i]);
    f->role = forksafe__xstrdup(np > 0 ? part[0] : "?");
    if (np < 5) {
        f->object = forksafe__xstrdup("?");
        free(s);
        return;
    }
    f->tid = strtol(part[1], NULL, 10);
    f->thread_name = part[2][0] ? forksafe__xstrdup(part[2]) : NULL;
    f->object = forksafe__xstrdup(part[3]);
    forksafe__symbols_resolve(f, strtoull(part[4], NULL, 16));
    free(s);
}

struct proc_name {
    long pid;
    char *exe;
};

static char *exe_of(const struct proc_name *p, size_t n, long pid)
{
    for (size_t i = n; i-- > 0;)
        if (p[i].pid == pid)
            return forksafe__xstrdup(p[i].exe);
    return forksafe__xstrdup("?");
}

static struct run_slow *slow_of(struct run_report *rep, long pid, long seq)
{
    for (size_t i = 0; i < rep->nslow; i++)
        if (rep->slow[i].pid == pid && rep->slow[i].seq == seq)
            return &rep->slow[i];
    return NULL;
}

static void add_uncovered(struct run_report *rep, long pid, long ppid,
                          const char *program, const char *reason,
                          const char *via)
{
    rep->uncovered = forksafe__xrealloc(
        rep->uncovered, (rep->nuncovered + 1) * sizeof *rep->uncovered);
    struct run_uncovered *u = &rep->uncovered[rep->nuncovered++];
    u->pid = pid;
    u->ppid = ppid;
    u->program = forksafe__xstrdup(program);
    u->reason = forksafe__xstrdup(reason);
    u->via = forksafe__xstrdup(via);
}

void forksafe__rr_add_uncovered(struct run_report *rep, long pid,
                                const char *program, int reason)
{
    add_uncovered(rep, pid, (long)getpid(), program,
                  forksafe__exec_reason_name(reason), "command-line");
}

static int load_records(struct run_report *rep, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, FORKSAFE_RECORDS_NAME);
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : errno;
    struct rec *recs = NULL;
    char **lines = NULL;
    size_t n = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[len - 1] = '\0';
        lines = forksafe__xrealloc(lines, (n + 1) * sizeof *lines);
        recs = forksafe__xrealloc(recs, (n + 1) * sizeof *recs);
        lines[n] = forksafe__xstrdup(line);
        parse(lines[n], &recs[n]);
        n++;
    }
    free(line);
    fclose(f);

    struct proc_name *procs = NULL;
    size_t nprocs = 0;
    for (size_t i = 0; i < n; i++) {
        struct rec *r = &recs[i];
        if (strcmp(r->type, "proc") == 0) {
            procs = forksafe__xrealloc(procs, (nprocs + 1) * sizeof *procs);
            procs[nprocs].pid = get_long(r, "pid");
            procs[nprocs].exe = (char *)(get(r, "exe") ? get(r, "exe") : "?");
            nprocs++;
        } else if (strcmp(r->type, "slowfork") == 0) {
            rep->slow = forksafe__xrealloc(rep->slow, (rep->nslow + 1) *
                                                          sizeof *rep->slow);
            struct run_slow *s = &rep->slow[rep->nslow++];
            memset(s, 0, sizeof *s);
            s->pid = get_long(r, "pid");
            s->ppid = get_long(r, "ppid");
            s->tid = get_long(r, "tid");
            s->seq = get_long(r, "seq");
            s->exe = exe_of(procs, nprocs, s->pid);
            s->call =
                forksafe__xstrdup(get(r, "call") ? get(r, "call") : "fork");
            s->reason = forksafe__xstrdup(get(r, "reason") ? get(r, "reason")
                                                           : "timeout");
            s->wait_us = get_long(r, "wait_us");
            s->timeout_ms = get_long(r, "timeout_ms");
            const char *fr = get(r, "frame");
            if (fr) {
                parse_frame(fr, &s->frame);
                s->has_frame = 1;
            }
        } else if (strcmp(r->type, "blocker") == 0) {
            struct run_slow *s =
                slow_of(rep, get_long(r, "pid"), get_long(r, "seq"));
            if (!s)
                continue;
            s->blockers = forksafe__xrealloc(
                s->blockers, (s->nblockers + 1) * sizeof *s->blockers);
            struct run_blocker_rec *b = &s->blockers[s->nblockers++];
            memset(b, 0, sizeof *b);
            b->tid = get_long(r, "tid");
            b->name = forksafe__xstrdup(get(r, "name") ? get(r, "name") : "?");
            b->state =
                forksafe__xstrdup(get(r, "state") ? get(r, "state") : "holds");
            b->lock = get(r, "lock") ? forksafe__xstrdup(get(r, "lock")) : NULL;
            b->lock_kind = get(r, "lock_kind")
                               ? forksafe__xstrdup(get(r, "lock_kind"))
                               : NULL;
            b->lock_holder = get_long(r, "lock_holder");
            for (int k = 0; k < r->n && b->nframes < 2; k++)
                if (strcmp(r->key[k], "frame") == 0)
                    parse_frame(r->val[k], &b->frames[b->nframes++]);
        } else if (strcmp(r->type, "uncovered") == 0) {
            long pid = get_long(r, "pid");
            /* An exec that failed started nothing. */
            int failed = 0;
            for (size_t k = i + 1; k < n && !failed; k++) {
                if (get_long(&recs[k], "pid") != pid)
                    continue;
                if (strcmp(recs[k].type, "exec-failed") == 0)
                    failed = 1;
                else if (strcmp(recs[k].type, "uncovered") == 0)
                    break;
            }
            if (!failed)
                add_uncovered(rep, pid, get_long(r, "ppid"), get(r, "program"),
                              get(r, "reason"), get(r, "via"));
        }
    }
    free(procs);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    free(recs);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int load_stats(struct run_report *rep, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, FORKSAFE_RUN_STATS_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    void *p = mmap(NULL, FORKSAFE_RUN_STATS_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return errno;
    const struct forksafe_run_stats *st = p;
    if (st->magic == FORKSAFE_RUN_STATS_MAGIC &&
        st->size == FORKSAFE_RUN_STATS_SIZE) {
        rep->have_stats = 1;
        rep->images = st->images;
        rep->forks = st->forks;
        rep->threaded = st->threaded;
        rep->waited = st->waited;
        rep->timed_out = st->timed_out;
        rep->stuck = st->stuck;
        rep->overruns = st->overruns;
        rep->wait_max_ns = st->wait_max_ns;
        rep->nwaits = st->nwaits;
        size_t k = st->nwaits < FORKSAFE_RUN_STATS_WAITS
                       ? (size_t)st->nwaits
                       : FORKSAFE_RUN_STATS_WAITS;
        rep->waits = forksafe__xrealloc(NULL, k * sizeof *rep->waits);
        memcpy(rep->waits, st->wait_ns, k * sizeof *rep->waits);
        qsort(rep->waits, k, sizeof *rep->waits, cmp_u64);
        rep->nsamples = k;
    }
    munmap(p, FORKSAFE_RUN_STATS_SIZE);
    return 0;
}

/* Records the library could not write, from the run page it shares with
   the audit (src/preload/runpage.h). */
static void load_runpage(struct run_report *rep, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, FORKSAFE_RUNPAGE_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    void *p = mmap(NULL, FORKSAFE_RUNPAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return;
    const struct forksafe_runpage *rp = p;
    if (rp->magic == FORKSAFE_RUNPAGE_MAGIC &&
        rp->size == FORKSAFE_RUNPAGE_SIZE) {
        uint32_t ne = rp->nevents < FORKSAFE_RUNPAGE_EVENTS
                          ? rp->nevents
                          : (uint32_t)FORKSAFE_RUNPAGE_EVENTS;
        for (uint32_t i = 0; i < ne; i++)
            if (rp->ev[i].type == FORKSAFE_RUN_LOST)
                rep->records_lost += rp->ev[i].count;
        rep->records_lost += rp->dropped;
    }
    munmap(p, FORKSAFE_RUNPAGE_SIZE);
}

int forksafe__rr_load(struct run_report *rep, const char *dir)
{
    int err = load_stats(rep, dir);
    load_runpage(rep, dir);
    int e2 = load_records(rep, dir);
    return err ? err : e2;
}

void forksafe__rr_free(struct run_report *rep)
{
    for (size_t i = 0; i < rep->nslow; i++) {
        struct run_slow *s = &rep->slow[i];
        free(s->exe);
        free(s->call);
        free(s->reason);
        if (s->has_frame)
            forksafe__frame_free(&s->frame);
        for (size_t k = 0; k < s->nblockers; k++) {
            struct run_blocker_rec *b = &s->blockers[k];
            free(b->name);
            free(b->state);
            free(b->lock);
            free(b->lock_kind);
            for (size_t f = 0; f < b->nframes; f++)
                forksafe__frame_free(&b->frames[f]);
        }
        free(s->blockers);
    }
    free(rep->slow);
    for (size_t i = 0; i < rep->nuncovered; i++) {
        free(rep->uncovered[i].program);
        free(rep->uncovered[i].reason);
        free(rep->uncovered[i].via);
    }
    free(rep->uncovered);
    free(rep->waits);
}

int forksafe__rr_incomplete(const struct run_report *rep)
{
    return rep->nuncovered || rep->records_lost || rep->interrupted_by ||
           !rep->have_stats;
}

/* ------------------------------------------------------------ figures */

/* The p-th percentile (0..100) of the samples, nearest rank. */
static uint64_t percentile(const struct run_report *rep, int p)
{
    if (!rep->nsamples)
        return 0;
    size_t k = (rep->nsamples * (size_t)p + 99) / 100;
    if (k == 0)
        k = 1;
    return rep->waits[k - 1];
}

static uint64_t median(const struct run_report *rep)
{
    size_t n = rep->nsamples;
    if (!n)
        return 0;
    return n % 2 ? rep->waits[n / 2]
                 : (rep->waits[n / 2 - 1] + rep->waits[n / 2]) / 2;
}

static void duration(char *out, size_t len, uint64_t ns)
{
    if (ns < 10000)
        snprintf(out, len, "%.1f us", (double)ns / 1e3);
    else if (ns < 10000000)
        snprintf(out, len, "%.0f us", (double)ns / 1e3);
    else if (ns < 10000000000ull)
        snprintf(out, len, "%.0f ms", (double)ns / 1e6);
    else
        snprintf(out, len, "%.1f s", (double)ns / 1e9);
}

/* ------------------------------------------------------------ text */

/* A string for a terminal: control characters and bytes that are not
   UTF-8 are shown as \xNN, so that a name cannot rewrite the screen. */
static void put_text(FILE *out, const char *s)
{
    int utf8 = forksafe__utf8_valid(s ? s : "");
    for (const unsigned char *p = (const unsigned char *)(s ? s : "?"); *p;
         p++) {
        if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && !utf8))
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
}

static void frame_text(FILE *out, const struct forksafe_frame *f)
{
    if (f->function) {
        put_text(out, f->function);
        fprintf(out, "+0x%llx", (unsigned long long)f->func_delta);
    } else {
        fputc('?', out);
    }
    if (strcmp(f->object, "?") != 0) {
        fputs(" (", out);
        put_text(out, f->object);
        fprintf(out, "+0x%llx)", (unsigned long long)f->offset);
    }
}

static const struct forksafe_frame *frame_role(const struct run_blocker_rec *b,
                                               const char *role)
{
    for (size_t i = 0; i < b->nframes; i++)
        if (strcmp(b->frames[i].role, role) == 0)
            return &b->frames[i];
    return NULL;
}

static void blocker_text(FILE *out, const struct run_blocker_rec *b)
{
    fprintf(out, "    thread %ld \"", b->tid);
    put_text(out, b->name);
    fputs("\" ", out);
    const struct forksafe_frame *taken = frame_role(b, "lock-taken");
    const struct forksafe_frame *call = frame_role(b, "lock-call");
    const struct forksafe_frame *start = frame_role(b, "thread-start");
    const char *kind = b->lock_kind ? b->lock_kind : "lock";
    if (strcmp(b->state, "taking") == 0) {
        fprintf(out, "was taking %s %s", kind, b->lock ? b->lock : "?");
        if (b->lock_holder)
            fprintf(out, " (held by thread %ld)", b->lock_holder);
        if (call) {
            fputs(" at ", out);
            frame_text(out, call);
        }
    } else if (strcmp(b->state, "holds-untracked") == 0) {
        fputs("held more locks than forksafe-run records per thread", out);
    } else {
        fprintf(out, "held %s %s", kind, b->lock ? b->lock : "?");
        if (taken) {
            fputs(", taken at ", out);
            frame_text(out, taken);
        }
        if (strcmp(b->state, "waits-to-fork") == 0)
            fputs(", and was waiting to fork itself", out);
        else if (strcmp(b->state, "waits-for-forker") == 0)
            fputs(", and was waiting for a lock the forking thread holds", out);
    }
    fputc('\n', out);
    if (start) {
        fputs("      thread started at ", out);
        frame_text(out, start);
        fputc('\n', out);
    }
}

static void slow_text(FILE *out, const struct run_slow *s)
{
    fprintf(out, "\n%s() in pid %ld (", s->call, s->pid);
    put_text(out, s->exe);
    fprintf(out, "), thread %ld", s->tid);
    if (s->has_frame) {
        if (s->frame.thread_name) {
            fputs(" \"", out);
            put_text(out, s->frame.thread_name);
            fputc('"', out);
        }
        fputs(", called at ", out);
        frame_text(out, &s->frame);
    }
    fputc('\n', out);
    if (strcmp(s->reason, "stuck") == 0)
        fprintf(out,
                "  went ahead after %ld ms without waiting out the timeout: "
                "every thread holding a lock was waiting for the forking "
                "thread\n",
                s->wait_us / 1000);
    else
        fprintf(out,
                "  went ahead after the %ld ms timeout with a lock held by "
                "another thread; the child may block on it forever\n",
                s->timeout_ms);
    if (strcmp(s->reason, "stuck") != 0 &&
        s->wait_us / 1000 > s->timeout_ms + 100)
        fprintf(out,
                "  fork() returned %ld ms after it was called: fork handlers "
                "(libforksafe's, for a lock registered with it) waited "
                "again after the timeout\n",
                s->wait_us / 1000);
    for (size_t k = 0; k < s->nblockers; k++)
        blocker_text(out, &s->blockers[k]);
}

int forksafe__rr_text(FILE *out, const struct run_report *rep)
{
    fputs("forksafe-run:", out);
    for (char **a = rep->argv; a && *a; a++) {
        fputc(' ', out);
        put_text(out, *a);
    }
    fputc('\n', out);
    if (!rep->have_stats)
        fputs("forksafe-run: no statistics were written (the program could "
              "not load libforksafe-run.so?)\n",
              out);
    fprintf(out,
            "forksafe-run: %llu fork%s in %llu process%s; %llu with other "
            "threads alive, %llu of which waited for a lock holder\n",
            (unsigned long long)rep->forks, rep->forks == 1 ? "" : "s",
            (unsigned long long)rep->images, rep->images == 1 ? "" : "es",
            (unsigned long long)rep->threaded, (unsigned long long)rep->waited);
    if (rep->nsamples) {
        char med[32], p90[32], p99[32], max[32];
        duration(med, sizeof med, median(rep));
        duration(p90, sizeof p90, percentile(rep, 90));
        duration(p99, sizeof p99, percentile(rep, 99));
        duration(max, sizeof max, rep->wait_max_ns);
        fprintf(out,
                "forksafe-run: wait at a fork with threads: median %s, 90th "
                "percentile %s, 99th %s, maximum %s%s\n",
                med, p90, p99, max,
                rep->nsamples < rep->nwaits ? " (percentiles of the first "
                                              "forks only)"
                                            : "");
    }
    uint64_t slow = rep->timed_out + rep->stuck;
    if (!slow)
        fprintf(out,
                "forksafe-run: every fork went ahead with no other "
                "thread holding a pthread lock (timeout %u ms)\n",
                rep->timeout_ms);
    else
        fprintf(out,
                "forksafe-run: %llu fork%s went ahead with a lock held by "
                "another thread: %llu after the %u ms timeout, %llu at once "
                "because the holders waited for the forking thread\n",
                (unsigned long long)slow, slow == 1 ? "" : "s",
                (unsigned long long)rep->timed_out, rep->timeout_ms,
                (unsigned long long)rep->stuck);
    for (size_t i = 0; i < rep->nslow; i++)
        slow_text(out, &rep->slow[i]);
    if (rep->nslow < slow)
        fprintf(out, "\n(%llu more not described: records were lost)\n",
                (unsigned long long)(slow - rep->nslow));
    if (rep->overruns)
        fprintf(out,
                "forksafe-run: %llu time%s a thread waited at the gate for "
                "twice the timeout (a fork handler waiting for other threads) "
                "and went on during a fork\n",
                (unsigned long long)rep->overruns,
                rep->overruns == 1 ? "" : "s");
    for (size_t i = 0; i < rep->nuncovered; i++) {
        const struct run_uncovered *u = &rep->uncovered[i];
        int code = FORKSAFE_EXEC_STATIC;
        for (int c = FORKSAFE_EXEC_STATIC; c <= FORKSAFE_EXEC_LAST; c++)
            if (strcmp(u->reason, forksafe__exec_reason_name(c)) == 0)
                code = c;
        fputs("forksafe-run: not covered: ", out);
        put_text(out, u->program);
        fprintf(out, " (pid %ld): %s; its forks are not made safe (started by ",
                u->pid, forksafe__exec_reason_text(code));
        put_text(out, u->via);
        fputs(")\n", out);
    }
    if (rep->records_lost)
        fprintf(out,
                "forksafe-run: %ld record%s could not be written: the report "
                "is incomplete\n",
                rep->records_lost, rep->records_lost == 1 ? "" : "s");
    if (rep->signal)
        fprintf(out, "forksafe-run: program killed by signal %d\n",
                rep->signal);
    else
        fprintf(out, "forksafe-run: program exited with status %d\n",
                rep->status);
    return ferror(out) ? EIO : 0;
}

/* ------------------------------------------------------------ json */

static void out_file(void *ctx, const char *s, size_t n)
{
    fwrite(s, 1, n, ctx);
}

static void frame_json(struct forksafe__json *j, const struct forksafe_frame *f)
{
    forksafe__json_begin_object(j);
    forksafe__json_member_str(j, "role", f->role);
    forksafe__json_key(j, "tid");
    if (f->tid)
        forksafe__json_int(j, f->tid);
    else
        forksafe__json_null(j);
    forksafe__json_member_str(j, "thread_name", f->thread_name);
    forksafe__json_member_str(j, "function", f->function);
    forksafe__json_key(j, "function_offset");
    if (f->function)
        forksafe__json_address(j, (uintptr_t)f->func_delta);
    else
        forksafe__json_null(j);
    forksafe__json_member_str(j, "object", f->object);
    forksafe__json_key(j, "offset");
    forksafe__json_address(j, (uintptr_t)f->offset);
    forksafe__json_end_object(j);
}

static void wait_json(struct forksafe__json *j, const char *key, uint64_t ns)
{
    forksafe__json_member_int(j, key, (long long)ns);
}

int forksafe__rr_json(FILE *out, const struct run_report *rep)
{
    struct forksafe__json j;
    forksafe__json_init(&j, out_file, out, 2);
    forksafe__json_begin_object(&j);
    forksafe__json_header(&j, "forksafe-run");
    forksafe__json_key(&j, "command");
    forksafe__json_begin_array(&j);
    for (char **a = rep->argv; a && *a; a++)
        forksafe__json_string(&j, *a);
    forksafe__json_end_array(&j);
    forksafe__json_member_int(&j, "exit_status", rep->status & 255);
    forksafe__json_key(&j, "signal");
    if (rep->signal)
        forksafe__json_int(&j, rep->signal);
    else
        forksafe__json_null(&j);
    forksafe__json_key(&j, "interrupted_by");
    if (rep->interrupted_by)
        forksafe__json_int(&j, rep->interrupted_by);
    else
        forksafe__json_null(&j);
    forksafe__json_member_bool(&j, "complete", !forksafe__rr_incomplete(rep));
    forksafe__json_member_int(&j, "timeout_ms", rep->timeout_ms);
    forksafe__json_member_int(&j, "processes", (long long)rep->images);

    forksafe__json_key(&j, "forks");
    forksafe__json_begin_object(&j);
    forksafe__json_member_int(&j, "total", (long long)rep->forks);
    forksafe__json_member_int(&j, "threaded", (long long)rep->threaded);
    forksafe__json_member_int(&j, "waited", (long long)rep->waited);
    forksafe__json_member_int(&j, "timed_out", (long long)rep->timed_out);
    forksafe__json_member_int(&j, "stuck", (long long)rep->stuck);
    forksafe__json_member_int(&j, "gate_overruns", (long long)rep->overruns);
    forksafe__json_end_object(&j);

    forksafe__json_key(&j, "wait_ns");
    if (!rep->nsamples) {
        forksafe__json_null(&j);
    } else {
        forksafe__json_begin_object(&j);
        forksafe__json_member_int(&j, "forks", (long long)rep->nwaits);
        forksafe__json_member_int(&j, "samples", (long long)rep->nsamples);
        wait_json(&j, "median", median(rep));
        wait_json(&j, "p90", percentile(rep, 90));
        wait_json(&j, "p99", percentile(rep, 99));
        wait_json(&j, "max", rep->wait_max_ns);
        forksafe__json_end_object(&j);
    }

    forksafe__json_key(&j, "slow_forks");
    forksafe__json_begin_array(&j);
    for (size_t i = 0; i < rep->nslow; i++) {
        const struct run_slow *s = &rep->slow[i];
        forksafe__json_begin_object(&j);
        forksafe__json_member_int(&j, "pid", s->pid);
        forksafe__json_member_int(&j, "ppid", s->ppid);
        forksafe__json_member_str(&j, "exe", s->exe);
        forksafe__json_member_int(&j, "tid", s->tid);
        forksafe__json_member_str(&j, "call", s->call);
        forksafe__json_member_str(&j, "reason", s->reason);
        forksafe__json_member_int(&j, "wait_us", s->wait_us);
        forksafe__json_key(&j, "frames");
        forksafe__json_begin_array(&j);
        if (s->has_frame)
            frame_json(&j, &s->frame);
        forksafe__json_end_array(&j);
        forksafe__json_key(&j, "blockers");
        forksafe__json_begin_array(&j);
        for (size_t k = 0; k < s->nblockers; k++) {
            const struct run_blocker_rec *b = &s->blockers[k];
            forksafe__json_begin_object(&j);
            forksafe__json_member_int(&j, "tid", b->tid);
            forksafe__json_member_str(&j, "thread_name", b->name);
            forksafe__json_member_str(&j, "state", b->state);
            forksafe__json_member_str(&j, "lock", b->lock);
            forksafe__json_member_str(&j, "lock_kind", b->lock_kind);
            forksafe__json_key(&j, "lock_holder");
            if (b->lock_holder > 0)
                forksafe__json_int(&j, b->lock_holder);
            else
                forksafe__json_null(&j);
            forksafe__json_key(&j, "frames");
            forksafe__json_begin_array(&j);
            for (size_t f = 0; f < b->nframes; f++)
                frame_json(&j, &b->frames[f]);
            forksafe__json_end_array(&j);
            forksafe__json_end_object(&j);
        }
        forksafe__json_end_array(&j);
        forksafe__json_end_object(&j);
    }
    forksafe__json_end_array(&j);

    forksafe__json_key(&j, "not_covered");
    forksafe__json_begin_array(&j);
    for (size_t i = 0; i < rep->nuncovered; i++) {
        const struct run_uncovered *u = &rep->uncovered[i];
        forksafe__json_begin_object(&j);
        forksafe__json_member_int(&j, "pid", u->pid);
        forksafe__json_member_int(&j, "ppid", u->ppid);
        forksafe__json_member_str(&j, "program", u->program);
        forksafe__json_member_str(&j, "reason", u->reason);
        forksafe__json_member_str(&j, "via", u->via);
        forksafe__json_end_object(&j);
    }
    forksafe__json_end_array(&j);
    forksafe__json_member_int(&j, "records_lost", rep->records_lost);
    forksafe__json_end_object(&j);
    fputc('\n', out);
    return ferror(out) ? EIO : 0;
}
