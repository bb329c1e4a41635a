#!/bin/sh
# SPDX-License-Identifier: MIT
# A thread holding no lock is blocked taking a process-shared mutex that
# another process holds. Expected: the fork has no holder in this process to
# wait for and goes ahead at once. Actual: it waits the whole --timeout-ms
# (3000 ms) and reports "timeout ... held by thread <pid of the other
# process>; the child may block on it forever" (every run).
. "$(dirname "$0")/common.sh"
build pshared-taker
timeout -s KILL 30 "$RUN" --timeout-ms 3000 "$W/pshared-taker" ||
    fail "the fork waited for a thread that only waits for another process"
echo ok
