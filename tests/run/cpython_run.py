#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""CPython's own test suites with and without forksafe-run.

  cpython_run.py --cli FORKSAFE_RUN [--out FILE] [--keep DIR] SUITE...

Each suite (test_threading, test_subprocess, test_multiprocessing_fork,
test_concurrent_futures, ...) of Debian's libpython3.11-testsuite runs
twice with Debian's /usr/bin/python3: once as it is, once under
`forksafe-run --json REPORT`. Both runs write their per-test results with
--junit-xml; every test must have the same outcome (pass, failure, error,
skipped) in both. A test whose outcome differs is run again, alone (-m),
both ways, up to twice: only a difference that reproduces counts (some of
these tests are timing-dependent on a loaded machine). The report is
validated against docs/forksafe.schema.json (check_run.py), and its fork
counts are printed. The comparison itself is tests/cpython_compare.py.

Prints one line per suite and a closing line 'cpython-run: N tests, N
identical, N different'; exits 1 when a difference reproduced, a run
crashed or timed out, the exit statuses differ, or a report is invalid."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import cpython_compare  # noqa: E402


def fork_summary(report):
    try:
        with open(report) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return 'no report'
    f = doc['forks']
    w = doc.get('wait_ns')
    wait = ('wait median %.1f us, max %.1f us' %
            (w['median'] / 1e3, w['max'] / 1e3)) if w else 'no wait'
    return ('%d processes, %d forks, %d with threads, %d timed out, %d stuck;'
            ' %s' % (doc['processes'], f['total'], f['threaded'],
                     f['timed_out'], f['stuck'], wait))


RUN = cpython_compare.Tool(
    name='cpython-run', tag='run', under='under forksafe-run',
    without='forksafe-run',
    title='cpython under forksafe-run (per-test outcomes, without and with '
    'it):',
    validate=[os.path.join(HERE, 'check_run.py')], summary=fork_summary,
    width=26)

if __name__ == '__main__':
    sys.exit(cpython_compare.main(RUN))
