#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Validate a forksafe JSON document against the published schema
(docs/forksafe.schema.json) with python3-jsonschema, then check
expectations about a forksafe-audit report.

  check_report.py REPORT [expectations...]
  check_report.py --any DOC          validate only (either document kind)

The file must be valid UTF-8 (decoded strictly) and valid against the
schema before any expectation is looked at. Expectations:

--kinds a,b           the set of finding kinds is exactly this ("" = none)
--has KIND            some finding of KIND        --lacks KIND   none
--count KIND=N        exactly N findings of KIND
--frame KIND:ROLE:FIELD=VALUE
                      (object and file: ends with VALUE; inlined: one of the
                      functions inlined there is VALUE)
                      some KIND finding has a ROLE frame whose FIELD equals
                      VALUE (object: ends with VALUE)
--detail KIND:KEY~TEXT
                      some KIND finding has details[KEY] containing TEXT
--detail-eq KIND:KEY=JSON
                      some KIND finding has details[KEY] == JSON (typed)
--message KIND~TEXT   some KIND finding's message contains TEXT
--severity KIND=SEV   every KIND finding has severity SEV
--exe KIND=SUFFIX     every KIND finding's exe ends with SUFFIX
--suppressed N        exactly N findings are in the suppressed list
--baseline-state KIND=STATE
                      every KIND finding has baseline == STATE
--hex FIELD=HEX       some object anywhere in the report has a FIELD_hex
                      that ends with HEX (every _hex twin is checked to
                      match the text beside it)
--top KEY=JSON        the top-level member KEY == JSON
--summary KEY=JSON    summary[KEY] == JSON
--min KEY=N           summary[KEY] >= N
--still-running       some process is marked still_running
--thread-tid-file F   the first line of F is a TID listed in a
                      fork-with-threads thread-start frame with an object
Exits 0 when valid and every expectation holds; prints why otherwise."""
import argparse
import json
import os
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.environ.get('FORKSAFE_SCHEMA') or os.path.join(
    HERE, '..', '..', 'docs', 'forksafe.schema.json')


def fail(msg):
    print('check_report: ' + msg)
    sys.exit(1)


def load(path):
    with open(path, 'rb') as fh:
        raw = fh.read()
    try:
        text = raw.decode('utf-8', 'strict')
    except UnicodeDecodeError as e:
        fail('%s is not valid UTF-8: %s' % (path, e))
    try:
        doc = json.loads(text)
    except ValueError as e:
        fail('%s is not JSON: %s' % (path, e))
    with open(SCHEMA, encoding='utf-8') as fh:
        schema = json.load(fh)
    v = jsonschema.Draft202012Validator(schema)
    errors = sorted(v.iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        for e in errors[:5]:
            print('check_report: schema: %s at %s' %
                  (e.message[:300], '/'.join(str(p) for p in e.absolute_path)))
        # oneOf hides the useful reason: validate against the matching part.
        part = 'audit' if doc.get('schema') == 'forksafe-audit' else 'report'
        sub = dict(schema)
        sub.pop('oneOf', None)
        sub['$ref'] = '#/$defs/' + part
        for e in list(jsonschema.Draft202012Validator(sub).iter_errors(doc))[:5]:
            print('check_report: %s: %s at %s' %
                  (part, e.message[:300],
                   '/'.join(str(p) for p in e.absolute_path)))
        fail('%s does not match %s' % (path, SCHEMA))
    # Every _hex twin must decode to bytes whose replacement text is the
    # string beside it.
    def walk(o):
        if isinstance(o, dict):
            for k, val in o.items():
                if k.endswith('_hex') and isinstance(val, str):
                    base = o.get(k[:-4])
                    if base != bytes.fromhex(val).decode('utf-8', 'replace'):
                        fail('%s does not match %s' % (k, k[:-4]))
                elif k.endswith('_hex') and isinstance(val, list):
                    base = o.get(k[:-4])
                    if not isinstance(base, list) or len(base) != len(val):
                        fail('%s does not match %s' % (k, k[:-4]))
                    for b, h in zip(base, val):
                        if h is not None and b != bytes.fromhex(h).decode(
                                'utf-8', 'replace'):
                            fail('%s does not match %s' % (k, k[:-4]))
                walk(val)
        elif isinstance(o, list):
            for x in o:
                walk(x)
    walk(doc)
    return doc


def hexes(o, field, out):
    if isinstance(o, dict):
        if field + '_hex' in o:
            v = o[field + '_hex']
            out.extend(v if isinstance(v, list) else [v])
        for v in o.values():
            hexes(v, field, out)
    elif isinstance(o, list):
        for v in o:
            hexes(v, field, out)
    return out


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--any':
        load(sys.argv[2])
        print('check_report: valid')
        return
    ap = argparse.ArgumentParser()
    ap.add_argument('report')
    ap.add_argument('--kinds')
    ap.add_argument('--has', action='append', default=[])
    ap.add_argument('--lacks', action='append', default=[])
    ap.add_argument('--count', action='append', default=[])
    ap.add_argument('--frame', action='append', default=[])
    ap.add_argument('--detail', action='append', default=[])
    ap.add_argument('--detail-eq', action='append', default=[])
    ap.add_argument('--message', action='append', default=[])
    ap.add_argument('--severity', action='append', default=[])
    ap.add_argument('--exe', action='append', default=[])
    ap.add_argument('--suppressed', type=int)
    ap.add_argument('--baseline-state', action='append', default=[])
    ap.add_argument('--hex', action='append', default=[])
    ap.add_argument('--top', action='append', default=[])
    ap.add_argument('--summary', action='append', default=[])
    ap.add_argument('--min', action='append', default=[])
    ap.add_argument('--still-running', action='store_true')
    ap.add_argument('--thread-tid-file')
    a = ap.parse_args()
    doc = load(a.report)
    if doc['schema'] != 'forksafe-audit':
        fail('not a forksafe-audit report')
    findings = doc['findings']
    if doc['summary']['findings'] != len(findings):
        fail('summary.findings does not match')
    for sev, key in (('error', 'errors'), ('warning', 'warnings'),
                     ('info', 'infos')):
        if doc['summary'][key] != sum(f['severity'] == sev for f in findings):
            fail('summary.%s does not match' % key)
    kinds = {f['kind'] for f in findings}
    of = lambda k: [f for f in findings if f['kind'] == k]
    if a.kinds is not None:
        want = {k for k in a.kinds.split(',') if k}
        if kinds != want:
            fail('kinds %s, expected %s' % (sorted(kinds), sorted(want)))
    for k in a.has:
        if k not in kinds:
            fail('no %s finding' % k)
    for k in a.lacks:
        if k in kinds:
            fail('unexpected %s finding: %s' % (k, of(k)[0]['message']))
    for spec in a.count:
        k, n = spec.split('=', 1)
        if len(of(k)) != int(n):
            fail('%d %s findings, expected %s' % (len(of(k)), k, n))
    for spec in a.frame:
        kind, role, rest = spec.split(':', 2)
        field, value = rest.split('=', 1)
        def match(fr):
            if field == 'inlined':
                return any(i['function'] == value
                           for i in fr.get('inlined') or [])
            if field in ('object', 'file'):
                return str(fr.get(field)).endswith(value)
            return str(fr.get(field)) == value
        ok = any(match(fr) for f in of(kind) for fr in f['frames']
                 if fr['role'] == role)
        if not ok:
            fail('no %s frame %s with %s=%s' % (kind, role, field, value))
    for spec in a.detail:
        kind, rest = spec.split(':', 1)
        key, text = rest.split('~', 1)
        if not any(key in f['details'] and text in str(f['details'][key])
                   for f in of(kind)):
            fail('no %s finding with %s containing %s' % (kind, key, text))
    for spec in a.detail_eq:
        kind, rest = spec.split(':', 1)
        key, val = rest.split('=', 1)
        want = json.loads(val)
        if not any(key in f['details'] and f['details'][key] == want and
                   type(f['details'][key]) is type(want) for f in of(kind)):
            got = [f['details'].get(key) for f in of(kind)]
            fail('no %s finding with %s == %r (got %r)' % (kind, key, want,
                                                            got))
    for spec in a.message:
        kind, text = spec.split('~', 1)
        if not any(text in f['message'] for f in of(kind)):
            fail('no %s message containing %r: %r' %
                 (kind, text, [f['message'] for f in of(kind)]))
    for spec in a.severity:
        kind, sev = spec.split('=', 1)
        if not of(kind) or any(f['severity'] != sev for f in of(kind)):
            fail('%s findings are not all %s: %r' %
                 (kind, sev, [f['severity'] for f in of(kind)]))
    for spec in a.exe:
        kind, suffix = spec.split('=', 1)
        if not of(kind) or any(not f['exe'].endswith(suffix) for f in of(kind)):
            fail('%s findings are not all from %s: %r' %
                 (kind, suffix, [f['exe'] for f in of(kind)]))
    if a.suppressed is not None:
        got = len(doc.get('suppressed', []))
        if got != a.suppressed or doc['summary'].get('suppressed') != got:
            fail('%d suppressed findings (summary %r), expected %d' %
                 (got, doc['summary'].get('suppressed'), a.suppressed))
    for spec in a.baseline_state:
        kind, state = spec.split('=', 1)
        if not of(kind) or any(f.get('baseline') != state for f in of(kind)):
            fail('%s findings are not all %s: %r' %
                 (kind, state, [f.get('baseline') for f in of(kind)]))
    for spec in a.hex:
        field, want = spec.split('=', 1)
        got = hexes(doc, field, [])
        if not any(g.endswith(want) for g in got if isinstance(g, str)):
            fail('no %s_hex ending with %s (got %s)' % (field, want, got))
    for spec in a.top:
        key, val = spec.split('=', 1)
        if doc.get(key) != json.loads(val):
            fail('%s is %r, expected %s' % (key, doc.get(key), val))
    for spec in a.summary:
        key, val = spec.split('=', 1)
        if doc['summary'].get(key) != json.loads(val):
            fail('summary.%s is %r, expected %s' %
                 (key, doc['summary'].get(key), val))
    for spec in a.min:
        key, val = spec.split('=', 1)
        if doc['summary'].get(key, 0) < int(val):
            fail('summary.%s is %r, expected at least %s' %
                 (key, doc['summary'].get(key), val))
    if a.still_running and not any(p['still_running']
                                   for p in doc['processes']):
        fail('no process is marked still_running')
    if a.thread_tid_file:
        with open(a.thread_tid_file) as fh:
            tid = int(fh.readline().split()[-1])
        ok = any(fr['tid'] == tid and fr['object'] not in ('?', '')
                 for f in of('fork-with-threads')
                 for fr in f['frames'] if fr['role'] == 'thread-start')
        if not ok:
            fail('thread %d is not listed with its start routine' % tid)
    print('check_report: ok (%d findings)' % len(findings))


main()
