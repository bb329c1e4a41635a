/* SPDX-License-Identifier: MIT */
/*
 * suppress.c: what a CI gate needs besides the findings: suppression rules
 * (--suppressions FILE, in the spirit of valgrind's and ThreadSanitizer's
 * suppression files) and baselines (--baseline OLD.json, an earlier
 * report: only findings not in it fail --fail-on), both keyed on what
 * stays the same from one run to the next.
 *
 * The suppression file (docs/audit.md, "Suppressions"): one rule per line,
 *
 *     KIND [KEY=GLOB]...        # comment
 *
 * KIND is a finding kind or a glob over kinds; each KEY=GLOB must match
 * (fnmatch(3), so * also matches '/'): object (a frame's object, or the
 * finding's object or library), function (a frame's function or a
 * function inlined there), file (a frame's source file), lock (a lock's
 * registered name, or its address), exe (the process's program). A value
 * may be written in double quotes ("a b"), with \" and \\ inside. Blank
 * lines and '#' to the end of a line are ignored.
 *
 * A fingerprint names a finding across runs: its kind, the base name of
 * its program, its code frames (role, base name of the object, function,
 * or offset where there is no symbol) and the details that do not change
 * from run to run (no pid, address, thread or count), hashed (FNV-1a,
 * 64 bits). A baseline counts each fingerprint as often as it occurs; a
 * finding beyond that count is new.
 */
#include "cli.h"

#include "jsonread.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#define xstrdup  forksafe__xstrdup
#define xrealloc forksafe__xrealloc

static const char *const kinds[] = {
    "fork-with-threads",       "lock-held-at-fork",
    "child-deadlock",          "unsafe-call-in-child",
    "raw-atfork-handler",      "lock-order-violation",
    "unregistered-shared-lock", "library-without-adapter",
    "stdio-unflushed-at-fork", "fd-leak-on-exec",
    "not-audited",             "thread-census-failed",
    "records-lost",            NULL};

static const char *const keys[] = {"object", "function", "file", "lock", "exe",
                                   NULL};

static const char *base(const char *p)
{
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p ? p : "";
}

/* ------------------------------------------------------------ rules */

static int is_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

/* The next word of a rule line at *p: NUL-terminated in place, quotes
   removed; NULL at the end of the line or a comment. */
static char *word(char **p, int *bad)
{
    char *s = *p;
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s || *s == '#' || *s == '\n' || *s == '\r')
        return NULL;
    char *start = s, *w = s;
    int quoted = 0;
    for (; *s; s++) {
        if (quoted) {
            if (*s == '\\' && (s[1] == '"' || s[1] == '\\')) {
                *w++ = *++s;
            } else if (*s == '"') {
                quoted = 0;
            } else {
                *w++ = *s;
            }
            continue;
        }
        if (*s == '"') {
            quoted = 1;
            continue;
        }
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '#')
            break;
        *w++ = *s;
    }
    if (quoted)
        *bad = 1;
    char *next = *s == '#' ? s : *s ? s + 1 : s;
    *w = '\0';
    *p = next;
    return start;
}

int forksafe__supp_load(struct forksafe_run *run, const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "forksafe-audit: --suppressions %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        char *p = line;
        int bad = 0;
        char *kind = word(&p, &bad);
        if (!kind)
            continue;
        int known = is_glob(kind);
        for (int i = 0; kinds[i] && !known; i++)
            known = strcmp(kind, kinds[i]) == 0;
        if (!known) {
            fprintf(stderr,
                    "forksafe-audit: %s:%d: unknown finding kind '%s' "
                    "(a kind such as lock-held-at-fork, or a glob)\n",
                    path, lineno, kind);
            rc = -1;
            break;
        }
        struct forksafe_supp s = {0};
        s.file = xstrdup(path);
        s.line = lineno;
        s.kind = xstrdup(kind);
        char *w;
        while (!bad && (w = word(&p, &bad))) {
            char *eq = strchr(w, '=');
            int ok = eq && eq != w;
            for (int i = 0; ok && keys[i]; i++)
                if (strncmp(w, keys[i], (size_t)(eq - w)) == 0 &&
                    keys[i][eq - w] == '\0')
                    goto known_key;
            fprintf(stderr,
                    "forksafe-audit: %s:%d: '%s' is not KEY=GLOB with KEY "
                    "one of object, function, file, lock, exe\n",
                    path, lineno, w);
            bad = 2;
            break;
        known_key:
            s.conds = xrealloc(s.conds, (s.nconds + 1) * sizeof *s.conds);
            *eq = '\0';
            s.conds[s.nconds].key = xstrdup(w);
            s.conds[s.nconds].glob = xstrdup(eq + 1);
            s.nconds++;
        }
        if (bad == 1)
            fprintf(stderr, "forksafe-audit: %s:%d: unterminated quote\n",
                    path, lineno);
        run->supps = xrealloc(run->supps, (run->nsupps + 1) * sizeof s);
        run->supps[run->nsupps++] = s;
        if (bad) {
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static int glob_match(const char *glob, const char *s)
{
    return s && fnmatch(glob, s, 0) == 0;
}

static int frame_matches(const struct forksafe_frame *fr, const char *key,
                         const char *glob)
{
    if (strcmp(key, "object") == 0)
        return glob_match(glob, fr->object);
    if (strcmp(key, "file") == 0)
        return glob_match(glob, fr->file);
    if (strcmp(key, "function") == 0) {
        if (glob_match(glob, fr->function))
            return 1;
        for (size_t i = 0; i < fr->ninlined; i++)
            if (glob_match(glob, fr->inlined[i].function))
                return 1;
    }
    return 0;
}

static int cond_matches(const struct forksafe_finding *f,
                        const struct forksafe_supp_cond *c)
{
    if (strcmp(c->key, "exe") == 0)
        return glob_match(c->glob, f->exe);
    if (strcmp(c->key, "lock") == 0) {
        static const char *const names[] = {"lock_name", "held_name",
                                            "taken_name", "lock", NULL};
        for (int i = 0; names[i]; i++)
            if (glob_match(c->glob, forksafe__kv_get(f->details, f->ndetails,
                                                     names[i])))
                return 1;
        return 0;
    }
    if (strcmp(c->key, "object") == 0) {
        static const char *const names[] = {"object", "library", "program",
                                            NULL};
        for (int i = 0; names[i]; i++)
            if (glob_match(c->glob, forksafe__kv_get(f->details, f->ndetails,
                                                     names[i])))
                return 1;
    }
    for (size_t i = 0; i < f->nframes; i++)
        if (frame_matches(&f->frames[i], c->key, c->glob))
            return 1;
    return 0;
}

void forksafe__supp_apply(struct forksafe_run *run)
{
    size_t w = 0;
    for (size_t i = 0; i < run->nfindings; i++) {
        struct forksafe_finding *f = &run->findings[i];
        struct forksafe_supp *hit = NULL;
        for (size_t k = 0; k < run->nsupps && !hit; k++) {
            struct forksafe_supp *s = &run->supps[k];
            if (fnmatch(s->kind, f->kind, 0) != 0)
                continue;
            size_t c = 0;
            while (c < s->nconds && cond_matches(f, &s->conds[c]))
                c++;
            if (c == s->nconds)
                hit = s;
        }
        if (!hit) {
            run->findings[w++] = *f;
            continue;
        }
        hit->hits++;
        f->suppressed_by = hit;
        run->suppressed = xrealloc(run->suppressed, (run->nsuppressed + 1) *
                                                        sizeof *run->suppressed);
        run->suppressed[run->nsuppressed++] = *f;
    }
    run->nfindings = w;
}

/* ------------------------------------------------------------ fingerprints */

struct fnv {
    uint64_t h;
};

static void fnv_add(struct fnv *h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p;
         p++) {
        h->h ^= *p;
        h->h *= 0x100000001b3ull;
    }
    h->h ^= 0x1f; /* field separator */
    h->h *= 0x100000001b3ull;
}

/* Frames that name where the hazard is in the code (not the threads that
   happened to be alive, nor another thread's use). */
static int code_role(const char *role)
{
    static const char *const roles[] = {
        "fork-call", "lock-taken", "lock-call",     "call",
        "first-lock", "held-taken", "taken",        "prepare",
        "parent",    "child",      "state-created", "child-flush",
        NULL};
    for (int i = 0; roles[i]; i++)
        if (strcmp(role, roles[i]) == 0)
            return 1;
    return 0;
}

/* The details that stay the same from run to run, per kind. */
static const char *const stable[] = {
    "call", "lock_kind", "lock_name", "covered_by", "function", "held_name",
    "taken_name", "adapter", "stream", "fd", "reason", NULL};

char *forksafe__fingerprint(const struct forksafe_finding *f)
{
    struct fnv h = {0xcbf29ce484222325ull};
    fnv_add(&h, f->kind);
    fnv_add(&h, base(f->exe));
    for (size_t i = 0; i < f->nframes; i++) {
        const struct forksafe_frame *fr = &f->frames[i];
        if (!code_role(fr->role))
            continue;
        char off[32];
        fnv_add(&h, fr->role);
        fnv_add(&h, base(fr->object));
        if (fr->function) {
            fnv_add(&h, fr->function);
        } else {
            snprintf(off, sizeof off, "%llx", (unsigned long long)fr->offset);
            fnv_add(&h, off);
        }
    }
    for (int k = 0; stable[k]; k++) {
        const char *v = forksafe__kv_get(f->details, f->ndetails, stable[k]);
        if (!v)
            continue;
        fnv_add(&h, stable[k]);
        fnv_add(&h, v);
    }
    /* Objects and programs by base name: the path of a build tree or a
       temporary directory differs from run to run. */
    static const char *const paths[] = {"object", "library", "program", NULL};
    for (int k = 0; paths[k]; k++) {
        const char *v = forksafe__kv_get(f->details, f->ndetails, paths[k]);
        if (v) {
            fnv_add(&h, paths[k]);
            fnv_add(&h, base(v));
        }
    }
    if (strcmp(f->kind, "fd-leak-on-exec") == 0) {
        /* What the descriptor is (pipe, socket, anon_inode, a file), not
           which one. */
        const char *t = forksafe__kv_get(f->details, f->ndetails, "target");
        char cls[64] = "file";
        if (t && t[0] != '/') {
            size_t n = strcspn(t, ":");
            snprintf(cls, sizeof cls, "%.*s", (int)n, t);
        }
        fnv_add(&h, cls);
    }
    char *out = xrealloc(NULL, 17);
    snprintf(out, 17, "%016llx", (unsigned long long)h.h);
    return out;
}

void forksafe__fingerprint_all(struct forksafe_run *run)
{
    for (size_t i = 0; i < run->nfindings; i++) {
        free(run->findings[i].fingerprint);
        run->findings[i].fingerprint = forksafe__fingerprint(&run->findings[i]);
    }
    for (size_t i = 0; i < run->nsuppressed; i++) {
        free(run->suppressed[i].fingerprint);
        run->suppressed[i].fingerprint =
            forksafe__fingerprint(&run->suppressed[i]);
    }
}

/* ------------------------------------------------------------ baseline */

struct forksafe_baseline {
    char **fp;
    long *count;
    size_t n;
};

static void baseline_add(struct forksafe_baseline *b, char *fp)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->fp[i], fp) == 0) {
            b->count[i]++;
            free(fp);
            return;
        }
    b->fp = xrealloc(b->fp, (b->n + 1) * sizeof *b->fp);
    b->count = xrealloc(b->count, (b->n + 1) * sizeof *b->count);
    b->fp[b->n] = fp;
    b->count[b->n] = 1;
    b->n++;
}

/* A JSON value as a record field would have held it. */
static void jval_text(const struct forksafe_jval *v, char *out, size_t len)
{
    if (v->type == FS_J_STR || v->type == FS_J_NUM)
        snprintf(out, len, "%s", v->str ? v->str : "");
    else if (v->type == FS_J_BOOL)
        snprintf(out, len, "%s", v->boolean ? "1" : "0");
    else
        out[0] = '\0';
}

/* An old report's finding, as much of it as the fingerprint reads. */
static char *old_fingerprint(const struct forksafe_jval *j)
{
    struct forksafe_finding f;
    memset(&f, 0, sizeof f);
    f.kind = xstrdup(forksafe__jval_str(j, "kind"));
    f.exe = xstrdup(forksafe__jval_str(j, "exe"));
    const struct forksafe_jval *frames = forksafe__jval_get(j, "frames");
    if (frames && frames->type == FS_J_ARR) {
        f.frames = xrealloc(NULL, (frames->n + 1) * sizeof *f.frames);
        for (size_t i = 0; i < frames->n; i++) {
            const struct forksafe_jval *fr = &frames->items[i];
            struct forksafe_frame *o = &f.frames[f.nframes++];
            memset(o, 0, sizeof *o);
            o->role = xstrdup(forksafe__jval_str(fr, "role"));
            o->object = xstrdup(forksafe__jval_str(fr, "object"));
            const char *fn = forksafe__jval_str(fr, "function");
            o->function = fn ? xstrdup(fn) : NULL;
            const char *off = forksafe__jval_str(fr, "offset");
            o->offset = off ? strtoull(off, NULL, 16) : 0;
        }
    }
    const struct forksafe_jval *d = forksafe__jval_get(j, "details");
    for (size_t i = 0; d && d->type == FS_J_OBJ && i < d->n; i++) {
        char buf[1024];
        jval_text(&d->items[i], buf, sizeof buf);
        forksafe__detail_set(&f, d->keys[i], buf, FS_V_STR);
    }
    char *fp = forksafe__fingerprint(&f);
    forksafe__finding_free(&f);
    return fp;
}

struct forksafe_baseline *forksafe__baseline_load(const char *path)
{
    FILE *fh = fopen(path, "re");
    if (!fh) {
        fprintf(stderr, "forksafe-audit: --baseline %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536 * 2;
            text = xrealloc(text, cap);
        }
        size_t got = fread(text + len, 1, cap - len, fh);
        if (!got)
            break;
        len += got;
    }
    int rerr = ferror(fh);
    fclose(fh);
    if (rerr) {
        fprintf(stderr, "forksafe-audit: --baseline %s: read error\n", path);
        free(text);
        return NULL;
    }
    char err[160];
    struct forksafe_jval *doc = forksafe__json_parse(text, len, err, sizeof err);
    free(text);
    if (!doc) {
        fprintf(stderr, "forksafe-audit: --baseline %s is not JSON: %s\n", path,
                err);
        return NULL;
    }
    const char *schema = forksafe__jval_str(doc, "schema");
    const struct forksafe_jval *findings = forksafe__jval_get(doc, "findings");
    if (!schema || strcmp(schema, "forksafe-audit") != 0 || !findings ||
        findings->type != FS_J_ARR) {
        fprintf(stderr,
                "forksafe-audit: --baseline %s is not a forksafe-audit "
                "report (forksafe-audit --json)\n",
                path);
        forksafe__jval_free(doc);
        return NULL;
    }
    struct forksafe_baseline *b = xrealloc(NULL, sizeof *b);
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < findings->n; i++)
        if (findings->items[i].type == FS_J_OBJ)
            baseline_add(b, old_fingerprint(&findings->items[i]));
    forksafe__jval_free(doc);
    return b;
}

void forksafe__baseline_apply(struct forksafe_run *run,
                              struct forksafe_baseline *b)
{
    long *left = xrealloc(NULL, (b->n + 1) * sizeof *left);
    if (b->n) /* an empty baseline has no count array (NULL) */
        memcpy(left, b->count, b->n * sizeof *left);
    for (size_t i = 0; i < run->nfindings; i++) {
        struct forksafe_finding *f = &run->findings[i];
        f->baseline = 1;
        for (size_t k = 0; k < b->n; k++)
            if (left[k] > 0 && strcmp(b->fp[k], f->fingerprint) == 0) {
                left[k]--;
                f->baseline = 2;
                run->baselined++;
                break;
            }
    }
    free(left);
}

void forksafe__baseline_free(struct forksafe_baseline *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        free(b->fp[i]);
    free(b->fp);
    free(b->count);
    free(b);
}
