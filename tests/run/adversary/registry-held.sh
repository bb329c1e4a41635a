#!/bin/sh
# SPDX-License-Identifier: MIT
# A mutex registered with libforksafe is held by another thread across a
# blocking read; fork() under --timeout-ms 200. Expected: the wait is done
# once ("nothing is done twice") and the report's maximum wait is the wait
# the fork really had. Actual (every run): forksafe-run waits 200 ms, then
# libforksafe's prepare waits its own 5000 ms: fork() takes ~5200 ms while
# the report says "maximum 200 ms".
. "$(dirname "$0")/common.sh"
build registry-held -I"$TOP/include" -L"$TOP/build/release/src" \
    -Wl,-rpath,"$TOP/build/release/src" -lforksafe
out=$(timeout -s KILL 60 "$RUN" --timeout-ms 200 --report "$W/rep" "$W/registry-held")
ms=$(echo "$out" | sed -n 's/.*fork() took \([0-9]*\) ms.*/\1/p')
max=$(sed -n 's/.*maximum \([0-9.]*\) ms.*/\1/p' "$W/rep")
echo "fork() took $ms ms; report maximum wait $max ms"
[ "${ms:-99999}" -lt 5100 ] || fail "the fork waited twice: $ms ms for a 200 ms timeout plus libforksafe's 5000 ms"
echo ok
