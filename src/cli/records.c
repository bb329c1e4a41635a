/* SPDX-License-Identifier: MIT */
/*
 * records.c: read what every audited process wrote (all.rec, one record
 * per line, each naming its process, syntax in src/preload/emit.c; and
 * the run page, src/preload/runpage.h) into raw findings, processes and
 * the children that ran on: frames are symbolized, each finding is
 * labelled with the program its process ran when it wrote it (a forked
 * child that later execs another program keeps the first one for what it
 * did before), descriptors the program inherited from outside are removed
 * from fd-leak-on-exec, programs that could not load the interposer
 * become not-audited findings, and what the run page counted (lost
 * records, forks that could not count threads) becomes findings too.
 * rules.c then joins parents and children.
 */
#include "cli.h"

#include "../preload/execcheck.h"
#include "../preload/runpage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct rec {
    char *type;
    struct forksafe_kv *kv;
    size_t n;
    size_t order;
};

const char *forksafe__kv_get(const struct forksafe_kv *kv, size_t n,
                             const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].key, key) == 0)
            return kv[i].val;
    return NULL;
}

int forksafe__sev_parse(const char *s)
{
    if (!s)
        return -1;
    if (strcmp(s, "info") == 0)
        return FS_SEV_INFO;
    if (strcmp(s, "warning") == 0)
        return FS_SEV_WARNING;
    if (strcmp(s, "error") == 0)
        return FS_SEV_ERROR;
    return -1;
}

const char *forksafe__sev_name(enum forksafe_sev s)
{
    return s == FS_SEV_ERROR     ? "error"
           : s == FS_SEV_WARNING ? "warning"
                                 : "info";
}

int forksafe__run_incomplete(const struct forksafe_run *run)
{
    return run->not_audited || run->records_lost || run->census_failed ||
           run->interrupted_by;
}

/* Undo the interposer's escaping in place: \\ \t \n \r \| */
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

#define xstrdup  forksafe__xstrdup
#define xrealloc forksafe__xrealloc

static void kv_add(struct forksafe_kv **kv, size_t *n, const char *k,
                   const char *v, int type)
{
    *kv = xrealloc(*kv, (*n + 1) * sizeof **kv);
    (*kv)[*n].key = xstrdup(k);
    (*kv)[*n].val = xstrdup(v);
    (*kv)[*n].type = type;
    (*n)++;
}

/* TYPE\tkey=value\tkey#=123\tkey?=1...; frame values stay escaped (their
   parts are split on unescaped '|' later). */
static int parse_line(char *line, struct rec *r)
{
    memset(r, 0, sizeof *r);
    char *save = NULL;
    char *tok = strtok_r(line, "\t", &save);
    if (!tok)
        return -1;
    r->type = xstrdup(tok);
    while ((tok = strtok_r(NULL, "\t", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok)
            continue;
        *eq = '\0';
        int type = FS_V_STR;
        if (eq[-1] == '#' || eq[-1] == '?') {
            type = eq[-1] == '#' ? FS_V_INT : FS_V_BOOL;
            eq[-1] = '\0';
        }
        if (strcmp(tok, "frame") != 0)
            unescape(eq + 1);
        kv_add(&r->kv, &r->n, tok, eq + 1, type);
    }
    return 0;
}

static void kv_free(struct forksafe_kv *kv, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kv[i].key);
        free(kv[i].val);
    }
    free(kv);
}

static struct forksafe_kv *kv_dup(const struct forksafe_kv *kv, size_t n)
{
    struct forksafe_kv *c = xrealloc(NULL, (n ? n : 1) * sizeof *c);
    for (size_t i = 0; i < n; i++) {
        c[i].key = xstrdup(kv[i].key);
        c[i].val = xstrdup(kv[i].val);
        c[i].type = kv[i].type;
    }
    return c;
}

void forksafe__finding_free(struct forksafe_finding *f)
{
    free(f->kind);
    free(f->exe);
    free(f->message);
    free(f->fingerprint);
    for (size_t i = 0; i < f->nframes; i++)
        forksafe__frame_free(&f->frames[i]);
    free(f->frames);
    kv_free(f->details, f->ndetails);
}

#define finding_free forksafe__finding_free

void forksafe__run_free(struct forksafe_run *run)
{
    for (size_t i = 0; i < run->nfindings; i++)
        finding_free(&run->findings[i]);
    free(run->findings);
    for (size_t i = 0; i < run->nsuppressed; i++)
        finding_free(&run->suppressed[i]);
    free(run->suppressed);
    for (size_t i = 0; i < run->nranon; i++)
        free(run->ranon[i].object);
    free(run->ranon);
    for (size_t i = 0; i < run->nsupps; i++) {
        free(run->supps[i].file);
        free(run->supps[i].kind);
        for (size_t k = 0; k < run->supps[i].nconds; k++) {
            free(run->supps[i].conds[k].key);
            free(run->supps[i].conds[k].glob);
        }
        free(run->supps[i].conds);
    }
    free(run->supps);
    run->suppressed = NULL;
    run->ranon = NULL;
    run->supps = NULL;
    run->nsuppressed = run->nranon = run->nsupps = 0;
    for (size_t i = 0; i < run->nprocs; i++) {
        free(run->procs[i].exe);
        free(run->procs[i].start);
        kv_free(run->procs[i].summary, run->procs[i].nsummary);
    }
    free(run->procs);
    run->findings = NULL;
    run->procs = NULL;
    run->nfindings = run->nprocs = 0;
}

static void read_file(const char *path, struct rec **recs, size_t *nrecs)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0, order = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n')
            continue; /* a record cut short by a crash: ignore it */
        line[len - 1] = '\0';
        struct rec r;
        if (parse_line(line, &r) != 0)
            continue;
        r.order = order++;
        *recs = xrealloc(*recs, (*nrecs + 1) * sizeof **recs);
        (*recs)[(*nrecs)++] = r;
    }
    free(line);
    fclose(f);
}

static long get_long(const struct rec *r, const char *key)
{
    const char *v = forksafe__kv_get(r->kv, r->n, key);
    return v ? strtol(v, NULL, 0) : 0;
}

static const char *get_str(const struct rec *r, const char *key)
{
    return forksafe__kv_get(r->kv, r->n, key);
}

/* frame=role|tid|name|object|0xoffset, each part escaped. */
static void parse_frame(const char *v, struct forksafe_frame *f)
{
    memset(f, 0, sizeof *f);
    char *s = xstrdup(v);
    char *part[5] = {s, NULL, NULL, NULL, NULL};
    int np = 1;
    for (char *p = s; *p && np < 5; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (*p == '|') {
            *p = '\0';
            part[np++] = p + 1;
        }
    }
    for (int i = 0; i < np; i++)
        unescape(part[i]);
    f->role = xstrdup(part[0]);
    if (np < 5) {
        f->object = xstrdup("?");
        free(s);
        return;
    }
    f->tid = strtol(part[1], NULL, 10);
    f->thread_name = part[2][0] ? xstrdup(part[2]) : NULL;
    f->object = xstrdup(part[3]);
    uint64_t off = strtoull(part[4], NULL, 16);
    forksafe__symbols_resolve(f, off);
    free(s);
}

static int is_meta(const char *key)
{
    static const char *const meta[] = {"kind", "severity", "pid", "ppid",
                                       "tid",  "frame",    NULL};
    for (int i = 0; meta[i]; i++)
        if (strcmp(key, meta[i]) == 0)
            return 1;
    return 0;
}

static void add_detail(struct forksafe_finding *f, const char *k, const char *v,
                       int type)
{
    kv_add(&f->details, &f->ndetails, k, v, type);
}

void forksafe__detail_set(struct forksafe_finding *f, const char *key,
                          const char *val, int type)
{
    for (size_t i = 0; i < f->ndetails; i++)
        if (strcmp(f->details[i].key, key) == 0) {
            free(f->details[i].val);
            f->details[i].val = xstrdup(val);
            f->details[i].type = type;
            return;
        }
    add_detail(f, key, val, type);
}

void forksafe__detail_set_int(struct forksafe_finding *f, const char *key,
                              long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    forksafe__detail_set(f, key, buf, FS_V_INT);
}

void forksafe__detail_del(struct forksafe_finding *f, const char *key)
{
    for (size_t i = 0; i < f->ndetails; i++)
        if (strcmp(f->details[i].key, key) == 0) {
            free(f->details[i].key);
            free(f->details[i].val);
            memmove(&f->details[i], &f->details[i + 1],
                    (f->ndetails - i - 1) * sizeof f->details[0]);
            f->ndetails--;
            return;
        }
}

static void add_detail_int(struct forksafe_finding *f, const char *k, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    add_detail(f, k, buf, FS_V_INT);
}

static int same_finding(const struct forksafe_finding *a,
                        const struct forksafe_finding *b)
{
    if (strcmp(a->kind, b->kind) != 0 || a->pid != b->pid ||
        a->nframes != b->nframes || a->ndetails != b->ndetails)
        return 0;
    for (size_t i = 0; i < a->nframes; i++)
        if (a->frames[i].offset != b->frames[i].offset ||
            a->frames[i].tid != b->frames[i].tid ||
            strcmp(a->frames[i].object, b->frames[i].object) != 0)
            return 0;
    for (size_t i = 0; i < a->ndetails; i++)
        if (strcmp(a->details[i].key, "tid") != 0 &&
            strcmp(a->details[i].val, b->details[i].val) != 0)
            return 0;
    return 1;
}

static const char *proc_exe(const struct forksafe_run *run, long pid)
{
    const char *exe = NULL;
    /* The last "proc" record of a pid names its current image. */
    for (size_t i = 0; i < run->nprocs; i++)
        if (run->procs[i].pid == pid)
            exe = run->procs[i].exe;
    return exe ? exe : "?";
}

static long proc_ppid(const struct forksafe_run *run, long pid)
{
    for (size_t i = 0; i < run->nprocs; i++)
        if (run->procs[i].pid == pid)
            return run->procs[i].ppid;
    return 0;
}

/* lockinfo records: (pid, lock) -> name and rank, for registered locks. */
static const struct rec *find_lockinfo(const struct rec *recs, size_t n,
                                       long pid, const char *lock)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(recs[i].type, "lockinfo") != 0 ||
            get_long(&recs[i], "pid") != pid)
            continue;
        const char *l = get_str(&recs[i], "lock");
        if (l && strcmp(l, lock) == 0)
            return &recs[i];
    }
    return NULL;
}

/* A descriptor the audited program inherited from outside: the same
   number, still the same file. */
static int fd_ignored(const struct rec *r, const struct forksafe_fdid *ign,
                      size_t nign)
{
    long fd = get_long(r, "fd");
    unsigned long dev = (unsigned long)get_long(r, "dev");
    unsigned long ino = (unsigned long)get_long(r, "ino");
    for (size_t i = 0; i < nign; i++)
        if (ign[i].fd == fd && ign[i].dev == dev && ign[i].ino == ino)
            return 1;
    return 0;
}

static int cmp_finding(const void *a, const void *b)
{
    const struct forksafe_finding *x = a, *y = b;
    if (x->pid != y->pid)
        return x->pid < y->pid ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Add f to the run (taking it over), unless it is a duplicate; 1 if
   added. Messages are written once the rules have run. */
static int add_finding(struct forksafe_run *run, struct forksafe_finding *f)
{
    for (size_t k = 0; k < run->nfindings; k++)
        if (same_finding(&run->findings[k], f)) {
            finding_free(f);
            return 0;
        }
    run->findings =
        xrealloc(run->findings, (run->nfindings + 1) * sizeof *run->findings);
    run->findings[run->nfindings++] = *f;
    return 1;
}

/* Where each raw handler runs among all the handlers of its process:
   glibc runs prepare handlers last-registered first, and parent and child
   handlers in registration order. Registrations are numbered per process
   by the interposer ("seq"); libforksafe's own ones are "atfork" records. */
static void atfork_order(struct forksafe_run *run, const struct rec *recs,
                         size_t nrecs)
{
    for (size_t i = 0; i < run->nfindings; i++) {
        struct forksafe_finding *f = &run->findings[i];
        if (strcmp(f->kind, "raw-atfork-handler") != 0)
            continue;
        long total = 0;
        for (size_t k = 0; k < nrecs; k++) {
            const char *kind = get_str(&recs[k], "kind");
            if (get_long(&recs[k], "pid") == f->pid &&
                (strcmp(recs[k].type, "atfork") == 0 ||
                 (kind && strcmp(kind, "raw-atfork-handler") == 0)))
                total++;
        }
        const char *sq = forksafe__kv_get(f->details, f->ndetails, "seq");
        long seq = sq ? strtol(sq, NULL, 10) : 0;
        if (seq < 1 || seq > total)
            continue;
        add_detail_int(f, "registrations", total);
        add_detail_int(f, "prepare_position", total - seq + 1);
        add_detail_int(f, "child_position", seq);
    }
}

static void finding_from_record(struct forksafe_run *run, const struct rec *r,
                                const struct rec *recs, size_t nrecs,
                                const char *exe)
{
    const char *kind = get_str(r, "kind");
    if (!kind)
        return;
    struct forksafe_finding f;
    memset(&f, 0, sizeof f);
    f.kind = xstrdup(kind);
    int sev = forksafe__sev_parse(get_str(r, "severity"));
    f.sev = sev < 0 ? FS_SEV_WARNING : (enum forksafe_sev)sev;
    f.pid = get_long(r, "pid");
    f.ppid = get_long(r, "ppid");
    f.tid = get_long(r, "tid");
    f.order = r->order;
    f.exe = xstrdup(exe ? exe : proc_exe(run, f.pid));
    for (size_t k = 0; k < r->n; k++) {
        if (strcmp(r->kv[k].key, "frame") == 0) {
            f.frames = xrealloc(f.frames, (f.nframes + 1) * sizeof *f.frames);
            parse_frame(r->kv[k].val, &f.frames[f.nframes++]);
        } else if (!is_meta(r->kv[k].key)) {
            add_detail(&f, r->kv[k].key, r->kv[k].val, r->kv[k].type);
        }
    }
    /* A child that blocked on a lock: whether forksafe knew the lock (the
       parent asked the registry at the fork for the locks it reported as
       held; rules.c copies that; the registration facts written at exit
       are the fallback). */
    const char *lock = get_str(r, "lock");
    if (lock && strcmp(kind, "child-deadlock") == 0) {
        const struct rec *li = find_lockinfo(recs, nrecs, f.ppid, lock);
        if (!li)
            li = find_lockinfo(recs, nrecs, f.pid, lock);
        add_detail(&f, "registered", li ? "1" : "0", FS_V_BOOL);
        if (li) {
            const char *nm = get_str(li, "name");
            add_detail(&f, "lock_name", nm ? nm : "?", FS_V_STR);
            add_detail_int(&f, "rank", get_long(li, "rank"));
        }
    }
    add_finding(run, &f);
}

static void ranon_from_record(struct forksafe_run *run, const struct rec *r)
{
    struct forksafe_ranon a = {0};
    a.pid = get_long(r, "pid");
    a.fork_pid = get_long(r, "fork_pid");
    a.mt = get_long(r, "mt") != 0;
    a.forksafe = get_long(r, "forksafe") != 0;
    const char *fr = get_str(r, "frame");
    struct forksafe_frame f;
    parse_frame(fr ? fr : "fork-call", &f);
    a.object = f.object;
    a.offset = f.offset;
    f.object = NULL;
    forksafe__frame_free(&f);
    run->ranon = xrealloc(run->ranon, (run->nranon + 1) * sizeof *run->ranon);
    run->ranon[run->nranon++] = a;
}

static void add_unaudited(struct forksafe_run *run, long pid, long ppid,
                          const char *program, int reason, const char *via)
{
    struct forksafe_finding f;
    memset(&f, 0, sizeof f);
    f.kind = xstrdup("not-audited");
    f.sev = FS_SEV_ERROR;
    f.pid = pid;
    f.ppid = ppid;
    f.exe = xstrdup(program);
    f.order = (size_t)-1;
    add_detail(&f, "reason", forksafe__exec_reason_name(reason), FS_V_STR);
    add_detail(&f, "program", program, FS_V_STR);
    add_detail(&f, "via", via, FS_V_STR);
    run->not_audited += add_finding(run, &f);
}

void forksafe__records_add_unaudited(struct forksafe_run *run, long pid,
                                     const char *program, int reason,
                                     const char *via)
{
    size_t before = run->nfindings;
    add_unaudited(run, pid, proc_ppid(run, pid), program, reason, via);
    for (size_t i = before; i < run->nfindings; i++)
        if (!run->findings[i].message)
            forksafe__build_message(&run->findings[i]);
}

/* unaudited records, minus those whose exec failed (an exec-failed record
   of the same pid after it). */
static void unaudited(struct forksafe_run *run, const struct rec *recs,
                      size_t nrecs)
{
    for (size_t i = 0; i < nrecs; i++) {
        if (strcmp(recs[i].type, "unaudited") != 0)
            continue;
        long pid = get_long(&recs[i], "pid");
        int failed = 0;
        for (size_t k = i + 1; k < nrecs && !failed; k++)
            if (get_long(&recs[k], "pid") == pid) {
                if (strcmp(recs[k].type, "exec-failed") == 0)
                    failed = 1;
                else if (strcmp(recs[k].type, "unaudited") == 0)
                    break;
            }
        if (failed)
            continue;
        const char *reason = get_str(&recs[i], "reason");
        int code = FORKSAFE_EXEC_STATIC;
        for (int c = FORKSAFE_EXEC_STATIC; c <= FORKSAFE_EXEC_LAST; c++)
            if (reason && strcmp(reason, forksafe__exec_reason_name(c)) == 0)
                code = c;
        const char *via = get_str(&recs[i], "via");
        const char *prog = get_str(&recs[i], "program");
        add_unaudited(run, pid, get_long(&recs[i], "ppid"), prog ? prog : "?",
                      code, via ? via : "?");
    }
}

/* What the run page counted: program images, and the events that could
   not be written as records. */
static void run_page(struct forksafe_run *run, const char *dir)
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
    if (rp->magic != FORKSAFE_RUNPAGE_MAGIC) {
        munmap(p, FORKSAFE_RUNPAGE_SIZE);
        return;
    }
    run->images = (long)(rp->images + rp->forked);
    uint32_t n = rp->nevents;
    if (n > FORKSAFE_RUNPAGE_EVENTS)
        n = FORKSAFE_RUNPAGE_EVENTS;
    for (uint32_t i = 0; i < n; i++) {
        const struct forksafe_runevent *e = &rp->ev[i];
        if (!e->pid)
            continue;
        if (e->type == FORKSAFE_RUN_UNAUDITED) {
            /* Its path is not known: the record that names it could not
               be written. */
            add_unaudited(run, e->pid, proc_ppid(run, e->pid),
                          "(a program started out of the audit's reach)",
                          e->err, "exec or shell after chroot()");
            continue;
        }
        struct forksafe_finding f;
        memset(&f, 0, sizeof f);
        f.pid = e->pid;
        f.ppid = proc_ppid(run, e->pid);
        f.exe = xstrdup(proc_exe(run, e->pid));
        f.order = (size_t)-1;
        const char *err =
            e->err ? strerror(e->err) : "all record buffers were busy";
        if (e->type == FORKSAFE_RUN_LOST) {
            f.kind = xstrdup("records-lost");
            f.sev = FS_SEV_ERROR;
            add_detail_int(&f, "records", e->count);
            run->records_lost += e->count;
        } else if (e->type == FORKSAFE_RUN_CENSUS) {
            /* Threads the audit could not count may have held locks it
               did not report: the report is incomplete, like lost
               records. */
            f.kind = xstrdup("thread-census-failed");
            f.sev = FS_SEV_ERROR;
            add_detail_int(&f, "forks", e->count);
            run->census_failed += e->count;
        } else {
            free(f.exe);
            continue;
        }
        add_detail_int(&f, "errno", e->err);
        add_detail(&f, "error", err, FS_V_STR);
        add_finding(run, &f);
    }
    if (rp->dropped) {
        /* Events that did not fit: records were lost somewhere. */
        run->records_lost += rp->dropped;
    }
    munmap(p, FORKSAFE_RUNPAGE_SIZE);
}

int forksafe__records_load(struct forksafe_run *run, const char *dir,
                           const struct forksafe_fdid *ignore, size_t nignore)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno;
    struct rec *recs = NULL;
    size_t nrecs = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".rec") != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        read_file(path, &recs, &nrecs);
    }
    closedir(d);

    /* Processes first, so that findings can name their program. */
    for (size_t i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        if (strcmp(r->type, "proc") != 0)
            continue;
        run->procs =
            xrealloc(run->procs, (run->nprocs + 1) * sizeof *run->procs);
        struct forksafe_proc *p = &run->procs[run->nprocs++];
        memset(p, 0, sizeof *p);
        p->pid = get_long(r, "pid");
        p->ppid = get_long(r, "ppid");
        p->starttime = get_long(r, "starttime");
        const char *exe = get_str(r, "exe");
        const char *start = get_str(r, "start");
        p->exe = xstrdup(exe ? exe : "?");
        p->start = xstrdup(start ? start : "?");
    }
    for (size_t i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        if (strcmp(r->type, "summary") != 0)
            continue;
        long pid = get_long(r, "pid");
        for (size_t k = run->nprocs; k-- > 0;)
            if (run->procs[k].pid == pid) {
                kv_free(run->procs[k].summary, run->procs[k].nsummary);
                run->procs[k].summary = kv_dup(r->kv, r->n);
                run->procs[k].nsummary = r->n;
                break;
            }
    }
    /* In file order, so that each record is labelled with the program
       its process ran when it wrote it. */
    struct cur {
        long pid;
        const char *exe;
    } *cur = NULL;
    size_t ncur = 0;
    for (size_t i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        long pid = get_long(r, "pid");
        if (strcmp(r->type, "proc") == 0) {
            size_t k = 0;
            while (k < ncur && cur[k].pid != pid)
                k++;
            if (k == ncur) {
                cur = xrealloc(cur, (ncur + 1) * sizeof *cur);
                ncur++;
            }
            cur[k].pid = pid;
            cur[k].exe = get_str(r, "exe");
            continue;
        }
        if (strcmp(r->type, "ranon") == 0) {
            ranon_from_record(run, r);
            continue;
        }
        if (strcmp(r->type, "finding") != 0)
            continue;
        const char *kind = get_str(r, "kind");
        if (kind && strcmp(kind, "fd-leak-on-exec") == 0 &&
            fd_ignored(r, ignore, nignore))
            continue;
        const char *exe = NULL;
        for (size_t k = 0; k < ncur; k++)
            if (cur[k].pid == pid)
                exe = cur[k].exe;
        finding_from_record(run, r, recs, nrecs, exe);
    }
    free(cur);
    atfork_order(run, recs, nrecs);
    unaudited(run, recs, nrecs);
    run_page(run, dir);
    for (size_t i = 0; i < nrecs; i++) {
        free(recs[i].type);
        kv_free(recs[i].kv, recs[i].n);
    }
    free(recs);
    forksafe__rules_apply(run);
    if (run->nfindings)
        qsort(run->findings, run->nfindings, sizeof *run->findings,
              cmp_finding);
    return 0;
}

/* A process is still running when its pid is alive, not a zombie, and
   started at the same time as the one that wrote the records. */
static int still_running(const struct forksafe_proc *p)
{
    if (p->pid <= 0 || kill((pid_t)p->pid, 0) != 0)
        return 0;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", p->pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')');
    if (!s || s[1] != ' ' || s[2] == 'Z' || s[2] == 'X')
        return 0;
    int field = 2;
    for (; *s && field < 22; s++)
        if (*s == ' ')
            field++;
    return !p->starttime || strtol(s, NULL, 10) == p->starttime;
}

/* Descendants still alive that wrote no record: after PROGRAM ended they
   were reparented to forksafe-audit (a child subreaper), so they are its
   children now (/proc/PID/task/TID/children). */
static void add_orphans(struct forksafe_run *run)
{
    char path[96], buf[4096];
    long me = (long)getpid();
    snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", me, me);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *p = buf; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        p = end;
        int known = 0;
        for (size_t i = 0; i < run->nprocs; i++)
            known |= run->procs[i].pid == pid;
        if (known || pid <= 0)
            continue;
        char exe[4096];
        snprintf(path, sizeof path, "/proc/%ld/exe", pid);
        ssize_t l = readlink(path, exe, sizeof exe - 1);
        exe[l > 0 ? l : 0] = '\0';
        run->procs =
            xrealloc(run->procs, (run->nprocs + 1) * sizeof *run->procs);
        struct forksafe_proc *q = &run->procs[run->nprocs++];
        memset(q, 0, sizeof *q);
        q->pid = pid;
        q->ppid = me;
        q->exe = xstrdup(l > 0 ? exe : "?");
        q->start = NULL;
    }
}

void forksafe__records_mark_running(struct forksafe_run *run)
{
    add_orphans(run);
    for (size_t i = 0; i < run->nprocs; i++) {
        /* Only the last image of a pid can still be running. */
        int later = 0;
        for (size_t k = i + 1; k < run->nprocs; k++)
            later |= run->procs[k].pid == run->procs[i].pid;
        run->procs[i].still_running = !later && still_running(&run->procs[i]);
    }
}
