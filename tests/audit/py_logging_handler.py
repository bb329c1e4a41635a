# SPDX-License-Identifier: MIT
# A thread is inside a logging handler (holding the handler's lock) when
# the main thread forks; the child logs through the same handler. CPython
# re-creates every handler's lock in the child (logging registers an
# at-fork hook for it), so the child does not block: forksafe-audit must
# not call the held lock a hazard. Prints "child logged" (from the child)
# and exits 0 when the child exited 0.
import logging
import os
import sys
import threading

parent = os.getpid()
inside = threading.Event()
release = threading.Event()


class Slow(logging.Handler):
    def emit(self, record):
        if os.getpid() == parent and threading.current_thread().name == 'logger':
            inside.set()
            release.wait()
        else:
            sys.stdout.write(record.getMessage() + '\n')
            sys.stdout.flush()


log = logging.getLogger('forksafe-test')
log.addHandler(Slow())
log.setLevel(logging.INFO)
t = threading.Thread(target=lambda: log.info('from the thread'), name='logger')
t.start()
inside.wait()
pid = os.fork()
if pid == 0:
    log.info('child logged')
    os._exit(0)
_, st = os.waitpid(pid, 0)
release.set()
t.join()
sys.exit(0 if st == 0 else 1)
