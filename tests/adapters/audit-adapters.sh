#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/adapters/audit-adapters.sh BUILD_DIR [FORKS]: check every adapter's
# ranks against the real library under `forksafe-audit --fail-on error`.
#
# 1. Each adapter suite (test-<lib>) under the audit, without its
#    deliberately hazardous "*without*" tests: those fork with the adapter
#    left out on purpose, and the children they leave blocked on a lock are
#    the child-deadlock errors the audit exists to report.
# 2. Each workload (workload-<lib>: threads using the library as its users
#    do while the main thread calls forksafe_fork FORKS times, default
#    1,000, with a 300 ms deadline) under the audit; it exits non-zero on a
#    refused fork or a failed child.
# 3. The single-threaded SQLite program of issue 11 (target-sqlite-random).
#
# Prints one line per program: audit exit status, errors, lock-order
# violations, the workload's own figures, seconds. Exits 1 if any audit
# exit status is not 0. Build first: `scons test` (release build).
set -uo pipefail
build=$(cd "${1:?usage: audit-adapters.sh BUILD_DIR [FORKS]}" && pwd)
forks=${2:-1000}
cli=$build/src/cli/forksafe-audit
dir=$build/tests/adapters
[ -x "$cli" ] || { echo "audit-adapters: no $cli (build first)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

count() { # JSON file -> "errors lock-order-violations"
    python3 - "$1" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print("? ?"); sys.exit(0)
f = d.get("findings", [])
print(sum(1 for x in f if x.get("severity") == "error"),
      sum(1 for x in f if x.get("kind") == "lock-order-violation"))
PY
}

run() { # label, program, args...
    local label=$1; shift
    local t0=$SECONDS
    (cd "$dir" && FS_TEST_SKIP='*without*' "$cli" --fail-on error \
        --json "$tmp/$label.json" -- "$@" >"$tmp/$label.out" 2>&1)
    local rc=$?
    local figures
    figures=$(grep -h '^workload-[a-z]*.*: forks=' "$tmp/$label.out" || true)
    printf '%-22s audit_exit=%s errors/lock_order=%s %s %ss\n' "$label" "$rc" \
        "$(count "$tmp/$label.json" | tr ' ' /)" "$figures" $((SECONDS - t0))
    if [ "$rc" -ne 0 ]; then
        status=1
        grep -E '^(error|fork [0-9]+ refused|child [0-9]+|thread error)' \
            "$tmp/$label.out" | head -5 | sed 's/^/    /'
    fi
}

for t in "$dir"/test-*; do
    [ -x "$t" ] || continue
    n=$(basename "$t")
    case $n in test-adapters-audit) continue ;; esac
    run "$n" "./$n"
done
for w in "$dir"/workload-*; do
    [ -x "$w" ] || continue
    n=$(basename "$w")
    run "$n" "./$n" --forks "$forks" --timeout-ms 300 --threads 6
done
[ -x "$dir/target-sqlite-random" ] &&
    run target-sqlite-random ./target-sqlite-random
exit $status
