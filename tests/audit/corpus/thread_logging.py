# SPDX-License-Identifier: MIT
"""Hazard: a thread is inside a logging call (its handler writes to a pipe
nobody reads yet, so the write blocks holding the stream's buffer lock)
when the main thread forks; the child logs too. logging re-creates its
handler locks in the child, but not the io buffer's lock. Writes the
logging thread's native TID to argv[1]."""
import logging
import os
import sys
import threading
import time

r, w = os.pipe()
stream = os.fdopen(w, "w", buffering=1)
log = logging.getLogger("corpus")
log.addHandler(logging.StreamHandler(stream))
log.setLevel(logging.INFO)
started = threading.Event()


def logger():
    with open(sys.argv[1], "w") as f:
        f.write(str(threading.get_native_id()))
    started.set()
    log.info("x" * (1 << 20))  # far more than the pipe holds: blocks


t = threading.Thread(target=logger, name="logger")
t.start()
started.wait()
time.sleep(0.3)
pid = os.fork()
if pid == 0:
    log.info("child")
    os._exit(0)
_, status = os.waitpid(pid, 0)
# Drain the pipe so the thread finishes.
os.set_blocking(r, False)
while t.is_alive():
    try:
        os.read(r, 1 << 16)
    except BlockingIOError:
        time.sleep(0.01)
t.join()
sys.exit(0)
