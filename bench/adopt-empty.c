/* SPDX-License-Identifier: MIT */
/*
 * adopt-empty.c: a shared library that does nothing, linked with
 * libforksafe's own flags so that it has the same segments (one read-only
 * and code segment, one read-only after relocation, one of data). The
 * hand-written worker linked with it (adopt-hand-dso) is what any shared
 * library costs the hand-written program at fork(): its mappings and the
 * pages a parent and child touch. bench-adopt compares forksafe with it.
 */
int adopt_empty_data = 1;

static int one(void)
{
    return 1;
}

/* A pointer the loader fills in: the table lives in the relro segment. */
static int (*const adopt_empty_table[])(void) = {one};

int adopt_empty(void);

int adopt_empty(void)
{
    return adopt_empty_table[0]() + adopt_empty_data;
}
