#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""CPython's own test suites as the oracle for forksafe-audit.

  cpython_oracle.py --cli FORKSAFE_AUDIT [--out FILE] SUITE...

Each suite (test_multiprocessing_fork, test_os, ...) of Debian's
libpython3.11-testsuite runs twice with Debian's /usr/bin/python3: once as
it is, once under forksafe-audit. Both runs write their per-test results
with --junit-xml; every test must have the same outcome (passed, failed,
error, skipped) in both. A test whose outcome differs is run again, alone
(-m), both ways, up to twice: only a difference that reproduces counts
(some of these tests are timing-dependent on a loaded machine). The audit's
JSON report is validated against docs/forksafe.schema.json.

Prints one line per suite (tests, identical outcomes, differences, times)
and a closing line 'cpython: N tests, N identical, N different'; exits 1
when a difference reproduced, a run crashed or timed out, or a report is
invalid. The suites need SIGINT at its default disposition (InterruptMain
tests send it to themselves); it is reset for every run."""
import argparse
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
    """test id -> 'pass' | 'failure' | 'error' | 'skipped'."""
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
    if tag.startswith('audit'):
        report = os.path.join(work, '%s-%s.json' % (suite, tag))
        argv = [cli, '--json', report, '--'] + argv
    if os.path.exists(xml):
        os.unlink(xml)
    code, secs = run(argv, work, log)
    return code, outcomes(xml), secs


def validate(report):
    p = subprocess.run([PYTHON, os.path.join(HERE, 'check_report.py'),
                        '--any', report], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode(errors='replace').strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cli', required=True)
    ap.add_argument('--out')
    ap.add_argument('--keep', help='keep logs, results and reports here')
    ap.add_argument('suites', nargs='+')
    a = ap.parse_args()
    probe = subprocess.run([PYTHON, '-c', 'import test.support'],
                           stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        print('cpython: CPython test package missing '
              '(apt-get install libpython3.11-testsuite)')
        return 1
    work = a.keep or tempfile.mkdtemp(prefix='fs-cpython-')
    os.makedirs(work, exist_ok=True)
    total = same = diff = 0
    bad = []
    lines = []
    for suite in a.suites:
        pc, plain, pt = suite_run(a.cli, suite, work, 'plain')
        ac, audit, at = suite_run(a.cli, suite, work, 'audit')
        if plain is None or audit is None:
            bad.append('%s: no results (plain exit %s, audited exit %s; '
                       'logs in %s)' % (suite, pc, ac, work))
            lines.append('  %-28s no results: plain exit %s, audited exit '
                         '%s' % (suite, pc, ac))
            continue
        report = os.path.join(work, '%s-audit.json' % suite)
        ok, why = validate(report)
        if not ok:
            bad.append('%s: invalid report: %s' % (suite, why))
        names = sorted(set(plain) | set(audit))
        differing = [n for n in names if plain.get(n) != audit.get(n)]
        confirmed = []
        for name in differing:
            # Alone, both ways, twice: does the difference reproduce?
            reproduced = True
            for attempt in range(2):
                _, p, _ = suite_run(a.cli, suite, work, 'plain-rerun', name)
                _, q, _ = suite_run(a.cli, suite, work, 'audit-rerun', name)
                if p is not None and q is not None and \
                        p.get(name) == q.get(name):
                    reproduced = False
                    break
            if reproduced:
                confirmed.append('%s: plain %s, audited %s' %
                                 (name, plain.get(name), audit.get(name)))
        n = len(names)
        total += n
        diff += len(confirmed)
        same += n - len(confirmed)
        status = 'ok' if not confirmed and pc == ac else 'DIFFERENT'
        if pc != ac and not confirmed:
            bad.append('%s: exit status %s without the audit, %s with it' %
                       (suite, pc, ac))
        lines.append('  %-28s %4d tests, %4d identical, %d different '
                     '(%d re-run, flaky); plain %.0f s, audited %.0f s: %s' %
                     (suite, n, n - len(confirmed), len(confirmed),
                      len(differing) - len(confirmed), pt, at, status))
        for c in confirmed:
            lines.append('      ' + c)
            bad.append('%s: %s' % (suite, c))
        print(lines[-1 - len(confirmed)], flush=True)
    closing = 'cpython: %d tests, %d identical, %d different' % (total, same,
                                                                  diff)
    print('\n'.join(['cpython oracle (per-test outcomes, without and with '
                     'forksafe-audit):'] + lines + [closing]))
    for b in bad:
        print('FAILED: ' + b)
    if a.out:
        with open(a.out, 'w') as fh:
            fh.write('\n'.join(lines + [closing]) + '\n')
    if not a.keep and not bad:
        shutil.rmtree(work, ignore_errors=True)
    elif not a.keep:
        print('cpython: logs kept in ' + work)
    return 1 if bad else 0


sys.exit(main())
