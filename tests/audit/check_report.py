#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Validate a forksafe-audit JSON report against the documented schema
(docs/audit.md, schema "forksafe-audit" version 1) and check expectations.

  check_report.py REPORT [--kinds a,b] [--has KIND] [--count KIND=N]
                  [--frame KIND:ROLE:FIELD=VALUE] [--detail KIND:KEY~TEXT]
                  [--thread-tid-file FILE]

--kinds:  the set of finding kinds must be exactly this ("" = no findings).
--frame:  some finding of KIND has a frame with role ROLE whose FIELD
          (function, object, tid, thread_name) equals VALUE.
--detail: some finding of KIND has details[KEY] containing TEXT.
--thread-tid-file: the first line of FILE is a TID that must appear in a
          fork-with-threads 'thread-start' frame with a known object.
Exits 0 when valid and every expectation holds; prints why otherwise."""
import argparse
import json
import sys

KINDS = {'fork-with-threads', 'lock-held-at-fork', 'child-deadlock',
         'unsafe-call-in-child', 'raw-atfork-handler', 'lock-order-violation',
         'unregistered-shared-lock', 'library-without-adapter',
         'stdio-unflushed-at-fork', 'fd-leak-on-exec'}
SEVERITIES = {'info', 'warning', 'error'}


def fail(msg):
    print('check_report: ' + msg)
    sys.exit(1)


def need(obj, key, types, where):
    if key not in obj:
        fail('%s: missing "%s"' % (where, key))
    if not isinstance(obj[key], types) or isinstance(obj[key], bool):
        fail('%s: "%s" has type %s' % (where, key, type(obj[key]).__name__))
    return obj[key]


def validate(doc):
    if need(doc, 'schema', str, 'report') != 'forksafe-audit':
        fail('schema is not forksafe-audit')
    if need(doc, 'schema_version', int, 'report') != 1:
        fail('unknown schema_version')
    need(doc, 'tool_version', str, 'report')
    for a in need(doc, 'command', list, 'report'):
        if not isinstance(a, str):
            fail('command holds a non-string')
    need(doc, 'exit_status', int, 'report')
    if doc.get('signal') is not None:
        need(doc, 'signal', int, 'report')
    for i, f in enumerate(need(doc, 'findings', list, 'report')):
        w = 'findings[%d]' % i
        if need(f, 'kind', str, w) not in KINDS:
            fail('%s: unknown kind %s' % (w, f['kind']))
        if need(f, 'severity', str, w) not in SEVERITIES:
            fail('%s: bad severity' % w)
        for k in ('pid', 'ppid', 'tid'):
            need(f, k, int, w)
        need(f, 'exe', str, w)
        need(f, 'message', str, w)
        for j, fr in enumerate(need(f, 'frames', list, w)):
            fw = '%s.frames[%d]' % (w, j)
            need(fr, 'role', str, fw)
            need(fr, 'object', str, fw)
            off = need(fr, 'offset', str, fw)
            if not off.startswith('0x'):
                fail('%s: offset is not hex' % fw)
            for k, t in (('tid', int), ('thread_name', str),
                         ('function', str), ('function_offset', str)):
                if k not in fr:
                    fail('%s: missing "%s"' % (fw, k))
                if fr[k] is not None and not isinstance(fr[k], t):
                    fail('%s: "%s" has the wrong type' % (fw, k))
        for k, v in need(f, 'details', dict, w).items():
            if not isinstance(v, str):
                fail('%s: details.%s is not a string' % (w, k))
    for i, p in enumerate(need(doc, 'processes', list, 'report')):
        w = 'processes[%d]' % i
        need(p, 'pid', int, w)
        need(p, 'ppid', int, w)
        need(p, 'exe', str, w)
        if need(p, 'start', str, w) not in ('exec', 'fork'):
            fail('%s: bad start' % w)
        if p.get('coverage') is not None:
            for k in ('forks', 'shared_locks', 'registered_shared_locks',
                      'atfork_raw', 'atfork_registry', 'adapters_present',
                      'adapters_needed'):
                need(p['coverage'], k, int, w + '.coverage')
    s = need(doc, 'summary', dict, 'report')
    for k in ('findings', 'errors', 'warnings', 'infos'):
        need(s, k, int, 'summary')
    if s['findings'] != len(doc['findings']):
        fail('summary.findings does not match')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('report')
    ap.add_argument('--kinds')
    ap.add_argument('--has', action='append', default=[])
    ap.add_argument('--frame', action='append', default=[])
    ap.add_argument('--detail', action='append', default=[])
    ap.add_argument('--thread-tid-file')
    a = ap.parse_args()
    with open(a.report) as fh:
        doc = json.load(fh)
    validate(doc)
    findings = doc['findings']
    kinds = {f['kind'] for f in findings}
    if a.kinds is not None:
        want = {k for k in a.kinds.split(',') if k}
        if kinds != want:
            fail('kinds %s, expected %s' % (sorted(kinds), sorted(want)))
    for k in a.has:
        if k not in kinds:
            fail('no %s finding' % k)
    for spec in a.frame:
        kind, role, rest = spec.split(':', 2)
        field, value = rest.split('=', 1)
        ok = any(str(fr.get(field)) == value or
                 (field == 'object' and str(fr.get(field)).endswith(value))
                 for f in findings if f['kind'] == kind
                 for fr in f['frames'] if fr['role'] == role)
        if not ok:
            fail('no %s frame %s with %s=%s' % (kind, role, field, value))
    for spec in a.detail:
        kind, rest = spec.split(':', 1)
        key, text = rest.split('~', 1)
        if not any(text in f['details'].get(key, '')
                   for f in findings if f['kind'] == kind):
            fail('no %s finding with %s containing %s' % (kind, key, text))
    if a.thread_tid_file:
        with open(a.thread_tid_file) as fh:
            tid = int(fh.readline().split()[-1])
        ok = any(fr['tid'] == tid and fr['object'] not in ('?', '')
                 for f in findings if f['kind'] == 'fork-with-threads'
                 for fr in f['frames'] if fr['role'] == 'thread-start')
        if not ok:
            fail('thread %d is not listed with its start routine' % tid)
    print('check_report: ok (%d findings)' % len(findings))


main()
