#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""CPython's own test suites with and without one of forksafe's commands.

The engine behind tests/audit/cpython_oracle.py (forksafe-audit) and
tests/run/cpython_run.py (forksafe-run); each of them describes its
command with a Tool and calls main().

Each suite of Debian's libpython3.11-testsuite runs twice with Debian's
/usr/bin/python3: once as it is, once under the command with a JSON
report. Both runs write their per-test results with --junit-xml; every
test must have the same outcome (pass, failure, error, skipped) in both.
A test whose outcome differs is run again, alone (-m), both ways, up to
twice: only a difference that reproduces counts (some of these tests are
timing-dependent on a loaded machine). The report is validated against
docs/forksafe.schema.json. The suites need SIGINT at its default
disposition (InterruptMain tests send it to themselves); it is reset for
every run.

Prints one line per suite (tests, identical outcomes, differences, times)
and a closing line 'NAME: N tests, N identical, N different'; exits 1 when
a difference reproduced, a run crashed or timed out, the exit statuses
differ, or a report is invalid."""
import argparse
import collections
import os
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

PYTHON = '/usr/bin/python3'
LIMIT = 1500  # seconds per suite run

# name: the closing line's and messages' prefix ('cpython'); tag: the
# runs' file tag ('audit'); under: how a message names the second run
# ('audited'); without: the command, for "exit status N without X";
# title: the heading; validate: argv before the report path; summary:
# report path -> one line, or None; width: the suite column.
Tool = collections.namedtuple(
    'Tool', 'name tag under without title validate summary width')


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


def suite_run(tool, cli, suite, work, tag, match=None):
    """One run of suite; returns (exit code, outcomes, seconds)."""
    xml = os.path.join(work, '%s-%s.xml' % (suite, tag))
    log = os.path.join(work, '%s-%s.log' % (suite, tag))
    argv = [PYTHON, '-m', 'test', suite, '--junit-xml', xml]
    if match:
        argv[4:4] = ['-m', match]
    if tag.startswith(tool.tag):
        report = os.path.join(work, '%s-%s.json' % (suite, tag))
        argv = [cli, '--json', report, '--'] + argv
    if os.path.exists(xml):
        os.unlink(xml)
    code, secs = run(argv, work, log)
    return code, outcomes(xml), secs


def validate(tool, report):
    p = subprocess.run([PYTHON] + tool.validate + [report],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode == 0, p.stdout.decode(errors='replace').strip()


def main(tool):
    ap = argparse.ArgumentParser()
    ap.add_argument('--cli', required=True)
    ap.add_argument('--out')
    ap.add_argument('--keep', help='keep logs, results and reports here')
    ap.add_argument('suites', nargs='+')
    a = ap.parse_args()
    cli = os.path.abspath(a.cli)
    probe = subprocess.run([PYTHON, '-c', 'import test.support'],
                           stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        print('%s: CPython test package missing '
              '(apt-get install libpython3.11-testsuite)' % tool.name)
        return 1
    work = a.keep or tempfile.mkdtemp(prefix='fs-%s-' % tool.name)
    os.makedirs(work, exist_ok=True)
    total = same = diff = 0
    bad = []
    lines = []
    for suite in a.suites:
        pc, plain, pt = suite_run(tool, cli, suite, work, 'plain')
        uc, under, ut = suite_run(tool, cli, suite, work, tool.tag)
        if plain is None or under is None:
            bad.append('%s: no results (plain exit %s, %s exit %s; logs in '
                       '%s)' % (suite, pc, tool.under, uc, work))
            lines.append('  %-*s no results: plain exit %s, %s exit %s' %
                         (tool.width, suite, pc, tool.under, uc))
            print(lines[-1], flush=True)
            continue
        report = os.path.join(work, '%s-%s.json' % (suite, tool.tag))
        ok, why = validate(tool, report)
        if not ok:
            bad.append('%s: invalid report: %s' % (suite, why))
        names = sorted(set(plain) | set(under))
        differing = [n for n in names if plain.get(n) != under.get(n)]
        confirmed = []
        for name in differing:
            # Alone, both ways, twice: does the difference reproduce?
            reproduced = True
            for attempt in range(2):
                _, p, _ = suite_run(tool, cli, suite, work, 'plain-rerun',
                                    name)
                _, q, _ = suite_run(tool, cli, suite, work,
                                    tool.tag + '-rerun', name)
                if p is not None and q is not None and \
                        p.get(name) == q.get(name):
                    reproduced = False
                    break
            if reproduced:
                confirmed.append('%s: plain %s, %s %s' %
                                 (name, plain.get(name), tool.under,
                                  under.get(name)))
        n = len(names)
        total += n
        diff += len(confirmed)
        same += n - len(confirmed)
        status = 'ok' if not confirmed and pc == uc else 'DIFFERENT'
        if pc != uc and not confirmed:
            bad.append('%s: exit status %s without %s, %s with it' %
                       (suite, pc, tool.without, uc))
        first = len(lines)
        lines.append('  %-*s %4d tests, %4d identical, %d different '
                     '(%d re-run, flaky); plain %.0f s, %s %.0f s: %s' %
                     (tool.width, suite, n, n - len(confirmed),
                      len(confirmed), len(differing) - len(confirmed), pt,
                      tool.under, ut, status))
        if tool.summary:
            lines.append('      ' + tool.summary(report))
        for c in confirmed:
            lines.append('      ' + c)
            bad.append('%s: %s' % (suite, c))
        print('\n'.join(lines[first:]), flush=True)
    closing = '%s: %d tests, %d identical, %d different' % (tool.name, total,
                                                            same, diff)
    print('\n'.join([tool.title] + lines + [closing]))
    for b in bad:
        print('FAILED: ' + b)
    if a.out:
        with open(a.out, 'w') as fh:
            fh.write('\n'.join(lines + [closing]) + '\n')
    if not a.keep and not bad:
        shutil.rmtree(work, ignore_errors=True)
    elif not a.keep:
        print('%s: logs kept in %s' % (tool.name, work))
    return 1 if bad else 0
