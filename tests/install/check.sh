#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/install/check.sh: test what users get, against an installed copy
# only (run it with the build tree moved away):
#   check.sh PREFIX [FORBIDDEN_PATH...]
# PREFIX is where forksafe was installed (/usr for the Debian packages);
# nothing installed may name a FORBIDDEN_PATH (the source and build trees).
# Builds examples/demo.c and tests/install/adapters.c with pkg-config only
# (shared; adapters with --as-needed; statically with --static), and with
# CMake only (find_package), and runs each program. Prints one line per
# check and the time taken; exits non-zero on the first failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1
shift
forbidden=("$@")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/../../examples/demo.c" "$here/adapters.c" "$here/CMakeLists.txt" \
    "$work/"
cd "$work"

t0=$(date +%s%N)
step() { printf '  %-68s' "$1"; }
ok() {
    local ms=$((($(date +%s%N) - t0) / 1000000))
    printf 'ok (%d.%d s)\n' $((ms / 1000)) $((ms % 1000 / 100))
    t0=$(date +%s%N)
}
die() { echo "FAILED: $*"; exit 1; }

if [ "$prefix" != /usr ]; then
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
fi
libdir=$(pkg-config --variable=libdir forksafe)
[ "$(pkg-config --modversion forksafe)" = "$(pkg-config --modversion forksafe-sqlite)" ] ||
    die "forksafe and forksafe-sqlite versions differ"
rpath=()
[ "$prefix" = /usr ] || rpath=("-Wl,-rpath,$libdir")
cflags=(-std=c11 -Wall -Wextra -Werror -O2)

step "no RUNPATH but \$ORIGIN; no text file names the build tree"
installed=("$prefix/include/forksafe.h" "$prefix/include/forksafe"
           "$libdir"/libforksafe* "$libdir/forksafe" "$libdir"/pkgconfig/forksafe*
           "$libdir/cmake/forksafe" "$prefix"/bin/forksafe*
           "$prefix/share/doc/forksafe" "$prefix/share/forksafe"
           "$prefix"/share/man/man*/forksafe*)
n=0
while IFS= read -r -d '' f; do
    n=$((n + 1))
    if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
        rp=$(readelf -d "$f" | grep -E '\((RPATH|RUNPATH)\)' || true)
        if [ -n "$rp" ] && ! echo "$rp" | grep -qF '[$ORIGIN]'; then
            die "$f has a search path: $rp"
        fi
    else
        # Text files only (-I): archives and objects carry the source path
        # in their debug information, as any unstripped build does.
        for p in "${forbidden[@]}"; do
            if grep -qIF "$p" "$f"; then die "$f names $p"; fi
        done
    fi
done < <(for p in "${installed[@]}"; do [ ! -e "$p" ] || printf '%s\0' "$p"; done |
         xargs -0 -I{} find {} -type f -print0)
[ "$n" -gt 20 ] || die "only $n installed files found"
ok

step "core, shared, pkg-config only: demo runs"
cc "${cflags[@]}" -o demo demo.c $(pkg-config --cflags --libs forksafe) "${rpath[@]}"
./demo > demo.out || die "demo exited with $?"
grep -q '2. locks registered: *0 of' demo.out || die "demo: $(sed -n 3,6p demo.out)"
ok

step "adapters only, --as-needed: the core is found through them"
cc "${cflags[@]}" -o adapters-shared adapters.c -Wl,--as-needed \
    $(pkg-config --cflags --libs forksafe-sqlite forksafe-random sqlite3) "${rpath[@]}"
if readelf -d adapters-shared | grep -q 'NEEDED.*\[libforksafe\.so'; then
    die "the test is void: adapters-shared needs libforksafe directly"
fi
./adapters-shared > /dev/null || die "adapters-shared exited with $?"
ok

step "adapters, static, pkg-config --static only"
cc "${cflags[@]}" -static -o adapters-static adapters.c \
    $(pkg-config --static --cflags --libs forksafe-sqlite forksafe-random) \
    2> static.err || die "static link: $(grep -v 'statically linked' static.err | head -5)"
if readelf -d adapters-static 2>/dev/null | grep -q NEEDED; then
    die "adapters-static is not static"
fi
./adapters-static > /dev/null || die "adapters-static exited with $?"
ok

if command -v cmake > /dev/null; then
    cmake_prefix=()
    [ "$prefix" = /usr ] || cmake_prefix=("-DCMAKE_PREFIX_PATH=$prefix")
    step "CMake only: find_package(forksafe 0.2 COMPONENTS sqlite random)"
    cmake -S . -B cmake-build "${cmake_prefix[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_BUILD_RPATH_USE_ORIGIN=OFF > cmake.log 2>&1 ||
        die "cmake: $(tail -20 cmake.log)"
    cmake --build cmake-build > cmake-build.log 2>&1 ||
        die "cmake --build: $(tail -20 cmake-build.log)"
    cmake-build/demo > /dev/null || die "CMake demo exited with $?"
    if readelf -d cmake-build/demo-static | grep -q 'NEEDED.*libforksafe'; then
        die "forksafe::forksafe_static linked the shared library"
    fi
    cmake-build/demo-static > /dev/null || die "CMake demo-static exited with $?"
    cmake-build/adapters > /dev/null || die "CMake adapters exited with $?"
    ok
    for want in 0.3 1.0 '0.3...1.0'; do
        step "CMake refuses find_package(forksafe $want)"
        if cmake -S . -B "cmake-refuse" "${cmake_prefix[@]}" \
               -DFORKSAFE_WANT="$want" > refuse.log 2>&1; then
            die "find_package(forksafe $want) succeeded"
        fi
        grep -q 'forksafe' refuse.log || die "no message: $(tail -5 refuse.log)"
        rm -rf cmake-refuse
        ok
    done
    step "CMake refuses a missing adapter component"
    if cmake -S . -B cmake-refuse "${cmake_prefix[@]}" \
           -DFORKSAFE_COMPONENTS="sqlite;nosuch" > refuse.log 2>&1; then
        die "COMPONENTS nosuch succeeded"
    fi
    grep -q "adapter 'nosuch' is not installed" refuse.log ||
        die "no clear message: $(tail -8 refuse.log)"
    ok
fi

step "forksafe-audit runs from the installation"
"$prefix/bin/forksafe-audit" --json audit.json -- ./adapters-shared > /dev/null 2> audit.err ||
    die "forksafe-audit: $(tail -5 audit.err)"
grep -q '"schema": "forksafe-audit"' audit.json || die "no JSON report"
ok

step "the audit's report is valid against the installed JSON schema"
schema="$prefix/share/forksafe/forksafe.schema.json"
[ -f "$schema" ] || die "$schema is not installed"
"$prefix/bin/forksafe-audit" --help 2>&1 | grep -qF "$schema" ||
    die "forksafe-audit --help does not name $schema"
FORKSAFE_SCHEMA="$schema" python3 "$here/../audit/check_report.py" --any audit.json \
    > schema.out 2>&1 || die "$(cat schema.out)"
ok

step "man pages are found"
man_path="$prefix/share/man"
for page in forksafe-audit forksafe_fork forksafe_register_mutex; do
    MANPATH="$man_path" man -w "$page" > /dev/null 2>&1 || die "man $page not found"
done
ok
