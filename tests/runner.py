#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run forksafe's cmocka test programs one after another.

Each program gets a hard time limit (the tests have their own watchdogs;
this one only catches a runner-level hang). cmocka's own summary lines are
parsed, and one closing line 'tests: N passed, N failed' is printed. The exit
status is non-zero if any test failed, any program crashed or timed out, or
no test ran at all."""
import argparse
import os
import re
import subprocess
import sys
import time

LIMIT = 600

ap = argparse.ArgumentParser()
ap.add_argument('--filter', default='')
ap.add_argument('--out')
ap.add_argument('programs', nargs='+')
args = ap.parse_args()

passed = failed = 0
broken = []
for prog in args.programs:
    name = os.path.basename(prog)
    if args.filter and args.filter not in name:
        continue
    print('==> %s' % name, flush=True)
    t0 = time.monotonic()
    try:
        r = subprocess.run([prog], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=LIMIT, cwd=os.path.dirname(prog))
        out = r.stdout.decode(errors='replace')
        code = r.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode(errors='replace')
        code = 'timeout'
    sys.stdout.write(out)
    p = sum(int(m) for m in re.findall(r'^\[  PASSED  \] (\d+) test', out, re.M))
    f = sum(int(m) for m in re.findall(r'^\[  FAILED  \] (\d+) test', out, re.M))
    passed += p
    failed += f
    if code != 0 and f == 0:
        broken.append('%s (exit %s)' % (name, code))
        failed += 1
    print('<== %s: %d passed, %d failed, %.1f s' %
          (name, p, f, time.monotonic() - t0), flush=True)

for b in broken:
    print('BROKEN: %s' % b)
line = 'tests: %d passed, %d failed' % (passed, failed)
print(line)
if args.out:
    with open(args.out, 'w') as fh:
        fh.write(line + '\n')
sys.exit(1 if failed or passed == 0 else 0)
