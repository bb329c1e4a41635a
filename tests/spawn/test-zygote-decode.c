/* SPDX-License-Identifier: MIT */
/*
 * test-zygote-decode.c: the fork server's request decoder, a pure
 * function, checked class by class against its contract, and the fuzz
 * corpus (seeds plus every crash the fuzzer ever found) replayed through
 * the same checks as the fuzz target, in every build.
 */
#include "common.h"

#include "fuzz/zygote-decode-check.h"
#include "spawn-zygote.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned char buf[sizeof(struct forksafe__zygote_hdr) +
                         FORKSAFE_ZYGOTE_ARG_MAX + FORKSAFE_ZYGOTE_NAME_MAX +
                         16];

/* Lay out a request in buf; returns its length. */
static size_t build(uint32_t name_len, uint32_t arg_len, uint32_t nfds,
                    const char *name, size_t real_name, size_t real_arg)
{
    struct forksafe__zygote_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = FORKSAFE__ZYGOTE_MAGIC;
    h.kind = FORKSAFE__ZYGOTE_SPAWN;
    h.name_len = name_len;
    h.arg_len = arg_len;
    h.nfds = nfds;
    h.seq = 99;
    h.deadline = 4242;
    memcpy(buf, &h, sizeof h);
    memset(buf + sizeof h, 'A', real_arg);
    memcpy(buf + sizeof h + real_arg, name, real_name);
    return sizeof h + real_arg + real_name;
}

static void decode_accepts_valid(void **state)
{
    (void)state;
    struct forksafe__zygote_req r;
    size_t n = build(4, 10, 2, "echo", 4, 10);
    assert_int_equal(forksafe__zygote_decode(buf, n, 2, &r), 0);
    assert_int_equal(r.name_len, 4);
    assert_memory_equal(r.name, "echo", 4);
    assert_int_equal(r.arg_len, 10);
    assert_ptr_equal(r.arg, buf + sizeof(struct forksafe__zygote_hdr));
    assert_int_equal(r.nfds, 2);
    assert_int_equal(r.seq, 99);
    assert_int_equal(r.deadline, 4242);
    /* The largest request there is. */
    char name[FORKSAFE_ZYGOTE_NAME_MAX];
    memset(name, 'n', sizeof name);
    n = build(sizeof name, FORKSAFE_ZYGOTE_ARG_MAX, FORKSAFE_ZYGOTE_FDS_MAX,
              name, sizeof name, FORKSAFE_ZYGOTE_ARG_MAX);
    assert_int_equal(forksafe__zygote_decode(buf, n, FORKSAFE_ZYGOTE_FDS_MAX,
                                             &r), 0);
    n = build(4, 0, 0, "echo", 4, 0);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), 0);
    assert_null(r.arg);
}

static void decode_rejects_truncated_and_garbled(void **state)
{
    (void)state;
    struct forksafe__zygote_req r;
    size_t n = build(4, 10, 0, "echo", 4, 10);
    for (size_t cut = 0; cut < n; cut++)
        assert_int_not_equal(forksafe__zygote_decode(buf, cut, 0, &r), 0);
    assert_int_equal(forksafe__zygote_decode(buf, 5, 0, &r), EPROTO);
    assert_int_equal(r.seq, 0); /* header unreadable */
    assert_int_equal(forksafe__zygote_decode(buf, n - 1, 0, &r), EPROTO);
    assert_int_equal(r.seq, 99);
    assert_int_equal(forksafe__zygote_decode(NULL, 0, 0, &r), EPROTO);
    buf[0] ^= 1; /* magic */
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EPROTO);
    n = build(4, 10, 0, "echo", 4, 10);
    buf[4] = 2; /* kind */
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EPROTO);
    n = build(4, 10, 0, "echo", 4, 10);
    buf[20] = 1; /* reserved */
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EPROTO);
    /* Declared lengths that do not add up to the record. */
    n = build(4, 300, 0, "echo", 4, 10);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EPROTO);
    n = build(4, 10, 0, "echo", 4, 10);
    assert_int_equal(forksafe__zygote_decode(buf, n + 1, 0, &r), EPROTO);
}

static void decode_rejects_bad_names(void **state)
{
    (void)state;
    struct forksafe__zygote_req r;
    size_t n = build(0, 3, 0, "", 0, 3);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EINVAL);
    char name[FORKSAFE_ZYGOTE_NAME_MAX + 1];
    memset(name, 'n', sizeof name);
    n = build(sizeof name, 0, 0, name, sizeof name, 0);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EINVAL);
    n = build(4, 0, 0, "ec\0o", 4, 0);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EINVAL);
}

static void decode_rejects_oversized(void **state)
{
    (void)state;
    struct forksafe__zygote_req r;
    size_t n = build(4, FORKSAFE_ZYGOTE_ARG_MAX + 1, 0, "echo", 4, 8);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), E2BIG);
    n = build(4, UINT32_MAX, 0, "echo", 4, 8); /* no wrap-around */
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), E2BIG);
    n = build(4, 0, FORKSAFE_ZYGOTE_FDS_MAX + 1, "echo", 4, 0);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), E2BIG);
    n = build(4, 0, 0, "echo", 4, 0);
    assert_int_equal(forksafe__zygote_decode(buf, n,
                                             FORKSAFE_ZYGOTE_FDS_MAX + 1, &r),
                     E2BIG);
    /* Declared and received descriptor counts must agree. */
    n = build(4, 0, 1, "echo", 4, 0);
    assert_int_equal(forksafe__zygote_decode(buf, n, 2, &r), EPROTO);
    assert_int_equal(forksafe__zygote_decode(buf, n, 0, &r), EPROTO);
}

/* Replay every file of tests/fuzz/corpus/zygote-decode through the fuzz
   target's checks (they abort on a broken contract). */
static void decode_replays_fuzz_corpus(void **state)
{
    (void)state;
    char dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    assert_true(n > 0);
    dir[n] = '\0';
    /* build/<variant>/tests/spawn/test-zygote-decode -> the source root */
    for (int up = 0; up < 5; up++)
        *strrchr(dir, '/') = '\0';
    strncat(dir, "/tests/fuzz/corpus/zygote-decode",
            sizeof dir - strlen(dir) - 1);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int files = 0, accepted = 0;
    static uint8_t data[sizeof buf + 1];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t len = fread(data, 1, sizeof data, f);
        fclose(f);
        if (fs_zygote_decode_check(data, len) == 0)
            accepted++;
        files++;
    }
    closedir(d);
    assert_true(files >= 10);
    assert_true(accepted >= 1 && accepted < files);
}

int main(void)
{
    fs_watchdog(30);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_accepts_valid),
        cmocka_unit_test(decode_rejects_truncated_and_garbled),
        cmocka_unit_test(decode_rejects_bad_names),
        cmocka_unit_test(decode_rejects_oversized),
        cmocka_unit_test(decode_replays_fuzz_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
