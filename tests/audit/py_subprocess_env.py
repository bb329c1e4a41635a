# SPDX-License-Identifier: MIT
"""Start PROGRAM (argv[1:]) with subprocess and an empty environment, as
CPython's own tests do (env={}): the audit must still see it."""
import subprocess
import sys

r = subprocess.run(sys.argv[1:], env={})
raise SystemExit(r.returncode)
