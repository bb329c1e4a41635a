/* SPDX-License-Identifier: MIT */
/* run-plain.c: a library with nothing in it, for a child to dlopen(). */
int run_plain_marker;
