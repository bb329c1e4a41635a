/* SPDX-License-Identifier: MIT */
/*
 * symbols.c: turn (object path, file offset) into (function, offset),
 * and, with DWARF, into source file, line and inlined functions, after the
 * audited program has ended. Doing it here keeps the interposer free of
 * dladdr(), which takes the loader's lock and so cannot be used in signal
 * handlers or forked children.
 *
 * The file offset becomes the ELF virtual address through the object's
 * program headers. DWARF comes from elfutils' libdwfl (symbols-dw.c) when
 * the build has libdw: function, file and line, inlined frames, and debug
 * files found by build-id or .gnu_debuglink. Without it, or for objects
 * libdwfl cannot read, this file's fallback reads the ELF symbol tables
 * itself: .symtab is preferred (unstripped test programs name their static
 * functions), then .dynsym, then a debug file found by build-id under
 * /usr/lib/debug. FORKSAFE_AUDIT_NO_DWARF=1 in forksafe-audit's
 * environment uses the fallback only.
 */
#include "cli.h"

#include <elf.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct sym {
    uint64_t addr, size;
    const char *name;
};

struct obj {
    char *path;
    int ok;
    Elf64_Phdr loads[16];
    int nloads;
    struct sym *syms;
    size_t nsyms;
    void *map, *dbgmap;
    size_t maplen, dbglen;
};

static struct obj *objs;
static size_t nobjs;

static void *map_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    void *p = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (size_t)st.st_size >= sizeof(Elf64_Ehdr)) {
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
            p = NULL;
        else
            *len = (size_t)st.st_size;
    }
    close(fd);
    if (p && memcmp(p, ELFMAG, SELFMAG) != 0) {
        munmap(p, *len);
        p = NULL;
    }
    if (p && ((unsigned char *)p)[EI_CLASS] != ELFCLASS64) {
        munmap(p, *len);
        p = NULL;
    }
    return p;
}

static int in_file(size_t len, uint64_t off, uint64_t size)
{
    return off <= len && size <= len - off;
}

/* Add the function symbols of every SHT_SYMTAB or SHT_DYNSYM section of
   the mapped ELF file `base` (only `want` type). */
static void add_syms(struct obj *o, const unsigned char *base, size_t len,
                     uint32_t want)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (!in_file(len, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)))
        return;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(base + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != want || sh[i].sh_link >= eh->e_shnum ||
            sh[i].sh_type == SHT_NOBITS)
            continue;
        const Elf64_Shdr *str = &sh[sh[i].sh_link];
        if (!in_file(len, sh[i].sh_offset, sh[i].sh_size) ||
            !in_file(len, str->sh_offset, str->sh_size) ||
            str->sh_type == SHT_NOBITS)
            continue;
        const Elf64_Sym *s = (const Elf64_Sym *)(base + sh[i].sh_offset);
        size_t n = sh[i].sh_size / sizeof *s;
        struct sym *grown = realloc(o->syms, (o->nsyms + n) * sizeof *grown);
        if (!grown)
            return;
        o->syms = grown;
        for (size_t k = 0; k < n; k++) {
            if (ELF64_ST_TYPE(s[k].st_info) != STT_FUNC ||
                s[k].st_shndx == SHN_UNDEF || !s[k].st_value ||
                s[k].st_name >= str->sh_size)
                continue;
            o->syms[o->nsyms].addr = s[k].st_value;
            o->syms[o->nsyms].size = s[k].st_size;
            o->syms[o->nsyms].name =
                (const char *)base + str->sh_offset + s[k].st_name;
            o->nsyms++;
        }
    }
}

static int has_section(const unsigned char *base, size_t len, uint32_t type)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (!in_file(len, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr)))
        return 0;
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(base + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++)
        if (sh[i].sh_type == type)
            return 1;
    return 0;
}

/* /usr/lib/debug/.build-id/xx/yyyy.debug for the object, if installed. */
static void debug_path(const unsigned char *base, size_t len, char *out,
                       size_t outlen)
{
    out[0] = '\0';
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (!in_file(len, eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
        return;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_NOTE ||
            !in_file(len, ph[i].p_offset, ph[i].p_filesz))
            continue;
        const unsigned char *p = base + ph[i].p_offset;
        const unsigned char *end = p + ph[i].p_filesz;
        while (p + sizeof(Elf64_Nhdr) <= end) {
            const Elf64_Nhdr *nh = (const Elf64_Nhdr *)p;
            const unsigned char *name = p + sizeof *nh;
            const unsigned char *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + nh->n_descsz > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                memcmp(name, "GNU", 4) == 0 && nh->n_descsz >= 2 &&
                outlen > 40 + 2 * nh->n_descsz) {
                size_t k = (size_t)snprintf(
                    out, outlen, "/usr/lib/debug/.build-id/%02x/", desc[0]);
                for (unsigned j = 1; j < nh->n_descsz; j++)
                    k += (size_t)snprintf(out + k, outlen - k, "%02x", desc[j]);
                snprintf(out + k, outlen - k, ".debug");
                return;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
}

static int sym_cmp(const void *a, const void *b)
{
    const struct sym *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static struct obj *load(const char *path)
{
    for (size_t i = 0; i < nobjs; i++)
        if (strcmp(objs[i].path, path) == 0)
            return &objs[i];
    struct obj *grown = realloc(objs, (nobjs + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    objs = grown;
    struct obj *o = &objs[nobjs++];
    memset(o, 0, sizeof *o);
    o->path = strdup(path);
    const unsigned char *base = map_file(path, &o->maplen);
    o->map = (void *)base;
    if (!base || !o->path)
        return o;
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    if (!in_file(o->maplen, eh->e_phoff,
                 (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
        return o;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum && o->nloads < 16; i++)
        if (ph[i].p_type == PT_LOAD)
            o->loads[o->nloads++] = ph[i];
    o->ok = 1;
    if (has_section(base, o->maplen, SHT_SYMTAB)) {
        add_syms(o, base, o->maplen, SHT_SYMTAB);
    } else {
        char dbg[256];
        debug_path(base, o->maplen, dbg, sizeof dbg);
        if (dbg[0] && (o->dbgmap = map_file(dbg, &o->dbglen)))
            add_syms(o, o->dbgmap, o->dbglen, SHT_SYMTAB);
    }
    add_syms(o, base, o->maplen, SHT_DYNSYM);
    if (o->nsyms)
        qsort(o->syms, o->nsyms, sizeof *o->syms, sym_cmp);
    return o;
}

/* The ELF virtual address of a file offset in o. */
static uint64_t vaddr_of(const struct obj *o, uint64_t file_off)
{
    for (int i = 0; i < o->nloads; i++) {
        const Elf64_Phdr *p = &o->loads[i];
        if (file_off >= p->p_offset && file_off < p->p_offset + p->p_filesz)
            return file_off - p->p_offset + p->p_vaddr;
    }
    return file_off;
}

void forksafe__symbols_resolve(struct forksafe_frame *f, uint64_t file_off)
{
    f->offset = file_off;
    f->function = NULL;
    f->func_delta = 0;
    f->file = NULL;
    f->line = 0;
    f->inlined = NULL;
    f->ninlined = 0;
    if (!f->object || f->object[0] != '/')
        return;
    struct obj *o = load(f->object);
    if (!o || !o->ok)
        return;
    f->offset = vaddr_of(o, file_off);
    static int dwarf = -1;
    if (dwarf < 0) {
        const char *no = getenv("FORKSAFE_AUDIT_NO_DWARF");
        dwarf = !(no && *no && strcmp(no, "0") != 0);
    }
    /* libdwfl first; the ELF reader when it knows nothing, and for the
       function name when no symbol table it read covers the address. */
    if (dwarf && forksafe__symbols_resolve_dw(f, f->offset) == 0 &&
        f->function)
        return;
    forksafe__symbols_resolve_elf(f, file_off);
}

void forksafe__symbols_resolve_elf(struct forksafe_frame *f, uint64_t file_off)
{
    struct obj *o = f->object && f->object[0] == '/' ? load(f->object) : NULL;
    if (!o || !o->ok)
        return;
    uint64_t v = vaddr_of(o, file_off);
    f->offset = v;
    /* The last symbol starting at or before v that covers it. */
    size_t lo = 0, hi = o->nsyms;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (o->syms[mid].addr <= v)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i-- > 0;) {
        const struct sym *s = &o->syms[i];
        if (v < s->addr + (s->size ? s->size : 1)) {
            f->function = strdup(s->name);
            f->func_delta = v - s->addr;
            return;
        }
        if (s->addr + 0x100000 < v)
            break;
    }
}

void forksafe__frame_free(struct forksafe_frame *f)
{
    free(f->role);
    free(f->thread_name);
    free(f->object);
    free(f->function);
    free(f->file);
    for (size_t k = 0; k < f->ninlined; k++) {
        free(f->inlined[k].function);
        free(f->inlined[k].call_file);
    }
    free(f->inlined);
}

void forksafe__symbols_free(void)
{
    forksafe__symbols_free_dw();
    for (size_t i = 0; i < nobjs; i++) {
        free(objs[i].path);
        free(objs[i].syms);
        if (objs[i].map)
            munmap(objs[i].map, objs[i].maplen);
        if (objs[i].dbgmap)
            munmap(objs[i].dbgmap, objs[i].dbglen);
    }
    free(objs);
    objs = NULL;
    nobjs = 0;
}
