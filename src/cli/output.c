/* SPDX-License-Identifier: MIT */
/*
 * output.c: the two views of a finished audit. The text report goes to
 * stderr for people; the JSON document (schema "forksafe-audit", version
 * FORKSAFE_AUDIT_SCHEMA_VERSION, described in docs/audit.md) is for tools.
 * Both list findings in the same order with the same messages.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "forksafe.h"

static void frame_text(FILE *out, const struct forksafe_frame *f)
{
    fprintf(out, "      %-18s", f->role);
    if (f->tid)
        fprintf(out, " thread %ld%s%s%s", f->tid, f->thread_name ? " \"" : "",
                f->thread_name ? f->thread_name : "",
                f->thread_name ? "\"" : "");
    if (f->function)
        fprintf(out, " %s+0x%llx", f->function,
                (unsigned long long)f->func_delta);
    else if (strcmp(f->role, "thread-start") == 0 &&
             strcmp(f->object, "?") == 0)
        fprintf(out, " (start routine unknown: thread not created by "
                     "pthread_create after the audit started)");
    else
        fprintf(out, " ?");
    if (strcmp(f->object, "?") != 0)
        fprintf(out, " (%s+0x%llx)", f->object, (unsigned long long)f->offset);
    fputc('\n', out);
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
    if (f->function)
        fprintf(out, "%s+0x%llx", f->function,
                (unsigned long long)f->func_delta);
    else
        fputc('?', out);
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
    fprintf(out, "\n%s: %s  pid %ld (%s)\n", forksafe__sev_name(first->sev),
            first->kind, first->pid, first->exe);
    if (unsafe)
        fprintf(out,
                "    the child of a multi-threaded parent called %zu "
                "function%s that %s not async-signal-safe before exec "
                "or _exit (first call per site):\n",
                n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
    else
        fprintf(out,
                "    %zu lock%s used by two or more threads %s not "
                "registered with forksafe:\n",
                n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
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
            fprintf(out, "      %-19s ", fn ? fn : "?");
            if (f->nframes)
                site_text(out, &f->frames[0]);
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

void forksafe__report_text(FILE *out, const struct forksafe_run *run)
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
    fprintf(out,
            "\nforksafe-audit: %zu finding%s (%zu error%s, %zu "
            "warning%s, %zu info) from %zu process%s\n",
            run->nfindings, run->nfindings == 1 ? "" : "s", nsev[2],
            nsev[2] == 1 ? "" : "s", nsev[1], nsev[1] == 1 ? "" : "s", nsev[0],
            npids, npids == 1 ? "" : "es");
    for (size_t i = 0; i < run->nfindings; i++) {
        const struct forksafe_finding *f = &run->findings[i];
        if (grouped(f->kind)) {
            group_text(out, run, i);
            continue;
        }
        fprintf(out, "\n%s: %s  pid %ld (%s)\n    %s\n",
                forksafe__sev_name(f->sev), f->kind, f->pid, f->exe,
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
    if (run->signal)
        fprintf(out, "\nforksafe-audit: program killed by signal %d\n",
                run->signal);
    else
        fprintf(out, "\nforksafe-audit: program exited with status %d\n",
                run->status);
}

/* ------------------------------------------------------------ JSON */

static void jstr(FILE *out, const char *s)
{
    if (!s) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void jkv(FILE *out, const struct forksafe_kv *kv, size_t n, int numeric)
{
    fputc('{', out);
    for (size_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", out);
        jstr(out, kv[i].key);
        fputs(": ", out);
        char *end;
        long v = strtol(kv[i].val, &end, 10);
        if (numeric && *kv[i].val && !*end)
            fprintf(out, "%ld", v);
        else
            jstr(out, kv[i].val);
    }
    fputc('}', out);
}

int forksafe__report_json(FILE *out, const struct forksafe_run *run)
{
    size_t nsev[3] = {0, 0, 0};
    for (size_t i = 0; i < run->nfindings; i++)
        nsev[run->findings[i].sev]++;
    fprintf(out,
            "{\n  \"schema\": \"forksafe-audit\",\n"
            "  \"schema_version\": %d,\n"
            "  \"tool_version\": \"%d.%d.%d\",\n  \"command\": [",
            FORKSAFE_AUDIT_SCHEMA_VERSION, FORKSAFE_VERSION_MAJOR,
            FORKSAFE_VERSION_MINOR, FORKSAFE_VERSION_PATCH);
    for (char **a = run->argv; *a; a++) {
        if (a != run->argv)
            fputs(", ", out);
        jstr(out, *a);
    }
    fprintf(out, "],\n  \"exit_status\": %d,\n  \"signal\": ", run->status);
    if (run->signal)
        fprintf(out, "%d", run->signal);
    else
        fputs("null", out);
    fputs(",\n  \"findings\": [", out);
    for (size_t i = 0; i < run->nfindings; i++) {
        const struct forksafe_finding *f = &run->findings[i];
        fprintf(out, "%s\n    {\"kind\": ", i ? "," : "");
        jstr(out, f->kind);
        fputs(", \"severity\": ", out);
        jstr(out, forksafe__sev_name(f->sev));
        fprintf(out, ", \"pid\": %ld, \"ppid\": %ld, \"tid\": %ld, \"exe\": ",
                f->pid, f->ppid, f->tid);
        jstr(out, f->exe);
        fputs(",\n     \"message\": ", out);
        jstr(out, f->message);
        fputs(",\n     \"frames\": [", out);
        for (size_t k = 0; k < f->nframes; k++) {
            const struct forksafe_frame *fr = &f->frames[k];
            fprintf(out, "%s\n       {\"role\": ", k ? "," : "");
            jstr(out, fr->role);
            fputs(", \"tid\": ", out);
            if (fr->tid)
                fprintf(out, "%ld", fr->tid);
            else
                fputs("null", out);
            fputs(", \"thread_name\": ", out);
            jstr(out, fr->thread_name);
            fputs(", \"function\": ", out);
            jstr(out, fr->function);
            if (fr->function)
                fprintf(out, ", \"function_offset\": \"0x%llx\"",
                        (unsigned long long)fr->func_delta);
            else
                fputs(", \"function_offset\": null", out);
            fputs(", \"object\": ", out);
            jstr(out, fr->object);
            fprintf(out, ", \"offset\": \"0x%llx\"}",
                    (unsigned long long)fr->offset);
        }
        fputs("],\n     \"details\": ", out);
        jkv(out, f->details, f->ndetails, 0);
        fputc('}', out);
    }
    fputs("\n  ],\n  \"processes\": [", out);
    for (size_t i = 0; i < run->nprocs; i++) {
        const struct forksafe_proc *p = &run->procs[i];
        fprintf(out,
                "%s\n    {\"pid\": %ld, \"ppid\": %ld, \"exe\": ", i ? "," : "",
                p->pid, p->ppid);
        jstr(out, p->exe);
        fputs(", \"start\": ", out);
        jstr(out, p->start);
        fputs(", \"coverage\": ", out);
        if (p->summary) {
            /* The pid is already a member of the process object. */
            struct forksafe_kv *kv = p->summary;
            size_t n = p->nsummary;
            if (n && strcmp(kv[0].key, "pid") == 0) {
                kv++;
                n--;
            }
            jkv(out, kv, n, 1);
        } else {
            fputs("null", out);
        }
        fputc('}', out);
    }
    fprintf(out,
            "\n  ],\n  \"summary\": {\"findings\": %zu, \"errors\": %zu, "
            "\"warnings\": %zu, \"infos\": %zu}\n}\n",
            run->nfindings, nsev[2], nsev[1], nsev[0]);
    fflush(out);
    return ferror(out) ? (errno ? errno : EIO) : 0;
}
