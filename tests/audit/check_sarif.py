#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""check_sarif.py FILE [--results N] [--rule ID=LEVEL]... [--location ID=FILE:LINE]...

Validates a forksafe-audit --sarif log against the official SARIF 2.1.0
JSON schema (sarif/sarif-schema-2.1.0.json, with python3-jsonschema),
then checks what a CI consumer relies on: every result's ruleId names a
rule of the driver and ruleIndex points at it, its level is one SARIF
allows, and the expectations given:

--results N           exactly N results
--rule ID=LEVEL       at least one result of rule ID, each with level LEVEL
--location ID=SUFFIX:LINE
                      a result of rule ID whose first location's file URI
                      ends with SUFFIX at startLine LINE (LINE may be '*')
Exit status 0 when all hold, 1 otherwise (the reason on stdout)."""
import argparse
import json
import os
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))


def fail(msg):
    print('check_sarif: ' + msg)
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('file')
    ap.add_argument('--results', type=int)
    ap.add_argument('--rule', action='append', default=[])
    ap.add_argument('--location', action='append', default=[])
    a = ap.parse_args()
    with open(os.path.join(HERE, 'sarif', 'sarif-schema-2.1.0.json')) as f:
        schema = json.load(f)
    with open(a.file, encoding='utf-8') as f:
        doc = json.load(f)
    try:
        jsonschema.Draft4Validator(schema).validate(doc)
    except jsonschema.ValidationError as e:
        fail('not valid SARIF 2.1.0: %s at %s' % (e.message, list(e.path)))
    if doc.get('version') != '2.1.0' or len(doc['runs']) != 1:
        fail('expected version 2.1.0 and one run')
    run = doc['runs'][0]
    rules = run['tool']['driver'].get('rules', [])
    ids = [r['id'] for r in rules]
    results = run.get('results', [])
    for r in results:
        if r.get('ruleId') not in ids:
            fail('result of unknown rule %r' % r.get('ruleId'))
        if ids[r['ruleIndex']] != r['ruleId']:
            fail('ruleIndex %d is not %s' % (r['ruleIndex'], r['ruleId']))
        if not r.get('locations'):
            fail('a %s result without a location' % r['ruleId'])
    if a.results is not None and len(results) != a.results:
        fail('%d results, expected %d' % (len(results), a.results))
    for spec in a.rule:
        rid, level = spec.split('=', 1)
        of = [r for r in results if r['ruleId'] == rid]
        if not of or any(r.get('level') != level for r in of):
            fail('%s results %r, expected level %s' %
                 (rid, [r.get('level') for r in of], level))
    for spec in a.location:
        rid, rest = spec.split('=', 1)
        suffix, line = rest.rsplit(':', 1)
        ok = False
        for r in results:
            if r['ruleId'] != rid:
                continue
            pl = r['locations'][0].get('physicalLocation', {})
            uri = pl.get('artifactLocation', {}).get('uri', '')
            got = pl.get('region', {}).get('startLine')
            ok |= uri.endswith(suffix) and (line == '*' or got == int(line))
        if not ok:
            fail('no %s result located at %s:%s' % (rid, suffix, line))
    return 0


if __name__ == '__main__':
    sys.exit(main())
