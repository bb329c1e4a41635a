/* SPDX-License-Identifier: MIT */
/*
 * test-exports.c: the shared libraries export the public API and nothing
 * else. libforksafe (-fvisibility=hidden): every defined dynamic symbol is
 * forksafe_* with the version node FORKSAFE_0 (src/forksafe.map), plus the
 * libc entry points it interposes (__cxa_finalize; __register_atfork where
 * the library defines it), which must stay unversioned; the soname is
 * versioned. Each adapter: only forksafe_<lib>_* at FORKSAFE_0, no
 * RUNPATH but $ORIGIN (nothing that points into the build tree), and it
 * loads in a process that has no libforksafe yet (python3): the core is
 * found next to it.
 */
#include "common.h"

#include <link.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char test_dir[PATH_MAX - 64];

/* The libc entry points libforksafe interposes. They must stay
   unversioned: every object calls e.g. __cxa_finalize@GLIBC_2.2.5, and the
   dynamic linker binds such a reference to a definition in another object
   only if that has the same version or none (src/forksafe.map). */
static const char *const hooks[] = {"__cxa_finalize", "__register_atfork"};

static int is_hook(const char *sym)
{
    for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++)
        if (strcmp(sym, hooks[i]) == 0)
            return 1;
    return 0;
}

/* Check the dynamic symbols of lib: each must start with prefix and carry
   @@FORKSAFE_0, except the unversioned hooks when allowed.
   Returns the number of public symbols. */
static int check_symbols(const char *lib, const char *prefix, int hooks_ok)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s", lib);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    int public = 0, node = 0;
    while (fgets(line, sizeof line, p)) {
        char addr[64], type[8], sym[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, sym) != 3)
            continue;
        /* The version node itself, as an absolute symbol (GNU ld). */
        if (strcmp(type, "A") == 0 && strcmp(sym, "FORKSAFE_0") == 0) {
            node = 1;
            continue;
        }
        char ver[64] = "";
        char *at = strchr(sym, '@');
        if (at) {
            snprintf(ver, sizeof ver, "%s", at);
            *at = '\0';
        }
#ifndef __GLIBC__
        /* musl-gcc's crti.o/crtn.o define these global, in every shared
           object it links; they are not part of forksafe's interface. */
        if (strcmp(sym, "_init") == 0 || strcmp(sym, "_fini") == 0)
            continue;
#endif
        if (hooks_ok && is_hook(sym)) {
            if (*ver)
                fail_msg("%s: %s%s is versioned: calls from other objects "
                         "(%s@GLIBC_...) would no longer reach it",
                         lib, sym, ver, sym);
            continue;
        }
        if (strncmp(sym, prefix, strlen(prefix)) != 0 ||
            strncmp(sym, "forksafe__", 10) == 0)
            fail_msg("%s: unexpected exported symbol: %s", lib, sym);
        if (strcmp(ver, "@@FORKSAFE_0") != 0)
            fail_msg("%s: %s has version '%s', not @@FORKSAFE_0", lib, sym,
                     ver);
        public++;
    }
    assert_int_equal(pclose(p), 0);
    (void)node;
    return public;
}

static void test_only_public_symbols(void **state)
{
    (void)state;
    int public = check_symbols(FS_LIBDIR "/libforksafe.so", "forksafe_", 1);
    assert_true(public >= 12); /* the core API at least */
}

/* A program that links the static archive, even with -rdynamic, exports
   none of the library's interposers: __cxa_finalize would otherwise catch
   every object's unload in the program (issue 10, item 7). */
static void test_static_archive_exports_no_interposer(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/fs-static-prog",
             test_dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512];
    int bad = 0, n = 0;
    while (fgets(line, sizeof line, p)) {
        n++;
        if (strstr(line, "__cxa_finalize") ||
            strstr(line, "__register_atfork")) {
            print_error("exported: %s", line);
            bad++;
        }
    }
    assert_int_equal(pclose(p), 0);
    assert_true(n > 0); /* -rdynamic did export the program's symbols */
    assert_int_equal(bad, 0);
}

static void test_soname(void **state)
{
    (void)state;
    FILE *p = popen("readelf -d " FS_LIBDIR "/libforksafe.so", "r");
    assert_non_null(p);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        found |= strstr(line, "SONAME") && strstr(line, "[libforksafe.so.0]");
        if (strstr(line, "RPATH") || strstr(line, "RUNPATH"))
            fail_msg("libforksafe has a search path: %s", line);
    }
    pclose(p);
    assert_true(found);
}

/* FS_ADAPTER_LIBS: "name=path name=path ..." for every adapter built. */
#if !defined(__GLIBC__) || !defined(__LP64__)
/* This program's own dynamic loader (its PT_INTERP), into buf. */
static int first_interp(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_INTERP) {
            snprintf(
                arg, PATH_MAX, "%s",
                (const char *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr));
            return 1;
        }
    return 1; /* only the main program, which comes first */
}
#endif

static void test_adapters(void **state)
{
    (void)state;
    char list[] = FS_ADAPTER_LIBS;
    int n = 0;
    for (char *save, *tok = strtok_r(list, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        assert_non_null(eq);
        *eq = '\0';
        const char *lib = eq + 1;
        char prefix[64];
        snprintf(prefix, sizeof prefix, "forksafe_%s_", tok);
        /* At least _install and _uninstall; nothing of the helper every
           adapter links statically (adapters/common/: forksafe__adapter_*,
           forksafe__list_*), which check_symbols refuses. */
        assert_true(check_symbols(lib, prefix, 0) >= 2);

        char cmd[4200];
        snprintf(cmd, sizeof cmd, "readelf -d %s", lib);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        char line[4400];
        while (fgets(line, sizeof line, p))
            if ((strstr(line, "(RPATH)") || strstr(line, "(RUNPATH)")) &&
                !strstr(line, "[$ORIGIN]"))
                fail_msg("%s: search path other than $ORIGIN: %s", lib, line);
        pclose(p);

        /* A process with no libforksafe loaded and no search path of its
           own (python3) must still be able to load the adapter: it finds
           the core through $ORIGIN, in the build tree as when installed.
           A sanitized adapter cannot be loaded into an uninstrumented
           python3 (the sanitizer runtime must come first), so that build
           skips this part. */
        if (FS_SANITIZED) {
            n++;
            continue;
        }
#if defined(__GLIBC__) && defined(__LP64__)
        snprintf(cmd, sizeof cmd,
                 "python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "
                 "%s 2>&1",
                 lib);
#else
        /* python3 is a 64-bit glibc program: it cannot load a musl or an
           i386 library. This program's own loader (musl's, or glibc's
           i386 one) lists what the adapter needs instead, resolving it as
           a dlopen() would, and fails if anything is missing. */
        char ld[PATH_MAX] = "";
        dl_iterate_phdr(first_interp, ld);
        assert_true(ld[0] != '\0');
        snprintf(cmd, sizeof cmd, "%s --list %s 2>&1", ld, lib);
#endif
        p = popen(cmd, "r");
        assert_non_null(p);
        char out[4096] = "";
        size_t got = fread(out, 1, sizeof out - 1, p);
        out[got] = '\0';
        if (pclose(p) != 0)
            fail_msg("%s does not load on its own: %s", lib, out);
        n++;
    }
    if (n == 0)
        skip();
}

int main(int argc, char **argv)
{
    (void)argc;
    fs_watchdog(60);
    snprintf(test_dir, sizeof test_dir, "%s", argv[0]);
    char *slash = strrchr(test_dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(test_dir, sizeof test_dir, ".");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_public_symbols),
        cmocka_unit_test(test_static_archive_exports_no_interposer),
        cmocka_unit_test(test_soname),
        cmocka_unit_test(test_adapters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
