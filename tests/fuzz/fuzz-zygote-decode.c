/* SPDX-License-Identifier: MIT */
/*
 * fuzz-zygote-decode.c: libFuzzer target for the fork server's request
 * decoder (src/zygote-proto.c). Built with clang by tests/spawn/SConscript;
 * run it with `scons CC=clang fuzz`. Crashes go into corpus/zygote-decode/
 * so that test-zygote-decode replays them forever after.
 */
#include <stddef.h>
#include <stdint.h>

#include "zygote-decode-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fs_zygote_decode_check(data, size);
    return 0;
}
