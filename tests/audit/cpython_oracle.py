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
invalid. The comparison itself is tests/cpython_compare.py."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import cpython_compare  # noqa: E402

AUDIT = cpython_compare.Tool(
    name='cpython', tag='audit', under='audited', without='the audit',
    title='cpython oracle (per-test outcomes, without and with '
    'forksafe-audit):',
    validate=[os.path.join(HERE, 'check_report.py'), '--any'],
    summary=None, width=28)

if __name__ == '__main__':
    sys.exit(cpython_compare.main(AUDIT))
