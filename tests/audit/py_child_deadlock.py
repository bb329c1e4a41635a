# SPDX-License-Identifier: MIT
"""The child of os.fork() acquires a threading.Lock that another thread
held at the fork: without the audit it would hang forever. Under
forksafe-audit the child is ended with status 86 after the grace period;
the script exits 0 when that happened (and kills the child itself after 10
seconds otherwise, exiting 1)."""
import os
import signal
import threading
import time

lock = threading.Lock()
r, w = os.pipe()


def holder():
    with lock:
        os.read(r, 1)


t = threading.Thread(target=holder)
t.start()
while not lock.locked():
    time.sleep(0.001)
pid = os.fork()
if pid == 0:
    lock.acquire()
    os._exit(0)
deadline = time.monotonic() + 10
status = None
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
os.write(w, b"x")
t.join()
ok = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 86
raise SystemExit(0 if ok else 1)
