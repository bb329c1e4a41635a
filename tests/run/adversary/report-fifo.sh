#!/bin/sh
# SPDX-License-Identifier: MIT
# --report to a FIFO: expected the reader gets the report and forksafe-run
# exits with PROGRAM's status 3; actual: the FIFO is opened once before the
# run (the reader sees EOF) and again after it, with no reader left, so
# forksafe-run blocks forever in open(2) (and ignores SIGTERM there).
. "$(dirname "$0")/common.sh"
mkfifo "$W/fifo"
cat "$W/fifo" > "$W/out" &
timeout -s KILL 10 "$RUN" --report "$W/fifo" sh -c 'exit 3'
rc=$?
wait
[ $rc = 3 ] || fail "forksafe-run --report FIFO: expected status 3, got $rc (137 = killed after 10 s hung)"
grep -q 'program exited with status 3' "$W/out" || fail "the FIFO reader got no report: $(cat "$W/out")"
echo ok
