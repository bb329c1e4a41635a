/* SPDX-License-Identifier: MIT */
/*
 * sarif.c: forksafe-audit --sarif FILE, the report as a SARIF 2.1.0 log
 * (OASIS Static Analysis Results Interchange Format), which GitHub code
 * scanning and other SARIF viewers read.
 *
 * One run; one rule per finding kind (ruleId is the kind: lock-held-at-fork
 * ...), with its default level; one result per finding: level error,
 * warning or note (info), the finding's sentence, the code location that
 * best shows the hazard as the primary location (the fork for state at a
 * fork, the child's call for what a child did, the prepare handler, the
 * lock taken against rank order ...) and every other frame as a related
 * location. A location with a source line from DWARF is a file (relative
 * to the working directory, uriBaseId SRCROOT, when it lies below it, so
 * that a repository checkout maps it) and a line; without one it is the
 * object file and the instruction's address in it. Each result carries the
 * finding's fingerprint (partialFingerprints), its baseline state when
 * --baseline was given, and, for suppressed findings, an external
 * suppression naming the rule. Written with src/json.c, so strings are
 * valid UTF-8 whatever the program's paths are.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forksafe.h"

static const struct {
    const char *kind, *name, *level, *text;
} rules[] = {
    {"fork-with-threads", "ForkWithThreads", "warning",
     "fork() while other threads were alive, and a child ran on"},
    {"lock-held-at-fork", "LockHeldAtFork", "warning",
     "a lock another thread held at the fork, which no prepare took"},
    {"child-deadlock", "ChildDeadlock", "error",
     "a child blocked on a lock or condition that only a thread the child "
     "does not have could release"},
    {"unsafe-call-in-child", "UnsafeCallInChild", "warning",
     "the child of a multi-threaded fork took a lock another thread of the "
     "parent used, which no fork handler took"},
    {"raw-atfork-handler", "RawAtforkHandler", "note",
     "a fork handler registered with pthread_atfork outside the forksafe "
     "registry"},
    {"lock-order-violation", "LockOrderViolation", "error",
     "a registered lock taken against rank order"},
    {"unregistered-shared-lock", "UnregisteredSharedLock", "note",
     "a lock shared by threads of a forking process that is not registered"},
    {"library-without-adapter", "LibraryWithoutAdapter", "warning",
     "a library with live state at a fork whose child ran on, without its "
     "forksafe adapter"},
    {"stdio-unflushed-at-fork", "StdioUnflushedAtFork", "warning",
     "output pending at a fork that the child wrote a second time"},
    {"fd-leak-on-exec", "FdLeakOnExec", "warning",
     "a descriptor without close-on-exec that survived into another "
     "program"},
    {"not-audited", "NotAudited", "error",
     "a program the audit could not see"},
    {"thread-census-failed", "ThreadCensusFailed", "error",
     "forks that could not count threads"},
    {"records-lost", "RecordsLost", "error",
     "records a process could not write"},
};
#define NRULES (sizeof rules / sizeof rules[0])

struct sink {
    FILE *out;
};

static void file_out(void *ctx, const char *s, size_t n)
{
    struct sink *k = ctx;
    fwrite(s, 1, n, k->out);
}

static int rule_index(const char *kind)
{
    for (size_t i = 0; i < NRULES; i++)
        if (strcmp(rules[i].kind, kind) == 0)
            return (int)i;
    return -1;
}

static const char *level(enum forksafe_sev s)
{
    return s == FS_SEV_ERROR ? "error" : s == FS_SEV_WARNING ? "warning"
                                                            : "note";
}

/* A path as a URI reference: unreserved characters and '/' as they are,
   everything else (spaces, '%', '#', bytes beyond ASCII) percent-encoded. */
static char *uri_path(const char *prefix, const char *path)
{
    size_t n = strlen(prefix) + 3 * strlen(path) + 1;
    char *u = forksafe__xrealloc(NULL, n), *w = u;
    w += snprintf(u, n, "%s", prefix);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || strchr("-._~/!$&'()*+,;=:@", *p))
            *w++ = (char)*p;
        else
            w += sprintf(w, "%%%02X", *p);
    }
    *w = '\0';
    return u;
}

static char cwd[4096];

/* A string member of a SARIF object that has no property bag of its own
   (a logical location's name, a message's text). SARIF 2.1.0 allows no
   member it does not define: a value that is not UTF-8 is written with
   U+FFFD, as in the JSON report, and its exact bytes go in the object's
   property bag as KEY_hex. */
static void sarif_str(struct forksafe__json *j, const char *key, const char *s)
{
    forksafe__json_key(j, key);
    forksafe__json_string(j, s);
    if (!s || forksafe__utf8_valid(s))
        return;
    char twin[64];
    snprintf(twin, sizeof twin, "%s_hex", key);
    forksafe__json_key(j, "properties");
    forksafe__json_begin_object(j);
    forksafe__json_key(j, twin);
    forksafe__json_hex(j, s);
    forksafe__json_end_object(j);
}

/* artifactLocation for a path: relative to SRCROOT (the working
   directory) when below it, else a file: URI. */
static void artifact(struct forksafe__json *j, const char *path)
{
    forksafe__json_key(j, "artifactLocation");
    forksafe__json_begin_object(j);
    size_t cl = strlen(cwd);
    char *u;
    if (cl > 1 && strncmp(path, cwd, cl) == 0 && path[cl] == '/') {
        u = uri_path("", path + cl + 1);
        forksafe__json_member_str(j, "uri", u);
        forksafe__json_member_str(j, "uriBaseId", "SRCROOT");
    } else if (path[0] == '/') {
        u = uri_path("file://", path);
        forksafe__json_member_str(j, "uri", u);
    } else {
        u = uri_path("", path);
        forksafe__json_member_str(j, "uri", u);
        forksafe__json_member_str(j, "uriBaseId", "SRCROOT");
    }
    free(u);
    forksafe__json_end_object(j);
}

/* The frame's description, for a related location. */
static void frame_message(const struct forksafe_frame *f, char *buf,
                          size_t len)
{
    int n = snprintf(buf, len, "%s", f->role);
    if (f->tid > 0 && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, ": thread %ld%s%s%s", f->tid,
                      f->thread_name ? " (" : "",
                      f->thread_name ? f->thread_name : "",
                      f->thread_name ? ")" : "");
    if (f->function && n >= 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, " in %s", f->function);
}

static void location(struct forksafe__json *j, const struct forksafe_frame *f,
                     int id, int with_message)
{
    forksafe__json_begin_object(j);
    if (id >= 0) {
        forksafe__json_key(j, "id");
        forksafe__json_int(j, id);
    }
    forksafe__json_key(j, "physicalLocation");
    forksafe__json_begin_object(j);
    if (f->file && f->line > 0) {
        artifact(j, f->file);
        forksafe__json_key(j, "region");
        forksafe__json_begin_object(j);
        forksafe__json_key(j, "startLine");
        forksafe__json_int(j, f->line);
        forksafe__json_end_object(j);
    } else {
        if (strcmp(f->object, "?") != 0 && strcmp(f->object, "[anon]") != 0)
            artifact(j, f->object);
        forksafe__json_key(j, "address");
        forksafe__json_begin_object(j);
        forksafe__json_key(j, "relativeAddress");
        forksafe__json_int(j, (long long)f->offset);
        forksafe__json_member_str(j, "kind", "instruction");
        forksafe__json_end_object(j);
    }
    forksafe__json_end_object(j);
    if (f->function) {
        forksafe__json_key(j, "logicalLocations");
        forksafe__json_begin_array(j);
        for (size_t i = 0; i < f->ninlined; i++) {
            forksafe__json_begin_object(j);
            sarif_str(j, "name", f->inlined[i].function);
            forksafe__json_member_str(j, "kind", "function");
            forksafe__json_end_object(j);
        }
        forksafe__json_begin_object(j);
        sarif_str(j, "name", f->function);
        forksafe__json_member_str(j, "kind", "function");
        forksafe__json_end_object(j);
        forksafe__json_end_array(j);
    }
    if (with_message) {
        char buf[512];
        frame_message(f, buf, sizeof buf);
        forksafe__json_key(j, "message");
        forksafe__json_begin_object(j);
        sarif_str(j, "text", buf);
        forksafe__json_end_object(j);
    }
    forksafe__json_end_object(j);
}

/* The frame that best shows where the hazard is, per kind. */
static size_t primary(const struct forksafe_finding *f)
{
    static const struct {
        const char *kind, *role;
    } pick[] = {
        {"fork-with-threads", "fork-call"},
        {"lock-held-at-fork", "fork-call"},
        {"child-deadlock", "lock-call"},
        {"unsafe-call-in-child", "call"},
        {"raw-atfork-handler", "prepare"},
        {"lock-order-violation", "taken"},
        {"unregistered-shared-lock", "first-lock"},
        {"library-without-adapter", "state-created"},
        {"stdio-unflushed-at-fork", "fork-call"},
    };
    for (size_t p = 0; p < sizeof pick / sizeof pick[0]; p++) {
        if (strcmp(pick[p].kind, f->kind) != 0)
            continue;
        for (size_t i = 0; i < f->nframes; i++)
            if (strcmp(f->frames[i].role, pick[p].role) == 0)
                return i;
    }
    return 0;
}

static void member_kv(struct forksafe__json *j, const struct forksafe_kv *kv)
{
    if (kv->type == FS_V_INT)
        forksafe__json_member_int(j, kv->key, strtoll(kv->val, NULL, 10));
    else if (kv->type == FS_V_BOOL)
        forksafe__json_member_bool(j, kv->key, strcmp(kv->val, "0") != 0);
    else
        forksafe__json_member_str(j, kv->key, kv->val);
}

static void result(struct forksafe__json *j, const struct forksafe_finding *f,
                   int baseline)
{
    forksafe__json_begin_object(j);
    forksafe__json_member_str(j, "ruleId", f->kind);
    int ri = rule_index(f->kind);
    if (ri >= 0) {
        forksafe__json_key(j, "ruleIndex");
        forksafe__json_int(j, ri);
    }
    forksafe__json_member_str(j, "level", level(f->sev));
    forksafe__json_key(j, "message");
    forksafe__json_begin_object(j);
    sarif_str(j, "text", f->message);
    forksafe__json_end_object(j);
    forksafe__json_key(j, "locations");
    forksafe__json_begin_array(j);
    size_t p = primary(f);
    if (f->nframes) {
        location(j, &f->frames[p], -1, 0);
    } else {
        /* No code location: the program the finding is about. */
        const char *prog = forksafe__kv_get(f->details, f->ndetails, "program");
        const char *path = prog ? prog : f->exe;
        forksafe__json_begin_object(j);
        forksafe__json_key(j, "physicalLocation");
        forksafe__json_begin_object(j);
        artifact(j, path && *path ? path : "?");
        forksafe__json_end_object(j);
        forksafe__json_end_object(j);
    }
    forksafe__json_end_array(j);
    if (f->nframes > 1) {
        forksafe__json_key(j, "relatedLocations");
        forksafe__json_begin_array(j);
        int id = 1;
        for (size_t i = 0; i < f->nframes; i++)
            if (i != p)
                location(j, &f->frames[i], id++, 1);
        forksafe__json_end_array(j);
    }
    forksafe__json_key(j, "partialFingerprints");
    forksafe__json_begin_object(j);
    forksafe__json_member_str(j, "forksafeFingerprint/v1", f->fingerprint);
    forksafe__json_end_object(j);
    if (baseline)
        forksafe__json_member_str(j, "baselineState",
                                  f->baseline == 2 ? "unchanged" : "new");
    if (f->suppressed_by) {
        char why[4200];
        snprintf(why, sizeof why, "forksafe-audit --suppressions %s:%d",
                 f->suppressed_by->file, f->suppressed_by->line);
        forksafe__json_key(j, "suppressions");
        forksafe__json_begin_array(j);
        forksafe__json_begin_object(j);
        forksafe__json_member_str(j, "kind", "external");
        forksafe__json_member_str(j, "status", "accepted");
        forksafe__json_member_str(j, "justification", why);
        forksafe__json_end_object(j);
        forksafe__json_end_array(j);
    }
    forksafe__json_key(j, "properties");
    forksafe__json_begin_object(j);
    forksafe__json_member_int(j, "pid", f->pid);
    forksafe__json_member_int(j, "ppid", f->ppid);
    forksafe__json_member_str(j, "exe", f->exe);
    forksafe__json_key(j, "details");
    forksafe__json_begin_object(j);
    for (size_t k = 0; k < f->ndetails; k++)
        member_kv(j, &f->details[k]);
    forksafe__json_end_object(j);
    forksafe__json_end_object(j);
    forksafe__json_end_object(j);
}

int forksafe__report_sarif(FILE *out, const struct forksafe_run *run)
{
    if (!getcwd(cwd, sizeof cwd))
        cwd[0] = '\0';
    struct sink k = {out};
    struct forksafe__json j;
    forksafe__json_init(&j, file_out, &k, 3);
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", FORKSAFE_VERSION_MAJOR,
             FORKSAFE_VERSION_MINOR, FORKSAFE_VERSION_PATCH);
    forksafe__json_begin_object(&j);
    forksafe__json_member_str(&j, "$schema",
                              "https://docs.oasis-open.org/sarif/sarif/v2.1.0/"
                              "errata01/os/schemas/sarif-schema-2.1.0.json");
    forksafe__json_member_str(&j, "version", "2.1.0");
    forksafe__json_key(&j, "runs");
    forksafe__json_begin_array(&j);
    forksafe__json_begin_object(&j);

    forksafe__json_key(&j, "tool");
    forksafe__json_begin_object(&j);
    forksafe__json_key(&j, "driver");
    forksafe__json_begin_object(&j);
    forksafe__json_member_str(&j, "name", "forksafe-audit");
    forksafe__json_member_str(&j, "version", version);
    forksafe__json_member_str(&j, "semanticVersion", version);
    forksafe__json_key(&j, "rules");
    forksafe__json_begin_array(&j);
    for (size_t i = 0; i < NRULES; i++) {
        forksafe__json_begin_object(&j);
        forksafe__json_member_str(&j, "id", rules[i].kind);
        forksafe__json_member_str(&j, "name", rules[i].name);
        forksafe__json_key(&j, "shortDescription");
        forksafe__json_begin_object(&j);
        forksafe__json_member_str(&j, "text", rules[i].text);
        forksafe__json_end_object(&j);
        forksafe__json_key(&j, "help");
        forksafe__json_begin_object(&j);
        forksafe__json_member_str(&j, "text",
                                  "When it fires and what to do: "
                                  "docs/audit.md, \"Findings\" (man "
                                  "forksafe-audit).");
        forksafe__json_end_object(&j);
        forksafe__json_key(&j, "defaultConfiguration");
        forksafe__json_begin_object(&j);
        forksafe__json_member_str(&j, "level", rules[i].level);
        forksafe__json_end_object(&j);
        forksafe__json_end_object(&j);
    }
    forksafe__json_end_array(&j);
    forksafe__json_end_object(&j);
    forksafe__json_end_object(&j);

    forksafe__json_key(&j, "invocations");
    forksafe__json_begin_array(&j);
    forksafe__json_begin_object(&j);
    forksafe__json_member_bool(&j, "executionSuccessful",
                               !forksafe__run_incomplete(run));
    forksafe__json_key(&j, "arguments");
    forksafe__json_begin_array(&j);
    for (char **a = run->argv; *a; a++)
        forksafe__json_string(&j, *a);
    forksafe__json_end_array(&j);
    forksafe__json_key(&j, "exitCode");
    forksafe__json_int(&j, run->status);
    if (run->signal) {
        forksafe__json_key(&j, "exitSignalNumber");
        forksafe__json_int(&j, run->signal);
    }
    forksafe__json_end_object(&j);
    forksafe__json_end_array(&j);

    if (cwd[0]) {
        char *u = uri_path("file://", cwd);
        size_t n = strlen(u);
        char *dir = forksafe__xrealloc(NULL, n + 2);
        snprintf(dir, n + 2, "%s%s", u, n && u[n - 1] == '/' ? "" : "/");
        forksafe__json_key(&j, "originalUriBaseIds");
        forksafe__json_begin_object(&j);
        forksafe__json_key(&j, "SRCROOT");
        forksafe__json_begin_object(&j);
        forksafe__json_member_str(&j, "uri", dir);
        forksafe__json_end_object(&j);
        forksafe__json_end_object(&j);
        free(dir);
        free(u);
    }

    forksafe__json_key(&j, "results");
    forksafe__json_begin_array(&j);
    for (size_t i = 0; i < run->nfindings; i++)
        result(&j, &run->findings[i], run->baseline_path != NULL);
    for (size_t i = 0; i < run->nsuppressed; i++)
        result(&j, &run->suppressed[i], run->baseline_path != NULL);
    forksafe__json_end_array(&j);

    forksafe__json_end_object(&j);
    forksafe__json_end_array(&j);
    forksafe__json_end_object(&j);
    fputc('\n', out);
    fflush(out);
    return ferror(out) ? (errno ? errno : EIO) : 0;
}
