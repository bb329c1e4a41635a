# SPDX-License-Identifier: MIT
"""Print the names in os.environ, sorted; LC_CTYPE is left out (CPython's
locale coercion may add it), as CPython's own test_empty_env does."""
import os

print(sorted(k for k in os.environ if k != 'LC_CTYPE'))
