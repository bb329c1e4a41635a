# SPDX-License-Identifier: MIT
"""abi/abidump.py: how forksafe's ABI is written down, in one place, for
`scons abi-check`, `scons abi-dump` (abi/SConscript) and abi/regenerate.

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


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit('usage: abidump.py INCLUDE_DIR LIBRARY > NAME.abi')
    try:
        sys.stdout.write(dump(sys.argv[2], sys.argv[1]))
    except (RuntimeError, OSError) as err:
        sys.exit('abidump: %s' % err)
