/* SPDX-License-Identifier: MIT */
/*
 * empty-preload.c: a preload library with one function and nothing else,
 * built for bench-audit. What it costs a program image is the loader's
 * fixed price for any LD_PRELOAD library (one more object to open, map,
 * relocate and search), the floor against which the interposer's own
 * overhead is read.
 */
int forksafe_bench_empty_preload(void);

int forksafe_bench_empty_preload(void)
{
    return 0;
}
