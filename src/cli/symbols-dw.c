/* SPDX-License-Identifier: MIT */
/*
 * symbols-dw.c: DWARF symbolization with elfutils' libdwfl: for (object,
 * ELF virtual address), the function from the symbol tables (the object's
 * or its debug file's), the source file and line, and the functions
 * inlined at that address, innermost first, each with the place it was
 * inlined at. Debug files are found as libdwfl's standard callbacks find
 * them: by build-id (.build-id/xx/yyyy.debug) or .gnu_debuglink, under
 * /usr/lib/debug and FORKSAFE_AUDIT_DEBUG_DIRS (a colon-separated list of
 * more directories, searched first).
 *
 * Each object gets a Dwfl session of its own, placed at address 0, so that
 * an address is its ELF virtual address. A frame that is a return address
 * (every role but thread-start and the atfork handler roles) is looked up
 * one byte earlier, inside the call instruction, as addr2line users do, so
 * that the line is the call's and not the next statement's.
 *
 * Built only when the Configure check finds libdw (HAVE_LIBDW); otherwise
 * forksafe__symbols_resolve_dw() says no and symbols.c's ELF reader is
 * used.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifndef HAVE_LIBDW

int forksafe__symbols_resolve_dw(struct forksafe_frame *f, uint64_t vaddr)
{
    (void)f;
    (void)vaddr;
    return -1;
}

void forksafe__symbols_free_dw(void)
{
}

const char *forksafe__symbols_backend(void)
{
    return "elf";
}

#else

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>

struct dwobj {
    char *path;
    Dwfl *dwfl;
    Dwfl_Module *mod;
};

static struct dwobj *dwobjs;
static size_t ndwobjs;
static char *debuginfo_path;

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

const char *forksafe__symbols_backend(void)
{
    return "libdw";
}

static struct dwobj *dw_load(const char *path)
{
    for (size_t i = 0; i < ndwobjs; i++)
        if (strcmp(dwobjs[i].path, path) == 0)
            return &dwobjs[i];
    if (!debuginfo_path) {
        const char *extra = getenv("FORKSAFE_AUDIT_DEBUG_DIRS");
        size_t n = (extra ? strlen(extra) : 0) + 64;
        debuginfo_path = forksafe__xrealloc(NULL, n);
        snprintf(debuginfo_path, n, "-%s%s:.debug:/usr/lib/debug",
                 extra && *extra ? extra : "", extra && *extra ? ":" : "");
    }
    dwobjs = forksafe__xrealloc(dwobjs, (ndwobjs + 1) * sizeof *dwobjs);
    struct dwobj *o = &dwobjs[ndwobjs++];
    memset(o, 0, sizeof *o);
    o->path = forksafe__xstrdup(path);
    o->dwfl = dwfl_begin(&callbacks);
    if (!o->dwfl)
        return o;
    dwfl_report_begin(o->dwfl);
    const char *base = strrchr(path, '/');
    o->mod = dwfl_report_elf(o->dwfl, base ? base + 1 : path, path, -1, 0,
                             false);
    if (dwfl_report_end(o->dwfl, NULL, NULL) != 0)
        o->mod = NULL;
    return o;
}

/* Roles whose address is a function's entry, not a return address. */
static int entry_role(const char *role)
{
    return strcmp(role, "thread-start") == 0 || strcmp(role, "prepare") == 0 ||
           strcmp(role, "parent") == 0 || strcmp(role, "child") == 0;
}

/* The file name of index idx in the CU's line table. */
static const char *cu_file(Dwarf_Die *cu, Dwarf_Word idx)
{
    Dwarf_Files *files;
    size_t n;
    if (dwarf_getsrcfiles(cu, &files, &n) != 0 || idx >= n)
        return NULL;
    return dwarf_filesrc(files, idx, NULL, NULL);
}

/* A relative source path is relative to the CU's compilation
   directory: made absolute, so that reports and SARIF can place it. */
static char *absolute(Dwarf_Die *cu, const char *file)
{
    if (!file)
        return NULL;
    Dwarf_Attribute a;
    const char *dir = cu ? dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &a))
                         : NULL;
    if (file[0] == '/' || !dir || !*dir)
        return forksafe__xstrdup(file);
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = forksafe__xrealloc(NULL, n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static void add_inline(struct forksafe_frame *f, const char *fn,
                       const char *file, int line)
{
    f->inlined = forksafe__xrealloc(f->inlined,
                                    (f->ninlined + 1) * sizeof *f->inlined);
    struct forksafe_inline *in = &f->inlined[f->ninlined++];
    in->function = forksafe__xstrdup(fn ? fn : "?");
    in->call_file = (char *)file; /* taken over */
    in->call_line = line;
}

static void inlined(struct forksafe_frame *f, Dwfl_Module *mod, Dwarf_Addr pc)
{
    Dwarf_Addr bias = 0;
    Dwarf_Die *cu = dwfl_module_addrdie(mod, pc, &bias);
    if (!cu)
        return;
    Dwarf_Die *scopes = NULL;
    int n = dwarf_getscopes(cu, pc - bias, &scopes);
    for (int i = 0; i < n; i++) {
        Dwarf_Die *s = &scopes[i];
        int tag = dwarf_tag(s);
        if (tag == DW_TAG_subprogram)
            break;
        if (tag != DW_TAG_inlined_subroutine)
            continue;
        Dwarf_Attribute a;
        Dwarf_Word file = 0, line = 0;
        const char *callf = NULL;
        if (dwarf_formudata(dwarf_attr(s, DW_AT_call_file, &a), &file) == 0)
            callf = cu_file(cu, file);
        dwarf_formudata(dwarf_attr(s, DW_AT_call_line, &a), &line);
        add_inline(f, dwarf_diename(s), absolute(cu, callf), (int)line);
    }
    free(scopes);
    /* A function "inlined into itself" is how GCC describes a part of a
       function it split off or specialised: not an inlined call. */
    size_t w = 0;
    for (size_t i = 0; i < f->ninlined; i++) {
        const char *outer = i + 1 < f->ninlined ? f->inlined[i + 1].function
                                                : f->function;
        if (outer && strcmp(f->inlined[i].function, outer) == 0 &&
            i + 1 == f->ninlined) {
            free(f->inlined[i].function);
            free(f->inlined[i].call_file);
            continue;
        }
        f->inlined[w++] = f->inlined[i];
    }
    f->ninlined = w;
}

int forksafe__symbols_resolve_dw(struct forksafe_frame *f, uint64_t vaddr)
{
    struct dwobj *o = dw_load(f->object);
    if (!o || !o->mod)
        return -1;
    GElf_Off off = 0;
    GElf_Sym sym;
    const char *name =
        dwfl_module_addrinfo(o->mod, vaddr, &off, &sym, NULL, NULL, NULL);
    Dwarf_Addr pc = vaddr;
    if (!entry_role(f->role) && pc > 0)
        pc--;
    Dwfl_Line *line = dwfl_module_getsrc(o->mod, pc);
    if (!name && !line)
        return -1; /* nothing here: let the ELF reader try */
    if (name) {
        f->function = forksafe__xstrdup(name);
        f->func_delta = off;
    }
    if (line) {
        int ln = 0;
        const char *file = dwfl_lineinfo(line, NULL, &ln, NULL, NULL, NULL);
        Dwarf_Addr bias;
        Dwarf_Die *cu = dwfl_module_addrdie(o->mod, pc, &bias);
        if (file) {
            f->file = absolute(cu, file);
            f->line = ln;
        }
        inlined(f, o->mod, pc);
    }
    return 0;
}

void forksafe__symbols_free_dw(void)
{
    for (size_t i = 0; i < ndwobjs; i++) {
        if (dwobjs[i].dwfl)
            dwfl_end(dwobjs[i].dwfl);
        free(dwobjs[i].path);
    }
    free(dwobjs);
    dwobjs = NULL;
    ndwobjs = 0;
    free(debuginfo_path);
    debuginfo_path = NULL;
}

#endif
