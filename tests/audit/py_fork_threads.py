# SPDX-License-Identifier: MIT
"""A thread holds a threading.Lock while the main thread calls os.fork().
The holder prints its native TID first (the test looks for it in the
report), then blocks reading a pipe until the fork is done. The child
leaves with os._exit(0); the script exits 0 when the child did."""
import os
import threading
import time

lock = threading.Lock()
r, w = os.pipe()


def holder():
    with lock:
        print(threading.get_native_id(), flush=True)
        os.read(r, 1)


t = threading.Thread(target=holder)
t.start()
while not lock.locked():
    time.sleep(0.001)
pid = os.fork()
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
os.write(w, b"x")
t.join()
raise SystemExit(0 if status == 0 else 1)
