/* SPDX-License-Identifier: MIT */
/*
 * peer.c: one registry per process, however many copies of libforksafe it
 * holds (a program linked with libforksafe.a and a plugin linked with
 * libforksafe.so, say). Two registries would each order only their own
 * half of the locks, and each would install its own fork handlers.
 *
 * DESIGN. Every copy carries an ELF note ("forksafe-peer") that gives the
 * version of this interface and, as an offset from the note itself, the
 * address of its table of entry points (forksafe__peer_table). Notes are
 * in the PT_NOTE segments that dl_iterate_phdr() shows for every loaded
 * object, a static copy inside the main program included, without any
 * symbol being exported. At its constructor each copy looks for the first
 * note in load order (the main program comes first): if that is its own,
 * it is the registry; if it is another copy's of the same interface
 * version, this copy forwards every public call to that one (and pins it
 * with RTLD_NODELETE); if the version differs, this copy refuses every
 * registration (ENOTSUP) and says why in forksafe_last_error() and in the
 * report, rather than keep a second registry.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef FORKSAFE_PEER_ABI
#define FORKSAFE_PEER_ABI 1 /* tests build a copy with another value */
#endif
#define NOTE_TYPE 0x46535031 /* "FSP1"; no suffix: also used in asm */
#define NOTE_NAME "forksafe-peer"

#define STR_(x) #x
#define STR(x)  STR_(x)

/* The note. namesz 14 pads to 16 under 4- and 8-byte note alignment; the
   descriptor is { u32 interface version, i32 offset of the table from the
   offset field }, a link-time constant, so the note needs no relocation. */
__asm__(
    ".pushsection .note.forksafe-peer,\"a\",@note\n"
    ".balign 4\n"
    ".long 14\n"
    ".long 8\n"
    ".long " STR(
        NOTE_TYPE) "\n"
                   ".asciz \"" NOTE_NAME "\"\n"
                   ".balign 4\n"
                   ".long " STR(
                       FORKSAFE_PEER_ABI) "\n"
                                          "1: .long forksafe__peer_table - 1b\n"
                                          ".popsection\n");

const struct forksafe_peer_api *forksafe__peer;
int forksafe__peer_refused;
/* The texts for the report and for forksafe_last_error(). The copy that
   keeps the registry allocates its text when a second copy joins (it is
   then pinned, never unloaded); a copy that forwards needs none (its
   report is the registry's); a copy that refuses keeps a short static
   one. (Static room for all of them would make the library's writable
   data spill past its file-backed page into another mapping, and every
   mapping costs each fork().) */
#define PEER_TEXT 1024
static char *joined_text;
static char refused_text[512];

/* Who calls the registry through us: the primary's side. */
static void peer_joined(const char *who);

const struct forksafe_peer_api forksafe__peer_table = {
    FORKSAFE_PEER_ABI,
    sizeof(struct forksafe_peer_api),
    peer_joined,
    forksafe__init,
    forksafe__add,
    forksafe_unregister,
    forksafe_lookup,
    forksafe_register_adapter,
    forksafe_adapter_installed,
    forksafe_fork,
    forksafe_last_error,
    forksafe_audit_write,
    forksafe__capture_atfork,
    forksafe__object_unloaded,
};

struct found {
    const struct forksafe_peer_api *table;
    unsigned abi;
    char path[256];
};

static void object_path(const struct dl_phdr_info *info, char *buf, size_t len)
{
    if (info->dlpi_name && *info->dlpi_name) {
        snprintf(buf, len, "%s", info->dlpi_name);
    } else {
        ssize_t n = readlink("/proc/self/exe", buf, len - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
}

/* The first forksafe-peer note in load order. */
static int first_note(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct found *f = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        size_t align = ph->p_align >= 8 ? 8 : 4;
        const unsigned char *p =
            (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + 12 <= end) {
            uint32_t nsz, dsz, type;
            memcpy(&nsz, p, 4);
            memcpy(&dsz, p + 4, 4);
            memcpy(&type, p + 8, 4);
            const unsigned char *name = p + 12;
            const unsigned char *desc =
                name + ((nsz + align - 1) & ~(align - 1));
            const unsigned char *next =
                desc + ((dsz + align - 1) & ~(align - 1));
            if (next > end || next <= p)
                break;
            if (type == (uint32_t)NOTE_TYPE && nsz == sizeof NOTE_NAME &&
                memcmp(name, NOTE_NAME, sizeof NOTE_NAME) == 0 && dsz == 8) {
                uint32_t abi;
                int32_t off;
                memcpy(&abi, desc, 4);
                memcpy(&off, desc + 4, 4);
                f->abi = abi;
                f->table =
                    (const struct forksafe_peer_api *)(const void *)(desc + 4 +
                                                                     off);
                object_path(info, f->path, sizeof f->path);
                return 1;
            }
            p = next;
        }
    }
    return 0;
}

struct self_query {
    uintptr_t addr;
    char *buf;
    size_t len;
};

/* The object whose PT_LOAD segments contain q->addr: its path. */
static int self_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct self_query *q = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
        if (ph->p_type == PT_LOAD && q->addr >= start &&
            q->addr - start < (uintptr_t)ph->p_memsz) {
            object_path(info, q->buf, q->len);
            return 1;
        }
    }
    return 0;
}

/* The path of the object holding this copy, into buf: the name
   dl_iterate_phdr() gives it (portable: glibc's dladdr1() link map is not
   in musl), or /proc/self/exe for the main program, which has none. */
static void find_self(char *buf, size_t len)
{
    struct self_query q = {(uintptr_t)&forksafe__peer_table, buf, len};
    buf[0] = '\0';
    dl_iterate_phdr(self_object, &q);
    if (!buf[0])
        snprintf(buf, len, "?");
}

static void peer_joined(const char *who)
{
    if (!joined_text) {
        char self[256];
        char *t = calloc(1, PEER_TEXT);
        if (!t)
            return; /* the report then just says less */
        find_self(self, sizeof self);
        snprintf(t, PEER_TEXT,
                 "libforksafe copies: this one (%.300s) keeps the registry;",
                 self);
        joined_text = t;
    }
    size_t len = strlen(joined_text);
    if (len < PEER_TEXT)
        snprintf(joined_text + len, PEER_TEXT - len, " %.300s forwards to it;",
                 who);
}

void forksafe__peer_elect(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    struct found f = {NULL, 0, ""};
    dl_iterate_phdr(first_note, &f);
    if (!f.table || f.table == &forksafe__peer_table)
        return; /* the first copy: the registry is ours */
    char self[256];
    find_self(self, sizeof self);
    if (f.abi != FORKSAFE_PEER_ABI) {
        forksafe__peer_refused = 1;
        snprintf(refused_text, sizeof refused_text,
                 "libforksafe copies: %.100s (interface %u) was loaded first; "
                 "this copy (%.100s, interface %u) cannot share its registry "
                 "and refuses every registration (ENOTSUP)",
                 f.path, f.abi, self, (unsigned)FORKSAFE_PEER_ABI);
        return;
    }
    /* The registry's copy must outlive every caller of its table. */
    if (f.path[0] && strcmp(f.path, "?") != 0) {
        void *h = dlopen(f.path, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
        (void)h; /* a handle that is never closed: nothing to release */
    }
    f.table->joined(self);
    f.table->init();
    __atomic_store_n(&forksafe__peer, f.table, __ATOMIC_RELEASE);
}

int forksafe__peer_refuse(const char *fn)
{
    forksafe__set_error("%s: %s", fn, refused_text);
    return ENOTSUP;
}

const char *forksafe__peer_text(void)
{
    if (forksafe__peer_refused)
        return refused_text;
    return joined_text ? joined_text : "";
}
