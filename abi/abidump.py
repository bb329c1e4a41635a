# SPDX-License-Identifier: MIT
"""abi/abidump.py: how forksafe's ABI is written down and compared, in one
place, for `scons abi-check`, `scons abi-dump` (abi/SConscript),
abi/regenerate and tests/abi/test-abi-gate.py.

  python3 abi/abidump.py INCLUDE_DIR LIBRARY > NAME.abi

abidw (abigail-tools) dumps LIBRARY's ABI from its DWARF debug
information, keeping only the types defined in the public headers
(INCLUDE_DIR and INCLUDE_DIR/forksafe). The symbol version node
FORKSAFE_0 is removed: libabigail matches functions by name and version,
so without that a baseline made before the version script existed (0.1.0)
would match nothing; tests/test-exports.c checks the versions themselves.
"""
import os
import re
import subprocess
import sys


def dump(library, include_dir):
    cmd = ['abidw', '--no-corpus-path', '--no-comp-dir-path',
           '--drop-private-types']
    for h in (include_dir, os.path.join(include_dir, 'forksafe')):
        if os.path.isdir(h):
            cmd += ['--headers-dir', h]
    out = subprocess.run(cmd + [library], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError('abidw %s: %s' % (library, out.stderr.strip()))
    text = re.sub(r" version='FORKSAFE_0' is-default-version='yes'", '',
                  out.stdout)
    return re.sub(r"@@FORKSAFE_0'", "'", text)


def compare(baseline, current, suppressions=None):
    """Compare two dumps with abidiff. Returns (verdict, added, text):
    verdict 'ok' (nothing but added functions, which --no-added-syms
    leaves out of the verdict), 'incompatible' (a function or symbol was
    removed), 'changed' (a type or signature changed: a person must judge,
    abi/README.md) or 'error' (abidiff could not compare); added is the
    number of added functions."""
    cmd = ['abidiff', '--no-added-syms', '--no-unreferenced-symbols']
    if suppressions and os.path.exists(suppressions):
        cmd += ['--suppressions', suppressions]
    r = subprocess.run(cmd + [baseline, current], capture_output=True,
                       text=True)
    m = re.search(r'\((\d+) filtered out\) functions?\b', r.stdout)
    added = int(m.group(1)) if m else 0
    if r.returncode & 3:  # ABIDIFF_ERROR, ABIDIFF_USAGE_ERROR
        return 'error', added, r.stderr.strip()
    if r.returncode & 8:  # ABIDIFF_ABI_INCOMPATIBLE_CHANGE
        return 'incompatible', added, r.stdout.rstrip()
    if r.returncode & 4:  # ABIDIFF_ABI_CHANGE
        return 'changed', added, r.stdout.rstrip()
    return 'ok', added, r.stdout.rstrip()


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: abidump.py INCLUDE_DIR LIBRARY > NAME.abi')
    try:
        sys.stdout.write(dump(sys.argv[2], sys.argv[1]))
    except (RuntimeError, OSError) as err:
        sys.exit('abidump: %s' % err)
