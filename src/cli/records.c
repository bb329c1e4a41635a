/* SPDX-License-Identifier: MIT */
/*
 * records.c: read the record files that every audited process wrote
 * (<pid>.rec, one tab-separated line per record, see src/preload/emit.c),
 * and merge them into findings and processes: frames are symbolized,
 * duplicate findings dropped, registration facts ("lockinfo" records
 * written at exit) attached to the locks reported at fork, and descriptors
 * that the program inherited from outside removed from fd-leak-on-exec.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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

/* Undo the interposer's escaping in place. */
static void unescape(char *s)
{
    char *w = s;
    for (; *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *w++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s;
        } else {
            *w++ = *s;
        }
    }
    *w = '\0';
}

static int parse_line(char *line, struct rec *r)
{
    memset(r, 0, sizeof *r);
    char *save = NULL;
    char *tok = strtok_r(line, "\t", &save);
    if (!tok)
        return -1;
    r->type = strdup(tok);
    while ((tok = strtok_r(NULL, "\t", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq = '\0';
        struct forksafe_kv *g = realloc(r->kv, (r->n + 1) * sizeof *g);
        if (!g)
            return ENOMEM;
        r->kv = g;
        unescape(eq + 1);
        r->kv[r->n].key = strdup(tok);
        r->kv[r->n].val = strdup(eq + 1);
        r->n++;
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
    struct forksafe_kv *c = calloc(n ? n : 1, sizeof *c);
    for (size_t i = 0; c && i < n; i++) {
        c[i].key = strdup(kv[i].key);
        c[i].val = strdup(kv[i].val);
    }
    return c;
}

static void finding_free(struct forksafe_finding *f)
{
    free(f->kind);
    free(f->exe);
    free(f->message);
    for (size_t i = 0; i < f->nframes; i++) {
        free(f->frames[i].role);
        free(f->frames[i].thread_name);
        free(f->frames[i].object);
        free(f->frames[i].function);
    }
    free(f->frames);
    kv_free(f->details, f->ndetails);
}

void forksafe__run_free(struct forksafe_run *run)
{
    for (size_t i = 0; i < run->nfindings; i++)
        finding_free(&run->findings[i]);
    free(run->findings);
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

static int read_file(const char *path, struct rec **recs, size_t *nrecs)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno;
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
        struct rec *g = realloc(*recs, (*nrecs + 1) * sizeof *g);
        if (!g)
            break;
        *recs = g;
        (*recs)[(*nrecs)++] = r;
    }
    free(line);
    fclose(f);
    return 0;
}

static long get_long(const struct rec *r, const char *key)
{
    const char *v = forksafe__kv_get(r->kv, r->n, key);
    return v ? strtol(v, NULL, 0) : 0;
}

/* frame=role|tid|name|object|0xoffset; the object may contain '|'. */
static void parse_frame(const char *v, struct forksafe_frame *f)
{
    memset(f, 0, sizeof *f);
    char *s = strdup(v);
    char *p1 = strchr(s, '|');
    char *p2 = p1 ? strchr(p1 + 1, '|') : NULL;
    char *p3 = p2 ? strchr(p2 + 1, '|') : NULL;
    char *p4 = strrchr(s, '|');
    if (!p3 || p4 <= p2) {
        f->role = s;
        f->object = strdup("?");
        return;
    }
    *p1 = *p2 = *p3 = *p4 = '\0';
    f->role = strdup(s);
    f->tid = strtol(p1 + 1, NULL, 10);
    f->thread_name = p2[1] ? strdup(p2 + 1) : NULL;
    f->object = strdup(p3 + 1);
    uint64_t off = strtoull(p4 + 1, NULL, 16);
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

static void add_detail(struct forksafe_finding *f, const char *k, const char *v)
{
    struct forksafe_kv *g = realloc(f->details, (f->ndetails + 1) * sizeof *g);
    if (!g)
        return;
    f->details = g;
    f->details[f->ndetails].key = strdup(k);
    f->details[f->ndetails].val = strdup(v);
    f->ndetails++;
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

/* lockinfo records: (pid, lock) -> name and rank, for registered locks. */
static const struct rec *find_lockinfo(const struct rec *recs, size_t n,
                                       long pid, const char *lock)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(recs[i].type, "lockinfo") != 0 ||
            get_long(&recs[i], "pid") != pid)
            continue;
        const char *l = forksafe__kv_get(recs[i].kv, recs[i].n, "lock");
        if (l && strcmp(l, lock) == 0)
            return &recs[i];
    }
    return NULL;
}

static int fd_ignored(const struct rec *r, const struct forksafe_fdid *ign,
                      size_t nign)
{
    unsigned long dev = (unsigned long)get_long(r, "dev");
    unsigned long ino = (unsigned long)get_long(r, "ino");
    for (size_t i = 0; i < nign; i++)
        if (ign[i].dev == dev && ign[i].ino == ino)
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

static void build_message(struct forksafe_finding *f);

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
            const char *kind = forksafe__kv_get(recs[k].kv, recs[k].n, "kind");
            if (get_long(&recs[k], "pid") == f->pid &&
                (strcmp(recs[k].type, "atfork") == 0 ||
                 (kind && strcmp(kind, "raw-atfork-handler") == 0)))
                total++;
        }
        const char *sq = forksafe__kv_get(f->details, f->ndetails, "seq");
        long seq = sq ? strtol(sq, NULL, 10) : 0;
        if (seq < 1 || seq > total)
            continue;
        char buf[64];
        snprintf(buf, sizeof buf, "%ld", total);
        add_detail(f, "registrations", buf);
        snprintf(buf, sizeof buf, "%ld", total - seq + 1);
        add_detail(f, "prepare_position", buf);
        snprintf(buf, sizeof buf, "%ld", seq);
        add_detail(f, "child_position", buf);
        free(f->message);
        build_message(f);
    }
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
        struct forksafe_proc *g =
            realloc(run->procs, (run->nprocs + 1) * sizeof *g);
        if (!g)
            return ENOMEM;
        run->procs = g;
        struct forksafe_proc *p = &run->procs[run->nprocs++];
        memset(p, 0, sizeof *p);
        p->pid = get_long(r, "pid");
        p->ppid = get_long(r, "ppid");
        const char *exe = forksafe__kv_get(r->kv, r->n, "exe");
        const char *start = forksafe__kv_get(r->kv, r->n, "start");
        p->exe = strdup(exe ? exe : "?");
        p->start = strdup(start ? start : "?");
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
                run->procs[k].nsummary = run->procs[k].summary ? r->n : 0;
                break;
            }
    }

    for (size_t i = 0; i < nrecs; i++) {
        struct rec *r = &recs[i];
        if (strcmp(r->type, "finding") != 0)
            continue;
        const char *kind = forksafe__kv_get(r->kv, r->n, "kind");
        if (!kind)
            continue;
        if (strcmp(kind, "fd-leak-on-exec") == 0 &&
            fd_ignored(r, ignore, nignore))
            continue;
        struct forksafe_finding f;
        memset(&f, 0, sizeof f);
        f.kind = strdup(kind);
        int sev =
            forksafe__sev_parse(forksafe__kv_get(r->kv, r->n, "severity"));
        f.sev = sev < 0 ? FS_SEV_WARNING : (enum forksafe_sev)sev;
        f.pid = get_long(r, "pid");
        f.ppid = get_long(r, "ppid");
        f.tid = get_long(r, "tid");
        f.order = r->order;
        f.exe = strdup(proc_exe(run, f.pid));
        for (size_t k = 0; k < r->n; k++) {
            if (strcmp(r->kv[k].key, "frame") == 0) {
                struct forksafe_frame *g =
                    realloc(f.frames, (f.nframes + 1) * sizeof *g);
                if (!g)
                    break;
                f.frames = g;
                parse_frame(r->kv[k].val, &f.frames[f.nframes++]);
            } else if (!is_meta(r->kv[k].key)) {
                add_detail(&f, r->kv[k].key, r->kv[k].val);
            }
        }
        /* A lock held at fork (or blocking a child) that forksafe knows:
           registered locks are acquired by its prepare handler, so the
           hazard is covered. */
        const char *lock = forksafe__kv_get(r->kv, r->n, "lock");
        if (lock && (strcmp(kind, "lock-held-at-fork") == 0 ||
                     strcmp(kind, "child-deadlock") == 0)) {
            const struct rec *li = find_lockinfo(recs, nrecs, f.pid, lock);
            if (!li)
                li = find_lockinfo(recs, nrecs, f.ppid, lock);
            add_detail(&f, "registered", li ? "yes" : "no");
            if (li) {
                const char *nm = forksafe__kv_get(li->kv, li->n, "name");
                const char *rk = forksafe__kv_get(li->kv, li->n, "rank");
                add_detail(&f, "lock_name", nm ? nm : "?");
                add_detail(&f, "rank", rk ? rk : "?");
                if (strcmp(kind, "lock-held-at-fork") == 0)
                    f.sev = FS_SEV_INFO;
            }
        }
        int dup = 0;
        for (size_t k = 0; k < run->nfindings && !dup; k++)
            dup = same_finding(&run->findings[k], &f);
        if (dup) {
            finding_free(&f);
            continue;
        }
        build_message(&f);
        struct forksafe_finding *g =
            realloc(run->findings, (run->nfindings + 1) * sizeof *g);
        if (!g)
            return ENOMEM;
        run->findings = g;
        run->findings[run->nfindings++] = f;
    }
    atfork_order(run, recs, nrecs);
    for (size_t i = 0; i < nrecs; i++) {
        free(recs[i].type);
        kv_free(recs[i].kv, recs[i].n);
    }
    free(recs);
    if (run->nfindings)
        qsort(run->findings, run->nfindings, sizeof *run->findings,
              cmp_finding);
    return 0;
}

static const char *det(const struct forksafe_finding *f, const char *k)
{
    const char *v = forksafe__kv_get(f->details, f->ndetails, k);
    return v ? v : "?";
}

static const struct forksafe_frame *frame_of(const struct forksafe_finding *f,
                                             const char *role)
{
    for (size_t i = 0; i < f->nframes; i++)
        if (strcmp(f->frames[i].role, role) == 0)
            return &f->frames[i];
    return NULL;
}

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

/* One sentence per finding, the same in the text and JSON reports. */
static void build_message(struct forksafe_finding *f)
{
    char buf[1024];
    const char *k = f->kind;
    if (strcmp(k, "fork-with-threads") == 0) {
        long n = strtol(det(f, "threads"), NULL, 10);
        snprintf(buf, sizeof buf,
                 "%s() called while %ld other thread%s alive; the child "
                 "gets only the calling thread",
                 det(f, "call"), n - 1, n - 1 == 1 ? " was" : "s were");
    } else if (strcmp(k, "lock-held-at-fork") == 0) {
        const char *reg = det(f, "registered");
        if (strcmp(reg, "yes") == 0)
            snprintf(buf, sizeof buf,
                     "%s %s (\"%s\", rank %s) was held by thread %s (%s) at "
                     "fork; it is registered, so forksafe's prepare waited "
                     "for it",
                     det(f, "lock_kind"), det(f, "lock"), det(f, "lock_name"),
                     det(f, "rank"), det(f, "holder_tid"),
                     det(f, "holder_name"));
        else
            snprintf(buf, sizeof buf,
                     "%s %s was held by thread %s (%s) at fork and is not "
                     "registered with forksafe: it stays locked forever in "
                     "the child",
                     det(f, "lock_kind"), det(f, "lock"), det(f, "holder_tid"),
                     det(f, "holder_name"));
    } else if (strcmp(k, "child-deadlock") == 0) {
        snprintf(buf, sizeof buf,
                 "the child blocked on %s %s, held at fork by thread %s "
                 "which does not exist in the child; ended after %s ms with "
                 "status %s",
                 det(f, "lock_kind"), det(f, "lock"), det(f, "holder_tid"),
                 det(f, "grace_ms"), det(f, "exit_status"));
    } else if (strcmp(k, "unsafe-call-in-child") == 0) {
        snprintf(buf, sizeof buf,
                 "the child of a multi-threaded parent called %s(), which is "
                 "not async-signal-safe, before exec or _exit",
                 det(f, "function"));
    } else if (strcmp(k, "raw-atfork-handler") == 0) {
        snprintf(buf, sizeof buf,
                 "%s registered fork handlers with pthread_atfork directly, "
                 "outside the forksafe registry: of the process's %s "
                 "registrations its prepare runs %s, its parent and child "
                 "handlers %s (registration order, not lock order)",
                 det(f, "object"), det(f, "registrations"),
                 ordinal(det(f, "prepare_position")),
                 ordinal(det(f, "child_position")));
    } else if (strcmp(k, "lock-order-violation") == 0) {
        snprintf(buf, sizeof buf,
                 "\"%s\" (rank %s) was taken while holding \"%s\" (rank %s): "
                 "against rank order, so forksafe's prepare can deadlock "
                 "with this code",
                 det(f, "taken_name"), det(f, "taken_rank"),
                 det(f, "held_name"), det(f, "held_rank"));
    } else if (strcmp(k, "unregistered-shared-lock") == 0) {
        const struct forksafe_frame *a = frame_of(f, "first-lock");
        const struct forksafe_frame *b = frame_of(f, "other-thread-lock");
        snprintf(buf, sizeof buf,
                 "%s %s was used by threads %ld and %ld and is not "
                 "registered with forksafe",
                 det(f, "lock_kind"), det(f, "lock"), a ? a->tid : 0,
                 b ? b->tid : 0);
    } else if (strcmp(k, "library-without-adapter") == 0) {
        if (strcmp(det(f, "no_safe_way"), "1") == 0)
            snprintf(buf, sizeof buf,
                     "%s is loaded in a process that forks; it has no safe "
                     "use in a forked child: exec, or start children with "
                     "forksafe_spawn() or the fork server",
                     det(f, "library"));
        else
            snprintf(buf, sizeof buf,
                     "%s is loaded in a process that forks, but the "
                     "forksafe-%s adapter is not installed",
                     det(f, "library"), det(f, "adapter"));
    } else if (strcmp(k, "stdio-unflushed-at-fork") == 0) {
        snprintf(buf, sizeof buf,
                 "%s bytes were pending in %s at fork: they will be written "
                 "by both processes",
                 det(f, "bytes"), det(f, "stream"));
    } else if (strcmp(k, "fd-leak-on-exec") == 0) {
        const char *sock = forksafe__kv_get(f->details, f->ndetails, "socket");
        snprintf(buf, sizeof buf,
                 "descriptor %s (%s%s%s) has no close-on-exec flag and "
                 "survived into %s",
                 det(f, "fd"), det(f, "target"), sock ? ", socket " : "",
                 sock ? sock : "", f->exe);
    } else {
        snprintf(buf, sizeof buf, "%s", k);
    }
    f->message = strdup(buf);
}
