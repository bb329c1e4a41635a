/* SPDX-License-Identifier: MIT */
/*
 * atfork.c: __register_atfork(), through which every pthread_atfork() call
 * passes. Each registration is recorded with the object that made it:
 * handlers registered through libforksafe are counted, any other is a
 * raw-atfork-handler finding, of severity info: a raw handler is an
 * inventory item, not a hazard, unless it takes part in a lock-order
 * violation (forksafe-audit then raises it to a warning). libforksafe's
 * own registration also says where its code is and gives the audit its
 * forksafe_lookup(), for the prepare window (fork.c).
 */
#include "audit.h"

#include <dlfcn.h>
#include <string.h>

/* glibc exports this; it is not declared in any public header. */
int __register_atfork(void (*prepare)(void), void (*parent)(void),
                      void (*child)(void), void *dso_handle);

/* ------------------------------------------------------------ atfork */

HOT static int atfork_seq;
/* Raw atfork registrations seen, and those made by libforksafe. */
HOT int forksafe__audit_atfork_raw;
HOT int forksafe__audit_atfork_registry;

int forksafe__audit_is_forksafe_object(const char *obj)
{
    const char *base = strrchr(obj, '/');
    base = base ? base + 1 : obj;
    return strncmp(base, "libforksafe", 11) == 0 &&
           strncmp(base, "libforksafe-audit", 17) != 0;
}

/* libforksafe registers its fork handler from its constructor (a normal
   context, where dlsym may be called): remember the extent of its code,
   so that the prepare window can tell its own acquisitions (registered
   locks) from those of callbacks and raw handlers, and its
   forksafe_lookup(), which names registered locks inside its prepare. */
static void note_core(const char *obj, void *prepare)
{
    uintptr_t lo, hi;
    (void)obj;
    if (forksafe__maps_extent(prepare, &lo, &hi) != 0)
        return;
    /* The lookup of the very object that registers (a second copy of
       libforksafe elsewhere in the process would not know its locks). */
    forksafe__lookup_fn f = NULL;
    Dl_info di;
    forksafe__in_hook++;
    if (dladdr(prepare, &di) && di.dli_fname) {
        void *h = dlopen(di.dli_fname, RTLD_NOLOAD | RTLD_LAZY);
        if (h) {
            f = (forksafe__lookup_fn)dlsym(h, "forksafe_lookup");
            dlclose(h);
        }
        /* The core is the object that defines forksafe_lookup itself (an
           adapter registering would find its dependency's), whatever its
           file is called (libforksafe.so.0, a test's plain build). */
        Dl_info fi;
        if (f && !(dladdr((void *)f, &fi) && fi.dli_fname &&
                   strcmp(fi.dli_fname, di.dli_fname) == 0))
            f = NULL;
    }
    forksafe__in_hook--;
    if (!f)
        return;
    STORE(&forksafe__audit_core_lo, lo);
    STORE(&forksafe__audit_core_hi, hi);
    STORE(&forksafe__audit_lookup, f);
}

/* What pthread_atfork() (linked statically into every object from
   libc_nonshared.a) calls: registers with glibc as usual, then records the
   handlers with their owning object (dso is that object's __dso_handle).
   Registrations made by libforksafe count as "through the registry". */
EXPORT int __register_atfork(void (*prepare)(void), void (*parent)(void),
                             void (*child)(void), void *dso)
{
    int r = REAL(__register_atfork)(prepare, parent, child, dso);
    if (r != 0 || forksafe__in_hook)
        return r;
    int seq = __atomic_add_fetch(&atfork_seq, 1, __ATOMIC_RELAXED);
    char obj[300];
    uintptr_t off;
    if (!dso || forksafe__maps_find(dso, obj, sizeof obj, &off) != 0)
        forksafe__str_copy(obj, sizeof obj, "?");
    int registry = forksafe__audit_is_forksafe_object(obj);
    if (registry && prepare)
        note_core(obj, (void *)prepare);
    __atomic_add_fetch(registry ? &forksafe__audit_atfork_registry
                                : &forksafe__audit_atfork_raw,
                       1, __ATOMIC_RELAXED);
    struct forksafe__rec *rec =
        forksafe__rec_begin(registry ? "atfork" : "finding");
    if (!rec)
        return r;
    if (!registry)
        forksafe__audit_rec_common(rec, "raw-atfork-handler", "info");
    else
        forksafe__rec_int(rec, "pid", forksafe__getpid());
    forksafe__rec_int(rec, "seq", seq);
    forksafe__rec_str(rec, "object", obj);
    if (prepare)
        forksafe__rec_frame(rec, "prepare", 0, NULL, (void *)prepare);
    if (parent)
        forksafe__rec_frame(rec, "parent", 0, NULL, (void *)parent);
    if (child)
        forksafe__rec_frame(rec, "child", 0, NULL, (void *)child);
    forksafe__rec_end(rec);
    return r;
}
