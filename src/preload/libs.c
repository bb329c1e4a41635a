/* SPDX-License-Identifier: MIT */
/*
 * libs.c: the few library calls that create state a forked child must not
 * inherit unprepared (an SQLite connection, a TLS connection or context, a
 * curl handle, a libuv loop, a libevent base, a ZeroMQ context, and the
 * libraries that have no safe use in a forked child at all), the calls
 * that end it, and the adapters forksafe installs (forksafe_register_adapter).
 * A library is a hazard at a fork only while it has such live state and
 * no adapter: merely loading it (import ssl, a program linked with
 * libsqlite3 that never opens a database) is not.
 *
 * Each hook forwards to the definition the caller would have been bound to
 * without the interposer (forksafe__audit_resolve_lib: the next one in the
 * global scope, else the caller's own dependencies, for libraries loaded
 * with RTLD_LOCAL, as Python loads its extension modules), then notes the
 * handle in a small lock-free table. These calls are made in ordinary
 * program context (never from signal handlers), so dlsym may be used.
 */
#include "audit.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#define fk forksafe__audit_fk

/* ------------------------------------------------------------ libraries */

enum {
    LIB_SQLITE,
    LIB_OPENSSL,
    LIB_CURL,
    LIB_UV,
    LIB_EVENT,
    LIB_ZMQ,
    LIB_GLIB,
    LIB_GRPC,
    LIB_DBUS,
    LIB_NSS,
    LIB_CUDA,
    LIB_MPI,
    LIB_N
};

static const struct {
    const char *adapter;
    int no_safe_way;
} lib_info[LIB_N] = {
    [LIB_SQLITE] = {"sqlite", 0}, [LIB_OPENSSL] = {"openssl", 0},
    [LIB_CURL] = {"curl", 0},     [LIB_UV] = {"uv", 0},
    [LIB_EVENT] = {"event", 0},   [LIB_ZMQ] = {"zmq", 0},
    [LIB_GLIB] = {"glib", 1},     [LIB_GRPC] = {"grpc", 1},
    [LIB_DBUS] = {"dbus", 1},     [LIB_NSS] = {"nss", 1},
    [LIB_CUDA] = {"cuda", 1},     [LIB_MPI] = {"mpi", 1},
};

/* Live handles. A slot is claimed by swapping its handle from NULL. */
#define LIVE_MAX 256
struct live {
    void *handle;
    int lib;
    int tid;
    void *site;
};
static struct live live[LIVE_MAX];
HOT static int live_count[LIB_N];    /* live handles, table or not */
static char lib_path[LIB_N][256];    /* the object that defines lib */
HOT static int lib_path_set[LIB_N];  /* 0 unset, 2 being set, 1 set */
HOT static unsigned adapters_bits;   /* adapters installed, by lib */
HOT static unsigned needed_bits;     /* libs live at a fork */
HOT static unsigned needed_present;  /* ... that had their adapter */

const char *forksafe__audit_lib_path(int lib)
{
    return lib >= 0 && lib < LIB_N && LOAD(&lib_path_set[lib]) == 1
               ? lib_path[lib]
               : "?";
}

const char *forksafe__audit_lib_adapter(int lib)
{
    return lib >= 0 && lib < LIB_N ? lib_info[lib].adapter : "?";
}

int forksafe__audit_lib_no_safe_way(int lib)
{
    return lib >= 0 && lib < LIB_N && lib_info[lib].no_safe_way;
}

static void set_path(int lib, void *real)
{
    int expect = 0;
    if (LOAD(&lib_path_set[lib]) ||
        !__atomic_compare_exchange_n(&lib_path_set[lib], &expect, 2, 0,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;
    uintptr_t off;
    if (forksafe__maps_find(real, lib_path[lib], sizeof lib_path[lib], &off) !=
        0)
        forksafe__str_copy(lib_path[lib], sizeof lib_path[lib], "?");
    STORE(&lib_path_set[lib], 1);
}

static void lib_add(int lib, void *handle, void *site, void *real)
{
    if (!handle || forksafe__in_hook)
        return;
    set_path(lib, real);
    /* Singletons (uv_default_loop, grpc_init ...) may be created again. */
    for (int i = 0; i < LIVE_MAX; i++)
        if (LOAD(&live[i].handle) == handle && live[i].lib == lib)
            return;
    __atomic_add_fetch(&live_count[lib], 1, __ATOMIC_ACQ_REL);
    for (int i = 0; i < LIVE_MAX; i++) {
        void *expect = NULL;
        if (LOAD(&live[i].handle) ||
            !__atomic_compare_exchange_n(&live[i].handle, &expect, handle, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            continue;
        live[i].lib = lib;
        live[i].tid = (int)forksafe__gettid();
        live[i].site = site;
        return;
    }
}

static void lib_remove(int lib, void *handle)
{
    if (!handle || forksafe__in_hook)
        return;
    for (int i = 0; i < LIVE_MAX; i++) {
        void *expect = handle;
        if (LOAD(&live[i].handle) == handle && live[i].lib == lib &&
            __atomic_compare_exchange_n(&live[i].handle, &expect, NULL, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            __atomic_sub_fetch(&live_count[lib], 1, __ATOMIC_ACQ_REL);
            return;
        }
    }
    /* Not in the table (it was full): count it down all the same. */
    int n = LOAD(&live_count[lib]);
    while (n > 0 && !__atomic_compare_exchange_n(&live_count[lib], &n, n - 1,
                                                 0, __ATOMIC_ACQ_REL,
                                                 __ATOMIC_ACQUIRE))
        ;
}

void forksafe__audit_libs_snapshot(void)
{
    struct libsnap now[LIBSNAP_MAX];
    int n = 0;
    for (int lib = 0; lib < LIB_N && n < LIBSNAP_MAX; lib++) {
        int count = LOAD(&live_count[lib]);
        if (count <= 0)
            continue;
        struct libsnap l = {lib, count, 0, 0, NULL};
        l.adapter = (LOAD(&adapters_bits) >> lib) & 1;
        for (int i = 0; i < LIVE_MAX; i++)
            if (LOAD(&live[i].handle) && live[i].lib == lib) {
                l.tid = live[i].tid;
                l.site = live[i].site;
                break;
            }
        now[n++] = l;
        unsigned bit = 1u << lib;
        if (!(LOAD(&needed_bits) & bit))
            __atomic_fetch_or(&needed_bits, bit, __ATOMIC_ACQ_REL);
        if (l.adapter && !(LOAD(&needed_present) & bit))
            __atomic_fetch_or(&needed_present, bit, __ATOMIC_ACQ_REL);
    }
    /* The fork state page is written only when it changes. */
    if (!n && !LOAD(&fk.nlibs))
        return;
    if (n != fk.nlibs || memcmp(now, fk.libs, (size_t)n * sizeof now[0]) != 0) {
        memcpy(fk.libs, now, (size_t)n * sizeof now[0]);
        STORE(&fk.nlibs, n);
    }
}

void forksafe__audit_libs_needed(int *needed, int *present)
{
    *needed = __builtin_popcount(LOAD(&needed_bits));
    *present = __builtin_popcount(LOAD(&needed_present) &
                                  ~((1u << LIB_GLIB) | (1u << LIB_GRPC) |
                                    (1u << LIB_DBUS) | (1u << LIB_NSS) |
                                    (1u << LIB_CUDA) | (1u << LIB_MPI)));
}

/* ------------------------------------------------------------ resolving */

void *forksafe__audit_resolve_lib(const char *name, void *self, void *caller)
{
    void *p = forksafe__resolve(name);
    if (p && p != self)
        return p;
    Dl_info di;
    forksafe__in_hook++;
    p = NULL;
    if (caller && dladdr(caller, &di) && di.dli_fname && di.dli_fname[0]) {
        void *h = dlopen(di.dli_fname, RTLD_NOLOAD | RTLD_LAZY);
        if (h) {
            p = dlsym(h, name);
            dlclose(h);
        }
    }
    forksafe__in_hook--;
    return p != self ? p : NULL;
}

/* One cached real function per hook; forgotten when its object goes. */
#define MAX_REALS 64
static void *reals[MAX_REALS];
HOT static int nreals;

static void **reals_claim(void)
{
    int i = __atomic_fetch_add(&nreals, 1, __ATOMIC_ACQ_REL);
    return i < MAX_REALS ? &reals[i] : NULL;
}

void forksafe__audit_libs_unloaded(uintptr_t lo, uintptr_t hi)
{
    int n = LOAD(&nreals);
    for (int i = 0; i < n && i < MAX_REALS; i++) {
        uintptr_t p = (uintptr_t)LOAD(&reals[i]);
        if (p >= lo && p < hi)
            STORE(&reals[i], NULL);
    }
}

/* The real function behind hook `fn` (of type T), resolved once per hook
   and cached in a slot of reals[] (NULL: none was found; the hook then
   returns `fail`, as the call would have failed to link). */
#define REAL_LIB(fn, var)                                                      \
    static void **var##_slot;                                                  \
    if (!LOAD(&var##_slot)) {                                                  \
        void **s_ = reals_claim();                                             \
        if (s_)                                                                \
            STORE(&var##_slot, s_);                                            \
    }                                                                          \
    __typeof__(fn) *var =                                                      \
        var##_slot ? (__typeof__(fn) *)LOAD(var##_slot) : NULL;                \
    if (!var) {                                                                \
        var = (__typeof__(fn) *)forksafe__audit_resolve_lib(                   \
            #fn, (void *)fn, __builtin_return_address(0));                     \
        if (var && var##_slot)                                                 \
            STORE(var##_slot, (void *)var);                                    \
    }

/* A constructor returning a handle: note it when not NULL. */
#define HOOK_NEW(lib, ret, fn, params, args, fail)                             \
    EXPORT ret fn params;                                                      \
    EXPORT ret fn params                                                       \
    {                                                                          \
        REAL_LIB(fn, real);                                     \
        if (!real)                                                             \
            return fail;                                                       \
        ret made_ = real args;                                                 \
        lib_add(lib, (void *)made_, __builtin_return_address(0),               \
                (void *)real);                                                 \
        return made_;                                                          \
    }

/* A destructor returning nothing. */
#define HOOK_FREE(lib, fn, T)                                                  \
    EXPORT void fn(T h);                                                       \
    EXPORT void fn(T h)                                                        \
    {                                                                          \
        REAL_LIB(fn, real);                                       \
        lib_remove(lib, (void *)h);                                            \
        if (real)                                                              \
            real(h);                                                           \
    }

/* A destructor returning a status: the handle is gone when it says ok. */
#define HOOK_CLOSE(lib, fn, T, ok)                                             \
    EXPORT int fn(T h);                                                        \
    EXPORT int fn(T h)                                                         \
    {                                                                          \
        REAL_LIB(fn, real);                                        \
        if (!real)                                                             \
            return -1;                                                         \
        int r = real(h);                                                       \
        if (r == (ok))                                                         \
            lib_remove(lib, (void *)h);                                        \
        return r;                                                              \
    }

/* A library-wide initialisation: one live "handle" per library. */
#define ONE(lib) ((void *)&lib_info[lib])

/* ------------------------------------------------------------ sqlite */

/* sqlite3_open*: the connection exists (and must be closed) whatever the
   result, once *ppDb is set. */
#define HOOK_SQLITE_OPEN(fn, params, args)                                     \
    EXPORT int fn params;                                                      \
    EXPORT int fn params                                                       \
    {                                                                          \
        REAL_LIB(fn, real);                                     \
        if (!real)                                                             \
            return 1; /* SQLITE_ERROR */                                       \
        int r = real args;                                                     \
        if (ppDb)                                                              \
            lib_add(LIB_SQLITE, *ppDb, __builtin_return_address(0),            \
                    (void *)real);                                             \
        return r;                                                              \
    }

HOOK_SQLITE_OPEN(sqlite3_open, (const char *filename, void **ppDb),
                 (filename, ppDb))
HOOK_SQLITE_OPEN(sqlite3_open16, (const void *filename, void **ppDb),
                 (filename, ppDb))
HOOK_SQLITE_OPEN(sqlite3_open_v2,
                 (const char *filename, void **ppDb, int flags,
                  const char *vfs),
                 (filename, ppDb, flags, vfs))
HOOK_CLOSE(LIB_SQLITE, sqlite3_close, void *, 0)

/* sqlite3_close_v2 always succeeds from the caller's view: the connection
   becomes a zombie that SQLite frees when its last statement goes. */
EXPORT int sqlite3_close_v2(void *db);
EXPORT int sqlite3_close_v2(void *db)
{
    REAL_LIB(sqlite3_close_v2, real);
    if (!real)
        return 1;
    lib_remove(LIB_SQLITE, db);
    return real(db);
}

/* ------------------------------------------------------------ openssl */

HOOK_NEW(LIB_OPENSSL, void *, SSL_new, (void *ctx), (ctx), NULL)
HOOK_FREE(LIB_OPENSSL, SSL_free, void *)
HOOK_NEW(LIB_OPENSSL, void *, SSL_CTX_new, (const void *method), (method),
         NULL)
HOOK_NEW(LIB_OPENSSL, void *, SSL_CTX_new_ex,
         (void *libctx, const char *propq, const void *method),
         (libctx, propq, method), NULL)
HOOK_FREE(LIB_OPENSSL, SSL_CTX_free, void *)

/* ------------------------------------------------------------ curl */

HOOK_NEW(LIB_CURL, void *, curl_easy_init, (void), (), NULL)
HOOK_NEW(LIB_CURL, void *, curl_easy_duphandle, (void *h), (h), NULL)
HOOK_FREE(LIB_CURL, curl_easy_cleanup, void *)
HOOK_NEW(LIB_CURL, void *, curl_share_init, (void), (), NULL)
HOOK_CLOSE(LIB_CURL, curl_share_cleanup, void *, 0)
HOOK_NEW(LIB_CURL, void *, curl_multi_init, (void), (), NULL)
HOOK_CLOSE(LIB_CURL, curl_multi_cleanup, void *, 0)

/* ------------------------------------------------------------ libuv */

EXPORT int uv_loop_init(void *loop);
EXPORT int uv_loop_init(void *loop)
{
    REAL_LIB(uv_loop_init, real);
    if (!real)
        return -38; /* UV_ENOSYS */
    int r = real(loop);
    if (r == 0)
        lib_add(LIB_UV, loop, __builtin_return_address(0), (void *)real);
    return r;
}
HOOK_CLOSE(LIB_UV, uv_loop_close, void *, 0)
HOOK_NEW(LIB_UV, void *, uv_default_loop, (void), (), NULL)
HOOK_NEW(LIB_UV, void *, uv_loop_new, (void), (), NULL)
HOOK_FREE(LIB_UV, uv_loop_delete, void *)

/* ------------------------------------------------------------ libevent */

HOOK_NEW(LIB_EVENT, void *, event_base_new, (void), (), NULL)
HOOK_NEW(LIB_EVENT, void *, event_base_new_with_config, (const void *cfg),
         (cfg), NULL)
HOOK_NEW(LIB_EVENT, void *, event_init, (void), (), NULL)
HOOK_FREE(LIB_EVENT, event_base_free, void *)
HOOK_FREE(LIB_EVENT, event_base_free_nofinalize, void *)

/* ------------------------------------------------------------ zeromq */

HOOK_NEW(LIB_ZMQ, void *, zmq_ctx_new, (void), (), NULL)
HOOK_NEW(LIB_ZMQ, void *, zmq_init, (int io_threads), (io_threads), NULL)
HOOK_CLOSE(LIB_ZMQ, zmq_ctx_term, void *, 0)
HOOK_CLOSE(LIB_ZMQ, zmq_ctx_destroy, void *, 0)
HOOK_CLOSE(LIB_ZMQ, zmq_term, void *, 0)

/* ------------------------------------------------------------ no safe way */

/* GLib's main loop, gRPC, D-Bus, NSS, CUDA and MPI have no safe use in a
   forked child (docs/unsafe-libraries.md). Their state is counted from
   the first call that creates it, and never counted down (their handles
   are reference-counted or process-wide). */
HOOK_NEW(LIB_GLIB, void *, g_main_context_new, (void), (), NULL)
HOOK_NEW(LIB_GLIB, void *, g_main_loop_new, (void *ctx, int is_running),
         (ctx, is_running), NULL)
HOOK_NEW(LIB_DBUS, void *, dbus_bus_get, (int type, void *error),
         (type, error), NULL)
HOOK_NEW(LIB_DBUS, void *, dbus_bus_get_private, (int type, void *error),
         (type, error), NULL)
HOOK_NEW(LIB_DBUS, void *, dbus_connection_open,
         (const char *address, void *error), (address, error), NULL)
HOOK_NEW(LIB_DBUS, void *, dbus_connection_open_private,
         (const char *address, void *error), (address, error), NULL)

EXPORT void grpc_init(void);
EXPORT void grpc_init(void)
{
    REAL_LIB(grpc_init, real);
    if (real)
        real();
    lib_add(LIB_GRPC, ONE(LIB_GRPC), __builtin_return_address(0),
            (void *)real);
}

/* A library-wide initialisation that reports success with 0. */
#define HOOK_INIT(lib, fn, params, args)                                       \
    EXPORT int fn params;                                                      \
    EXPORT int fn params                                                       \
    {                                                                          \
        REAL_LIB(fn, real);                                     \
        if (!real)                                                             \
            return -1;                                                         \
        int r = real args;                                                     \
        if (r == 0)                                                            \
            lib_add(lib, ONE(lib), __builtin_return_address(0),                \
                    (void *)real);                                             \
        return r;                                                              \
    }

HOOK_INIT(LIB_NSS, NSS_Init, (const char *dir), (dir))
HOOK_INIT(LIB_NSS, NSS_InitReadWrite, (const char *dir), (dir))
HOOK_INIT(LIB_NSS, NSS_NoDB_Init, (const char *dir), (dir))
HOOK_INIT(LIB_NSS, NSS_Initialize,
          (const char *dir, const char *cert, const char *key,
           const char *secmod, unsigned flags),
          (dir, cert, key, secmod, flags))
HOOK_INIT(LIB_CUDA, cuInit, (unsigned flags), (flags))
HOOK_INIT(LIB_MPI, MPI_Init, (int *argc, char ***argv), (argc, argv))
HOOK_INIT(LIB_MPI, MPI_Init_thread,
          (int *argc, char ***argv, int required, int *provided),
          (argc, argv, required, provided))

/* ------------------------------------------------------------ adapters */

/* forksafe_register_adapter(): the adapter that covers a library is
   installed (forksafe's adapters call it when they are installed or first
   track something). */
EXPORT int forksafe_register_adapter(const char *name);
EXPORT int forksafe_register_adapter(const char *name)
{
    REAL_LIB(forksafe_register_adapter, real);
    if (!real)
        return 38; /* ENOSYS */
    int r = real(name);
    if (r == 0 && name)
        for (int lib = 0; lib < LIB_N; lib++)
            if (!lib_info[lib].no_safe_way &&
                strcmp(name, lib_info[lib].adapter) == 0)
                __atomic_fetch_or(&adapters_bits, 1u << lib, __ATOMIC_ACQ_REL);
    return r;
}
