#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Validate a forksafe-run JSON report against the published schema
(docs/forksafe.schema.json, or $FORKSAFE_SCHEMA) with python3-jsonschema,
then check expectations about it.

  check_run.py REPORT [expectations...]

Paths name members and array items with dots: forks.timed_out,
slow_forks.0.blockers.0.state. Expectations:

--eq PATH=JSON      the value at PATH equals JSON (typed: 3, "x", null)
--min PATH=N        the value at PATH is a number >= N
--max PATH=N        the value at PATH is a number <= N
--len PATH=N        the array at PATH has N items
--frame PATH:ROLE:FIELD=VALUE
                    the object at PATH has a frame of ROLE whose FIELD
                    equals VALUE (object: ends with VALUE)
--schema NAME       the document's schema is NAME (default forksafe-run)

Exits 0 when the report is valid and every expectation holds; prints
what failed otherwise."""
import argparse
import json
import os
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.environ.get('FORKSAFE_SCHEMA') or os.path.join(
    HERE, '..', '..', 'docs', 'forksafe.schema.json')


def fail(msg):
    print('check_run: ' + msg)
    sys.exit(1)


def at(doc, path):
    v = doc
    for part in path.split('.') if path else []:
        if isinstance(v, list):
            try:
                v = v[int(part)]
            except (ValueError, IndexError):
                fail('%s: no item %s' % (path, part))
        elif isinstance(v, dict):
            if part not in v:
                fail('%s: no member %s' % (path, part))
            v = v[part]
        else:
            fail('%s: %s is not an object or array' % (path, part))
    return v


def split(arg, sep):
    if sep not in arg:
        fail('bad expectation %r' % arg)
    return arg.split(sep, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('report')
    ap.add_argument('--eq', action='append', default=[])
    ap.add_argument('--min', action='append', default=[])
    ap.add_argument('--max', action='append', default=[])
    ap.add_argument('--len', action='append', default=[])
    ap.add_argument('--frame', action='append', default=[])
    ap.add_argument('--schema', default='forksafe-run')
    a = ap.parse_args()
    with open(a.report, 'rb') as fh:
        raw = fh.read()
    try:
        doc = json.loads(raw.decode('utf-8', 'strict'))
    except (UnicodeDecodeError, ValueError) as e:
        fail('%s is not valid UTF-8 JSON: %s' % (a.report, e))
    with open(SCHEMA) as fh:
        schema = json.load(fh)
    try:
        jsonschema.Draft202012Validator(schema).validate(doc)
    except jsonschema.ValidationError as e:
        fail('%s does not match the schema: %s at %s' %
             (a.report, e.message, '/'.join(str(p) for p in e.path)))
    if doc.get('schema') != a.schema:
        fail('schema is %r, not %r' % (doc.get('schema'), a.schema))
    for e in a.eq:
        path, want = split(e, '=')
        got = at(doc, path)
        if got != json.loads(want):
            fail('%s is %r, not %s' % (path, got, want))
    for e in a.min:
        path, want = split(e, '=')
        got = at(doc, path)
        if not isinstance(got, (int, float)) or got < float(want):
            fail('%s is %r, less than %s' % (path, got, want))
    for e in a.max:
        path, want = split(e, '=')
        got = at(doc, path)
        if not isinstance(got, (int, float)) or got > float(want):
            fail('%s is %r, more than %s' % (path, got, want))
    for e in a.len:
        path, want = split(e, '=')
        got = at(doc, path)
        if not isinstance(got, list) or len(got) != int(want):
            fail('%s has %s items, not %s' %
                 (path, len(got) if isinstance(got, list) else '?', want))
    for e in a.frame:
        spec, value = split(e, '=')
        parts = spec.split(':')
        if len(parts) != 3:
            fail('bad --frame %r' % e)
        path, role, field = parts
        obj = at(doc, path)
        frames = [f for f in obj.get('frames', []) if f['role'] == role]
        def ok(f):
            v = f.get(field)
            if field == 'object':
                return isinstance(v, str) and v.endswith(value)
            return v == value
        if not any(ok(f) for f in frames):
            fail('%s has no %s frame with %s=%s (frames: %s)' %
                 (path, role, field, value, json.dumps(frames)))
    print('check_run: ok')


if __name__ == '__main__':
    main()
