#!/bin/sh
# SPDX-License-Identifier: MIT
# A pthread_atfork prepare handler forks once, while another thread is
# alive: the program makes 2 forks with threads. Expected the report counts
# "2 forks in 1 process; 2 with other threads alive"; actual it says
# "1 fork in 1 process; 1 with other threads alive" (every run): the fork
# made inside the prepare handler is not counted (the children are fine).
. "$(dirname "$0")/common.sh"
build atfork-fork
timeout -s KILL 30 "$RUN" --report "$W/rep" "$W/atfork-fork" || fail "children not ok"
grep -q '^forksafe-run: 2 forks in 1 process; 2 with other threads alive' "$W/rep" ||
    fail "report: $(grep 'in 1 process' "$W/rep")"
echo ok
