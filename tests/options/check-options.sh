#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/options/check-options.sh: the build's conventions for packagers and
# users, checked against SConstruct. It works in a copy of the tracked
# files, so the tree's own build is not touched.
#   - CFLAGS, CPPFLAGS, LDFLAGS from the command line and the environment,
#     after the project's flags (LDFLAGS before the libraries);
#   - ADAPTERS: unknown names and a missing library are clear errors;
#   - configure results are refreshed when a header appears;
#   - FUZZ_SECONDS and BENCH_ROUNDS are validated options, and
#     FUZZ_SECONDS reaches `scons fuzz` from the command line or the
#     environment (with clang);
#   - variant names are safe for a CC with arguments;
#   - scons -h documents WERROR=0, --config=force and uninstall.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/tree"
git ls-files -z | tar --null -T - -cf - | tar -x -C "$tmp/tree"
cd "$tmp/tree"
t0=$(date +%s%N)
step() { printf '  %-68s' "$1"; }
ok() {
    local ms=$((($(date +%s%N) - t0) / 1000000))
    printf 'ok (%d.%d s)\n' $((ms / 1000)) $((ms % 1000 / 100))
    t0=$(date +%s%N)
}
die() { echo "FAILED: $*"; exit 1; }
step "CFLAGS, CPPFLAGS on the command line come after -O2"
out=$(scons -Q VERBOSE=1 CFLAGS="-O3 -DFS_FROM_CLI" CPPFLAGS=-DFS_CPP_CLI \
      build/release/src/version.o 2>&1) || die "$out"
line=$(echo "$out" | grep -- '-c .*src/version.c' | head -1)
[ -n "$line" ] || die "no compile line: $out"
[[ $line == *"-O2 "*"-DFS_CPP_CLI"*"-O3 -DFS_FROM_CLI"* ]] || die "order: $line"
ok

step "CFLAGS, LDFLAGS from the environment; LDFLAGS before the libraries"
# Configure once with these flags, then a dry run prints every command.
export CFLAGS=-DFS_FROM_ENV LDFLAGS=-Wl,--as-needed
scons -Q build/release/src/forksafe.pc > /dev/null 2>&1
out=$(scons -Q -n VERBOSE=1 build/release/src 2>&1) || die "$out"
unset CFLAGS LDFLAGS
echo "$out" | grep -- '-c .*src/version.c' | grep -q -- '-DFS_FROM_ENV' ||
    die "environment CFLAGS dropped: $out"
link=$(echo "$out" | grep -- '-o build/release/src/libforksafe.so' | head -1)
[[ $link == *"-Wl,--as-needed "*"fork.os"*"-ldl"* ]] || die "link order: $link"
ok

step "ADAPTERS=nope is refused, naming the adapters"
if out=$(scons -Q ADAPTERS=sqlite,nope 2>&1); then die "accepted: $out"; fi
[[ $out == *"ADAPTERS takes auto, none or a comma-separated list of"*"zmq"* ]] ||
    die "$out"
ok

# A header that fails to compile hides the real one, as if the -dev package
# were not installed.
mkdir -p "$tmp/inc"
echo '#error hidden by tests/options/check-options.sh' > "$tmp/inc/sqlite3.h"
step "ADAPTERS=sqlite with sqlite3.h missing: a clear error"
if out=$(scons -Q ADAPTERS=sqlite CPPFLAGS="-I$tmp/inc" build/release/src/forksafe.pc 2>&1); then
    die "built without sqlite: $out"
fi
[[ $out == *"forksafe-sqlite needs sqlite3.h and -lsqlite3, not found (apt-get install libsqlite3-dev)"* ]] ||
    die "$out"
ok

step "ADAPTERS=auto: sqlite off while hidden, on once it appears"
pc=build/release/src/forksafe.pc
out=$(scons -Q CPPFLAGS="-I$tmp/inc" $pc 2>&1) || die "$out"
[[ $out == *"adapter forksafe-sqlite is off"* ]] || die "not off: $out"
rm "$tmp/inc/sqlite3.h"   # as if libsqlite3-dev were installed now
out=$(scons -Q CPPFLAGS="-I$tmp/inc" $pc 2>&1) || die "$out"
[[ $out != *"forksafe-sqlite is off"* ]] || die "stale configure result: $out"
ok

step "FUZZ_SECONDS and BENCH_ROUNDS are validated options"
for opt in FUZZ_SECONDS BENCH_ROUNDS; do
    if out=$(scons -Q $opt=abc $pc 2>&1); then die "$opt=abc accepted"; fi
    [[ $out == *"$opt takes a positive whole number"* ]] || die "$out"
done
ok

if command -v clang > /dev/null; then
    step "FUZZ_SECONDS reaches the fuzzer, the command line winning"
    scons -Q CC=clang build/release-clang/src/forksafe.pc > /dev/null 2>&1 ||
        die "configure with clang failed"
    fuzz_secs() {
        scons -Q -n CC=clang "$@" fuzz 2>&1 | grep -o 'max_total_time=[0-9]*' | head -1
    }
    [ "$(fuzz_secs FUZZ_SECONDS=7)" = max_total_time=7 ] ||
        die "FUZZ_SECONDS=7: $(fuzz_secs FUZZ_SECONDS=7)"
    [ "$(FUZZ_SECONDS=9 fuzz_secs)" = max_total_time=9 ] ||
        die "environment FUZZ_SECONDS=9: $(FUZZ_SECONDS=9 fuzz_secs)"
    [ "$(FUZZ_SECONDS=9 fuzz_secs FUZZ_SECONDS=4)" = max_total_time=4 ] ||
        die "command line FUZZ_SECONDS=4 under environment 9"
    ok
fi

step "CC with arguments: a variant directory without spaces"
scons -Q CC="gcc -fno-common" no-such-target > /dev/null 2>&1 || true
dir=$(ls -d build/.sconf-release-gcc* 2>/dev/null || true)
[[ $dir == build/.sconf-release-gcc-fno-common-[0-9a-f]* && $dir != *" "* ]] ||
    die "variant: '$dir'"
ok

step "scons -h documents WERROR=0, --config=force, uninstall, ..."
help=$(scons -Q -h 2>&1)
for want in 'WERROR=0' '--config=force' 'uninstall' 'FUZZ_SECONDS' 'ADAPTERS'; do
    [[ $help == *"$want"* ]] || die "scons -h does not mention $want"
done
ok
