# SPDX-License-Identifier: MIT
# Shared setup for the adversary reproducers: each NAME.sh exits 0 when the
# documented promise holds and 1 (printing expected vs actual) when it breaks.
TOP=$(cd "$(dirname "$0")/../../.." && pwd)
RUN=${RUN:-$TOP/build/release/src/run/forksafe-run}
PRE=${PRE:-$TOP/build/release/src/run/libforksafe-run.so}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/fsadv.XXXXXX)
trap 'rm -rf "$W"' EXIT
build() { # build NAME [extra cc args]: $W/NAME from $HERE/NAME.c
    n=$1; shift
    cc -std=gnu11 -O2 -pthread -o "$W/$n" "$HERE/$n.c" "$@" || exit 2
}
fail() { echo "BROKEN: $*"; exit 1; }
