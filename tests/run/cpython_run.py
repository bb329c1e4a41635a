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
counts are printed.

Prints one line per suite and a closing line 'cpython-run: N tests, N
identical, N different'; exits 1 when a difference reproduced, a run
crashed or timed out, the exit statuses differ, or a report is invalid."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

PYTHON = '/usr/bin/python3'
HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 1500  # seconds per suite run


def default_signals():
    # The suites send SIGINT to themselves (InterruptMain tests).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def run(argv, cwd, log):
    t0 = time.monotonic()
    with open(log, 'wb') as fh:
        try:
            p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                               stdout=fh, stderr=subprocess.STDOUT,
                               preexec_fn=default_signals, timeout=LIMIT)
            code = p.returncode
        except subprocess.TimeoutExpired:
            code = 'timeout'
    return code, time.monotonic() - t0


def outcomes(path):
    """test id -> 'pass' | 'failure' | 'error' | 'skipped', or None."""
    if not os.path.exists(path):
        return None
    out = {}
    for case in ET.parse(path).getroot().iter('testcase'):
        state = 'pass'
        for child in case:
            if child.tag in ('failure', 'error', 'skipped'):
                state = child.tag
        out[case.get('name')] = state
    return out


def suite_run(cli, suite, work, tag, match=None):
    """One run of suite; returns (exit code, outcomes, seconds)."""
    xml = os.path.join(work, '%s-%s.xml' % (suite, tag))
    log = os.path.join(work, '%s-%s.log' % (suite, tag))
    argv = [PYTHON, '-m', 'test', suite, '--junit-xml', xml]
    if match:
        argv[4:4] = ['-m', match]
    if tag.startswith('run'):
        report = os.path.join(work, '%s-%s.json' % (suite, tag))
        argv = [cli, '--json', report, '--'] + argv
    if os.path.exists(xml):
        os.unlink(xml)
    code, secs = run(argv, work, log)
    return code, outcomes(xml), secs


def validate(report):
    p = subprocess.run([PYTHON, os.path.join(HERE, 'check_run.py'), report],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode(errors='replace').strip()


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cli', required=True)
    ap.add_argument('--out')
    ap.add_argument('--keep', help='keep logs, results and reports here')
    ap.add_argument('suites', nargs='+')
    a = ap.parse_args()
    a.cli = os.path.abspath(a.cli)
    probe = subprocess.run([PYTHON, '-c', 'import test.support'],
                           stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        print('cpython-run: CPython test package missing '
              '(apt-get install libpython3.11-testsuite)')
        return 1
    work = a.keep or tempfile.mkdtemp(prefix='fs-cpython-run-')
    os.makedirs(work, exist_ok=True)
    total = same = diff = 0
    bad = []
    lines = []
    for suite in a.suites:
        pc, plain, pt = suite_run(a.cli, suite, work, 'plain')
        rc, under, rt = suite_run(a.cli, suite, work, 'run')
        if plain is None or under is None:
            bad.append('%s: no results (plain exit %s, under forksafe-run '
                       'exit %s; logs in %s)' % (suite, pc, rc, work))
            lines.append('  %-28s no results: plain exit %s, under '
                         'forksafe-run exit %s' % (suite, pc, rc))
            print(lines[-1], flush=True)
            continue
        report = os.path.join(work, '%s-run.json' % suite)
        ok, why = validate(report)
        if not ok:
            bad.append('%s: invalid report: %s' % (suite, why))
        names = sorted(set(plain) | set(under))
        differing = [n for n in names if plain.get(n) != under.get(n)]
        confirmed = []
        for name in differing:
            reproduced = True
            for attempt in range(2):
                _, p, _ = suite_run(a.cli, suite, work, 'plain-rerun', name)
                _, q, _ = suite_run(a.cli, suite, work, 'run-rerun', name)
                if p is not None and q is not None and \
                        p.get(name) == q.get(name):
                    reproduced = False
                    break
            if reproduced:
                confirmed.append('%s: plain %s, under forksafe-run %s' %
                                 (name, plain.get(name), under.get(name)))
        n = len(names)
        total += n
        diff += len(confirmed)
        same += n - len(confirmed)
        status = 'ok' if not confirmed and pc == rc else 'DIFFERENT'
        if pc != rc and not confirmed:
            bad.append('%s: exit status %s without forksafe-run, %s with it'
                       % (suite, pc, rc))
        lines.append('  %-26s %4d tests, %4d identical, %d different '
                     '(%d re-run, flaky); plain %.0f s, under %.0f s: %s' %
                     (suite, n, n - len(confirmed), len(confirmed),
                      len(differing) - len(confirmed), pt, rt, status))
        lines.append('      ' + fork_summary(report))
        for c in confirmed:
            lines.append('      ' + c)
            bad.append('%s: %s' % (suite, c))
        print('\n'.join(lines[-2 - len(confirmed):]), flush=True)
    closing = 'cpython-run: %d tests, %d identical, %d different' % (
        total, same, diff)
    print('\n'.join(['cpython under forksafe-run (per-test outcomes, without '
                     'and with it):'] + lines + [closing]))
    for b in bad:
        print('FAILED: ' + b)
    if a.out:
        with open(a.out, 'w') as fh:
            fh.write('\n'.join(lines + [closing]) + '\n')
    if not a.keep and not bad:
        shutil.rmtree(work, ignore_errors=True)
    elif not a.keep:
        print('cpython-run: logs kept in ' + work)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
