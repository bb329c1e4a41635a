#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/abi/test-abi-gate.py: `scons abi-check` passes what is compatible
and fails what is not. Run on copies of the 0.1.0 baseline
(abi/libforksafe.abi), altered as a change to the library would alter its
dump, through the same comparison abi-check uses (abi/abidump.py compare):

  unchanged                               ok
  a function added                        ok, 1 added
  a function removed                      incompatible
  a struct member's type changed          changed (fails unless reviewed)
  the same with a suppression for it      ok (abi/suppressions.abignore)

Needs abidiff (abigail-tools). Prints one line per case; exits 1 if any
verdict differs."""
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(TOP, 'abi'))
from abidump import compare  # noqa: E402

base_text = open(os.path.join(TOP, 'abi', 'libforksafe.abi')).read()


def without_function(text, name):
    out, n1 = re.subn(r"\n *<elf-symbol name='%s'[^\n]*/>" % name, '', text)
    out, n2 = re.subn(r"\n *<function-decl name='%s'.*?</function-decl>" % name,
                      '', out, flags=re.S)
    assert n1 == 1 and n2 == 1, 'no function %s in the baseline' % name
    return out


def member_type_changed(text, struct, member, new_type):
    tid = re.search(r"<type-decl name='%s'[^>]* id='([^']+)'" % new_type,
                    text).group(1)
    start = text.index("<class-decl name='%s'" % struct)
    end = text.index('</class-decl>', start)
    body, n = re.subn(r"(<var-decl name='%s' type-id=')[^']+'" % member,
                      r"\g<1>%s'" % tid, text[start:end])
    assert n == 1, 'no member %s.%s' % (struct, member)
    return text[:start] + body + text[end:]


changed = member_type_changed(base_text, 'forksafe_fork_opts', 'timeout_ms',
                              'long int')
suppress = ('[suppress_type]\n'
            '  # reviewed: (the test pretends so)\n'
            '  name = forksafe_fork_opts\n')
cases = [
    ('unchanged', base_text, base_text, None, ('ok', 0)),
    ('a function added', without_function(base_text, 'forksafe_lookup'),
     base_text, None, ('ok', 1)),
    ('a function removed', base_text,
     without_function(base_text, 'forksafe_lookup'), None,
     ('incompatible', None)),
    ("a struct member's type changed", base_text, changed, None,
     ('changed', None)),
    ('the same, reviewed in a suppression', base_text, changed, suppress,
     ('ok', 0)),
]
bad = 0
with tempfile.TemporaryDirectory() as tmp:
    for i, (what, old, new, supp, want) in enumerate(cases):
        paths = []
        for j, text in enumerate((old, new, supp)):
            if text is None:
                paths.append(None)
                continue
            p = os.path.join(tmp, '%d-%d' % (i, j))
            with open(p, 'w') as f:
                f.write(text)
            paths.append(p)
        verdict, added, out = compare(*paths)
        ok = verdict == want[0] and (want[1] is None or added == want[1])
        line = '  %-44s %s' % (what, verdict)
        if added:
            line += ' (%d added)' % added
        if not ok:
            line += '  WRONG: want %s\n%s' % (want[0], out)
        print(line)
        bad += not ok
print('test-abi-gate: %d cases, %d wrong' % (len(cases), bad))
sys.exit(1 if bad else 0)
