/* SPDX-License-Identifier: MIT */
/*
 * output.c: the two views of a finished audit. The text report goes to
 * stderr for people; the JSON document (schema "forksafe-audit", version
 * FORKSAFE_AUDIT_SCHEMA_VERSION, docs/forksafe.schema.json, written with
 * src/json.c) is for tools. Both list findings in the same order with the
 * same messages.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>

#include "forksafe.h"

/* A source position: the file's base name and the line. */
static void where_text(FILE *out, const char *file, int line)
{
    const char *b = file ? strrchr(file, '/') : NULL;
    fprintf(out, "%s:%d", b ? b + 1 : file, line);
}

/* Functions inlined at a frame's address, on lines of their own. */
static void inlined_text(FILE *out, const struct forksafe_frame *f)
{
    for (size_t i = 0; i < f->ninlined; i++) {
        const struct forksafe_inline *in = &f->inlined[i];
        fprintf(out, "%25s%s inlined into %s", "", in->function,
                i + 1 < f->ninlined ? f->inlined[i + 1].function
                : f->function       ? f->function
                                    : "?");
        if (in->call_file) {
            fputs(" at ", out);
            where_text(out, in->call_file, in->call_line);
        }
        fputc('\n', out);
    }
}

static void frame_text(FILE *out, const struct forksafe_frame *f)
{
    fprintf(out, "      %-18s", f->role);
    if (f->tid)
        fprintf(out, " thread %ld%s%s%s", f->tid, f->thread_name ? " \"" : "",
                f->thread_name ? f->thread_name : "",
                f->thread_name ? "\"" : "");
    if (f->ninlined)
        fprintf(out, " %s", f->inlined[0].function);
    else if (f->function)
        fprintf(out, " %s+0x%llx", f->function,
                (unsigned long long)f->func_delta);
    else if (strcmp(f->role, "thread-start") == 0 &&
             strcmp(f->object, "?") == 0)
        fprintf(out, " (start routine unknown: thread not created by "
                     "pthread_create after the audit started)");
    else
        fprintf(out, " ?");
    if (f->file && f->line) {
        fputs(" at ", out);
        where_text(out, f->file, f->line);
    }
    if (strcmp(f->object, "?") != 0)
        fprintf(out, " (%s+0x%llx)", f->object, (unsigned long long)f->offset);
    fputc('\n', out);
    inlined_text(out, f);
}

/* Kinds that come in numbers (one per call site or per lock): the text
   report shows each process's findings of such a kind as one block with a
   line per finding. The JSON keeps one object per finding. */
static int grouped(const char *kind)
{
    return strcmp(kind, "unsafe-call-in-child") == 0 ||
           strcmp(kind, "unregistered-shared-lock") == 0;
}

#define GROUP_LINES 12

static void site_text(FILE *out, const struct forksafe_frame *f)
{
    if (f->ninlined)
        fputs(f->inlined[0].function, out);
    else if (f->function)
        fprintf(out, "%s+0x%llx", f->function,
                (unsigned long long)f->func_delta);
    else
        fputc('?', out);
    if (f->file && f->line) {
        fputs(" at ", out);
        where_text(out, f->file, f->line);
    }
    if (strcmp(f->object, "?") != 0)
        fprintf(out, " (%s+0x%llx)", f->object, (unsigned long long)f->offset);
}

static void group_text(FILE *out, const struct forksafe_run *run, size_t at)
{
    const struct forksafe_finding *first = &run->findings[at];
    for (size_t i = 0; i < at; i++)
        if (run->findings[i].pid == first->pid &&
            strcmp(run->findings[i].kind, first->kind) == 0)
            return; /* printed with the first of its group */
    size_t n = 0;
    for (size_t i = at; i < run->nfindings; i++)
        n += run->findings[i].pid == first->pid &&
             strcmp(run->findings[i].kind, first->kind) == 0;
    int unsafe = strcmp(first->kind, "unsafe-call-in-child") == 0;
    fprintf(out, "\n%s: %s  pid %ld (%s)  [%zu finding%s]\n",
            forksafe__sev_name(first->sev), first->kind, first->pid,
            first->exe, n, n == 1 ? "" : "s");
    if (unsafe)
        fprintf(out,
                "    the child of a multi-threaded parent took %zu lock%s "
                "that another thread of the parent used and no fork handler "
                "took (first call per site; had one been held at the fork, "
                "the child would have blocked forever):\n",
                n, n == 1 ? "" : "s");
    else
        fprintf(out,
                "    %zu lock%s used by two or more threads %s not "
                "registered with forksafe (a coverage gap: no child that ran "
                "on blocked on %s):\n",
                n, n == 1 ? "" : "s", n == 1 ? "is" : "are",
                n == 1 ? "it" : "them");
    size_t shown = 0;
    for (size_t i = at; i < run->nfindings; i++) {
        const struct forksafe_finding *f = &run->findings[i];
        if (f->pid != first->pid || strcmp(f->kind, first->kind) != 0)
            continue;
        if (++shown > GROUP_LINES)
            continue;
        if (unsafe) {
            const char *fn =
                forksafe__kv_get(f->details, f->ndetails, "function");
            const char *lock = forksafe__kv_get(f->details, f->ndetails, "lock");
            const char *kids =
                forksafe__kv_get(f->details, f->ndetails, "children");
            fprintf(out, "      %-22s %s at ", fn ? fn : "?",
                    lock ? lock : "?");
            if (f->nframes)
                site_text(out, &f->frames[0]);
            for (size_t k = 0; k < f->nframes; k++)
                if (strcmp(f->frames[k].role, "other-thread-lock") == 0 &&
                    f->frames[k].tid)
                    fprintf(out, "; used by thread %ld", f->frames[k].tid);
            if (kids && strcmp(kids, "1"))
                fprintf(out, "; %s children", kids);
        } else {
            const char *kind =
                forksafe__kv_get(f->details, f->ndetails, "lock_kind");
            const char *lock =
                forksafe__kv_get(f->details, f->ndetails, "lock");
            fprintf(out, "      %s %s, threads", kind ? kind : "lock",
                    lock ? lock : "?");
            for (size_t k = 0; k < f->nframes; k++)
                fprintf(out, " %ld", f->frames[k].tid);
            fputs(", first at ", out);
            if (f->nframes)
                site_text(out, &f->frames[0]);
        }
        fputc('\n', out);
    }
    if (shown > GROUP_LINES)
        fprintf(out, "      ... and %zu more (all are in the JSON report)\n",
                shown - GROUP_LINES);
}

static long sum_long(const struct forksafe_proc *p, const char *k)
{
    const char *v = forksafe__kv_get(p->summary, p->nsummary, k);
    return v ? strtol(v, NULL, 10) : 0;
}

static int proc_interesting(const struct forksafe_run *run,
                            const struct forksafe_proc *p)
{
    if (!p->summary)
        return 0;
    if (sum_long(p, "forks") || sum_long(p, "shared_locks") ||
        sum_long(p, "atfork_raw") || sum_long(p, "atfork_registry") ||
        sum_long(p, "adapters_needed"))
        return 1;
    for (size_t i = 0; i < run->nfindings; i++)
        if (run->findings[i].pid == p->pid)
            return 1;
    return 0;
}

static void report_text(FILE *out, const struct forksafe_run *run);

/* Copy the text report to out with what a terminal should not get raw
   (control characters other than newline, bytes that are not UTF-8: a
   thread name or a path can hold anything) written as \xHH. */
static void put_safe(FILE *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        if (*p == '\n' || (*p >= 0x20 && *p < 0x7f)) {
            fputc(*p++, out);
            continue;
        }
        /* A valid multi-byte sequence goes through as it is. */
        char one[8] = {0};
        size_t k = 0;
        while (k < 4 && p + k < end) {
            one[k] = (char)p[k];
            k++;
            if (forksafe__utf8_valid(one) && (unsigned char)one[0] >= 0x80)
                break;
        }
        if ((unsigned char)one[0] >= 0x80 && forksafe__utf8_valid(one)) {
            fwrite(p, 1, k, out);
            p += k;
        } else {
            fprintf(out, "\\x%02x", *p++);
        }
    }
}

void forksafe__report_text(FILE *out, const struct forksafe_run *run)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) {
        report_text(out, run);
        return;
    }
    report_text(m, run);
    fclose(m);
    put_safe(out, buf, len);
    free(buf);
    fflush(out);
}

static void report_text(FILE *out, const struct forksafe_run *run)
{
    size_t nsev[3] = {0, 0, 0};
    for (size_t i = 0; i < run->nfindings; i++)
        nsev[run->findings[i].sev]++;
    fprintf(out, "forksafe-audit:");
    for (char **a = run->argv; *a; a++)
        fprintf(out, " %s", *a);
    size_t npids = 0;
    for (size_t i = 0; i < run->nprocs; i++) {
        size_t k = 0;
        while (k < i && run->procs[k].pid != run->procs[i].pid)
            k++;
        npids += k == i;
    }
    /* Program images that loaded the interposer (the run page counts them
       all, quiet ones included); the pids that wrote records otherwise. */
    long seen = run->images ? run->images : (long)npids;
    fprintf(out,
            "\nforksafe-audit: %zu finding%s (%zu error%s, %zu "
            "warning%s, %zu info) from %ld process%s audited",
            run->nfindings, run->nfindings == 1 ? "" : "s", nsev[2],
            nsev[2] == 1 ? "" : "s", nsev[1], nsev[1] == 1 ? "" : "s", nsev[0],
            seen, seen == 1 ? "" : "es");
    if (run->not_audited)
        fprintf(out, ", %ld not audited", run->not_audited);
    if (run->nsuppressed)
        fprintf(out, "; %zu more suppressed", run->nsuppressed);
    if (run->baseline_path)
        fprintf(out, "; %ld in the baseline, %zu new", run->baselined,
                run->nfindings - (size_t)run->baselined);
    fputc('\n', out);
    if (forksafe__run_incomplete(run)) {
        const char *why[4];
        int n = 0;
        if (run->not_audited)
            why[n++] = "some processes were not audited";
        if (run->records_lost)
            why[n++] = "records were lost";
        if (run->census_failed)
            why[n++] = "threads could not be counted at some forks";
        if (run->interrupted_by)
            why[n++] = "the audit was interrupted";
        fprintf(out, "forksafe-audit: the report is incomplete: ");
        for (int i = 0; i < n; i++)
            fprintf(out, "%s%s", i ? "; " : "", why[i]);
        fputs(".\n", out);
    }
    for (size_t i = 0; i < run->nfindings; i++) {
        const struct forksafe_finding *f = &run->findings[i];
        if (grouped(f->kind)) {
            group_text(out, run, i);
            continue;
        }
        fprintf(out, "\n%s: %s  pid %ld (%s)%s\n    %s\n",
                forksafe__sev_name(f->sev), f->kind, f->pid, f->exe,
                f->baseline == 2   ? "  [in the baseline]"
                : f->baseline == 1 ? "  [new]"
                                   : "",
                f->message);
        for (size_t k = 0; k < f->nframes; k++)
            frame_text(out, &f->frames[k]);
    }
    int header = 0;
    for (size_t i = 0; i < run->nprocs; i++) {
        const struct forksafe_proc *p = &run->procs[i];
        if (!proc_interesting(run, p))
            continue;
        if (!header++)
            fprintf(out, "\ncoverage:\n");
        fprintf(
            out,
            "  pid %ld (%s): %ld fork%s; %ld lock%s shared across "
            "threads, %ld registered; atfork handlers: %ld raw, %ld "
            "through the registry; adapters: %ld present of %ld "
            "needed%s\n",
            p->pid, p->exe, sum_long(p, "forks"),
            sum_long(p, "forks") == 1 ? "" : "s", sum_long(p, "shared_locks"),
            sum_long(p, "shared_locks") == 1 ? "" : "s",
            sum_long(p, "registered_shared_locks"), sum_long(p, "atfork_raw"),
            sum_long(p, "atfork_registry"), sum_long(p, "adapters_present"),
            sum_long(p, "adapters_needed"),
            sum_long(p, "registry_available") ? ""
                                              : " (libforksafe not loaded)");
    }
    int daemons = 0;
    for (size_t i = 0; i < run->nprocs; i++) {
        const struct forksafe_proc *p = &run->procs[i];
        if (!p->still_running)
            continue;
        if (!daemons++)
            fprintf(out, "\nstill running when the audit ended (what they do "
                         "from now on is not recorded):\n");
        fprintf(out, "  pid %ld (%s)\n", p->pid, p->exe);
    }
    if (run->nsuppressed) {
        fprintf(out, "\nsuppressed (%zu finding%s):\n", run->nsuppressed,
                run->nsuppressed == 1 ? "" : "s");
        for (size_t i = 0; i < run->nsupps; i++)
            if (run->supps[i].hits)
                fprintf(out, "  %s:%d  %s: %ld\n", run->supps[i].file,
                        run->supps[i].line, run->supps[i].kind,
                        run->supps[i].hits);
    }
    if (run->interrupted_by)
        fprintf(out,
                "\nforksafe-audit: received signal %d (%s), forwarded it to "
                "the program, and reports what was seen until then\n",
                run->interrupted_by, strsignal(run->interrupted_by));
    if (run->signal)
        fprintf(out, "\nforksafe-audit: program killed by signal %d\n",
                run->signal);
    else
        fprintf(out, "\nforksafe-audit: program exited with status %d\n",
                run->status);
}

/* ------------------------------------------------------------ JSON */

struct sink {
    FILE *out;
};

static void file_out(void *ctx, const char *s, size_t n)
{
    struct sink *k = ctx;
    fwrite(s, 1, n, k->out);
}

/* A typed record field as a JSON member (strings with their _hex twin when
   they are not UTF-8). */
static void member_kv(struct forksafe__json *j, const struct forksafe_kv *kv)
{
    if (kv->type == FS_V_INT)
        forksafe__json_member_int(j, kv->key, strtoll(kv->val, NULL, 10));
    else if (kv->type == FS_V_BOOL)
        forksafe__json_member_bool(j, kv->key, strcmp(kv->val, "0") != 0);
    else
        forksafe__json_member_str(j, kv->key, kv->val);
}

static void frame_json(struct forksafe__json *j,
                       const struct forksafe_frame *fr)
{
    forksafe__json_begin_object(j);
    forksafe__json_member_str(j, "role", fr->role);
    forksafe__json_key(j, "tid");
    if (fr->tid > 0)
        forksafe__json_int(j, fr->tid);
    else
        forksafe__json_null(j);
    forksafe__json_member_str(j, "thread_name", fr->thread_name);
    forksafe__json_member_str(j, "function", fr->function);
    forksafe__json_key(j, "function_offset");
    if (fr->function)
        forksafe__json_address(j, (uintptr_t)fr->func_delta);
    else
        forksafe__json_null(j);
    forksafe__json_member_str(j, "object", fr->object);
    forksafe__json_key(j, "offset");
    forksafe__json_address(j, (uintptr_t)fr->offset);
    forksafe__json_member_str(j, "file", fr->file);
    forksafe__json_key(j, "line");
    if (fr->file && fr->line > 0)
        forksafe__json_int(j, fr->line);
    else
        forksafe__json_null(j);
    if (fr->ninlined) {
        forksafe__json_key(j, "inlined");
        forksafe__json_begin_array(j);
        for (size_t i = 0; i < fr->ninlined; i++) {
            const struct forksafe_inline *in = &fr->inlined[i];
            forksafe__json_begin_object(j);
            forksafe__json_member_str(j, "function", in->function);
            forksafe__json_member_str(j, "call_file", in->call_file);
            forksafe__json_key(j, "call_line");
            if (in->call_file && in->call_line > 0)
                forksafe__json_int(j, in->call_line);
            else
                forksafe__json_null(j);
            forksafe__json_end_object(j);
        }
        forksafe__json_end_array(j);
    }
    forksafe__json_end_object(j);
}

static void finding_json(struct forksafe__json *j,
                         const struct forksafe_finding *f)
{
    forksafe__json_begin_object(j);
    forksafe__json_member_str(j, "kind", f->kind);
    forksafe__json_member_str(j, "severity", forksafe__sev_name(f->sev));
    forksafe__json_member_int(j, "pid", f->pid);
    forksafe__json_member_int(j, "ppid", f->ppid);
    forksafe__json_member_int(j, "tid", f->tid);
    forksafe__json_member_str(j, "exe", f->exe);
    forksafe__json_member_str(j, "message", f->message);
    forksafe__json_key(j, "frames");
    forksafe__json_begin_array(j);
    for (size_t k = 0; k < f->nframes; k++)
        frame_json(j, &f->frames[k]);
    forksafe__json_end_array(j);
    forksafe__json_key(j, "details");
    forksafe__json_begin_object(j);
    for (size_t k = 0; k < f->ndetails; k++)
        member_kv(j, &f->details[k]);
    forksafe__json_end_object(j);
    forksafe__json_member_str(j, "fingerprint", f->fingerprint);
    if (f->baseline)
        forksafe__json_member_str(j, "baseline",
                                  f->baseline == 2 ? "unchanged" : "new");
    if (f->suppressed_by) {
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", f->suppressed_by->file,
                 f->suppressed_by->line);
        forksafe__json_member_str(j, "suppressed_by", where);
    }
    forksafe__json_end_object(j);
}

static void process_json(struct forksafe__json *j,
                         const struct forksafe_proc *p)
{
    forksafe__json_begin_object(j);
    forksafe__json_member_int(j, "pid", p->pid);
    forksafe__json_member_int(j, "ppid", p->ppid);
    forksafe__json_member_str(j, "exe", p->exe);
    forksafe__json_member_str(j, "start", p->start); /* NULL: null */
    forksafe__json_member_bool(j, "still_running", p->still_running);
    forksafe__json_key(j, "coverage");
    if (p->summary) {
        forksafe__json_begin_object(j);
        /* The pid is already a member of the process object. */
        for (size_t k = 0; k < p->nsummary; k++)
            if (strcmp(p->summary[k].key, "pid") != 0)
                member_kv(j, &p->summary[k]);
        forksafe__json_end_object(j);
    } else {
        forksafe__json_null(j);
    }
    forksafe__json_end_object(j);
}

int forksafe__report_json(FILE *out, const struct forksafe_run *run)
{
    size_t nsev[3] = {0, 0, 0};
    for (size_t i = 0; i < run->nfindings; i++)
        nsev[run->findings[i].sev]++;
    struct sink k = {out};
    struct forksafe__json j;
    forksafe__json_init(&j, file_out, &k, 2);
    forksafe__json_begin_object(&j);
    forksafe__json_header(&j, "forksafe-audit");
    forksafe__json_key(&j, "command");
    forksafe__json_begin_array(&j);
    int bad = 0;
    for (char **a = run->argv; *a; a++) {
        forksafe__json_string(&j, *a);
        bad |= !forksafe__utf8_valid(*a);
    }
    forksafe__json_end_array(&j);
    if (bad) {
        forksafe__json_key(&j, "command_hex");
        forksafe__json_begin_array(&j);
        for (char **a = run->argv; *a; a++)
            if (forksafe__utf8_valid(*a))
                forksafe__json_null(&j);
            else
                forksafe__json_hex(&j, *a);
        forksafe__json_end_array(&j);
    }
    forksafe__json_member_int(&j, "exit_status", run->status);
    forksafe__json_key(&j, "signal");
    if (run->signal)
        forksafe__json_int(&j, run->signal);
    else
        forksafe__json_null(&j);
    forksafe__json_key(&j, "interrupted_by");
    if (run->interrupted_by)
        forksafe__json_int(&j, run->interrupted_by);
    else
        forksafe__json_null(&j);
    forksafe__json_member_bool(&j, "complete", !forksafe__run_incomplete(run));
    forksafe__json_key(&j, "findings");
    forksafe__json_begin_array(&j);
    for (size_t i = 0; i < run->nfindings; i++)
        finding_json(&j, &run->findings[i]);
    forksafe__json_end_array(&j);
    forksafe__json_key(&j, "suppressed");
    forksafe__json_begin_array(&j);
    for (size_t i = 0; i < run->nsuppressed; i++)
        finding_json(&j, &run->suppressed[i]);
    forksafe__json_end_array(&j);
    forksafe__json_key(&j, "processes");
    forksafe__json_begin_array(&j);
    for (size_t i = 0; i < run->nprocs; i++)
        process_json(&j, &run->procs[i]);
    forksafe__json_end_array(&j);
    forksafe__json_key(&j, "summary");
    forksafe__json_begin_object(&j);
    forksafe__json_member_int(&j, "findings", (long long)run->nfindings);
    forksafe__json_member_int(&j, "errors", (long long)nsev[2]);
    forksafe__json_member_int(&j, "warnings", (long long)nsev[1]);
    forksafe__json_member_int(&j, "infos", (long long)nsev[0]);
    forksafe__json_member_int(&j, "processes_audited", run->images);
    forksafe__json_member_int(&j, "processes_not_audited", run->not_audited);
    forksafe__json_member_int(&j, "records_lost", run->records_lost);
    forksafe__json_member_int(&j, "suppressed", (long long)run->nsuppressed);
    forksafe__json_key(&j, "baselined");
    if (run->baseline_path)
        forksafe__json_int(&j, run->baselined);
    else
        forksafe__json_null(&j);
    forksafe__json_end_object(&j);
    forksafe__json_end_object(&j);
    fflush(out);
    return ferror(out) ? (errno ? errno : EIO) : 0;
}
